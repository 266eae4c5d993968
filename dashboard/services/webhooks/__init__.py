"""Delivery webhooks (outbox, signing, delivery, endpoints); never imports operations, messages or accounts."""
