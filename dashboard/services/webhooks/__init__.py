"""Delivery webhooks (outbox, signing, endpoints); never imports operations or accounts."""
