"""Sending switches: global and per customer, pause and resume. Off never loses mail."""
from __future__ import annotations

from ..extensions import db
from ..models import Customer, User, utcnow
from . import audit, messages, settings


def set_global(enabled: bool, actor: User | None = None) -> int:
    """Turn sending on or off for everyone; turning it on releases held mail (returns count)."""
    settings.put("sending_enabled", bool(enabled), actor)
    if enabled:
        return messages.release_held(actor=actor)
    return 0


def set_customer(customer: Customer, enabled: bool, actor: User | None = None) -> int:
    """Turn one customer's sending on or off; on releases its held mail (returns count)."""
    if customer.sending_enabled != enabled:
        audit.record("customer.sending", actor, "customer", customer.id,
                     before={"sending_enabled": customer.sending_enabled},
                     after={"sending_enabled": enabled}, customer_id=customer.id)
        customer.sending_enabled = enabled
        db.session.commit()
    if enabled:
        return messages.release_held(customer, actor=actor)
    return 0


def pause_customer(customer: Customer, reason: str) -> None:
    """Pause a customer whose transport keeps failing: hold its mail, alert administrators."""
    customer.paused = True
    customer.paused_reason = reason[:500]
    customer.paused_at = utcnow()
    audit.record("customer.pause", None, "customer", customer.id,
                 after={"paused": True, "reason": customer.paused_reason},
                 customer_id=customer.id)
    from . import alerts

    alerts.processing_blocked(customer, customer.paused_reason)


def resume_customer(customer: Customer, actor: User | None = None) -> int:
    """Resume a paused customer; its held mail goes back to the queue."""
    if customer.paused:
        audit.record("customer.resume", actor, "customer", customer.id,
                     before={"paused": True, "reason": customer.paused_reason},
                     after={"paused": False}, customer_id=customer.id)
    customer.paused = False
    customer.paused_reason = None
    customer.paused_at = None
    customer.auth_failures = 0
    db.session.commit()
    from . import alerts

    alerts.clear(f"paused:{customer.id}")
    return messages.release_held(customer, actor=actor)
