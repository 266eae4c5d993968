"""Delivery webhooks (outbox, signing, delivery, endpoints): reads models and message events;
must not import blueprints or the scheduler."""
