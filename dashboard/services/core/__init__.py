"""Shared by every feature: settings, audit trail, message timelines; imports only models."""
