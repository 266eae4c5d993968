"""Sending switches: global and per customer, pause and resume, what holds mail and what
releases it. Off never loses mail."""
from __future__ import annotations

from sqlalchemy import select, update

from ... import reasons
from ...extensions import db
from ...models import Customer, Message, MessageEvent, User, utcnow
from ..core import audit, settings
from . import signals


def hold_reason(customer: Customer, sending_enabled: bool | None = None) -> str | None:
    """Why mail for this customer cannot go now, or None when it can.

    `sending_enabled` is the global switch when the caller has already read it (the sweep
    reads it once per batch)."""
    if sending_enabled is None:
        sending_enabled = settings.sending_enabled()
    if not sending_enabled:
        return reasons.encode("sending_off")
    if not customer.sending_enabled:
        return reasons.encode("customer_sending_off", customer=customer.code)
    if customer.paused:
        return reasons.encode("customer_paused", customer=customer.code,
                              reason=customer.paused_reason or reasons.encode(
                                  "processing_blocked"))
    return None


def release_held(customer: Customer | None = None, actor: User | None = None) -> int:
    """Queue held messages whose customer can send now; returns how many were released."""
    if not settings.sending_enabled():
        return 0
    now = utcnow()
    query = (select(Message.id).join(Customer, Message.customer_id == Customer.id)
             .where(Message.status == "held", Customer.sending_enabled.is_(True),
                    Customer.paused.is_(False)))
    if customer is not None:
        query = query.where(Message.customer_id == customer.id)
    released = 0
    while True:
        ids = db.session.scalars(query.limit(1000)).all()
        if not ids:
            break
        # RETURNING: only rows this call really moved get an event (workers may race here)
        ids = db.session.scalars(
            update(Message).where(Message.id.in_(ids), Message.status == "held")
            .values(status="queued", status_reason=None, next_attempt_at=now, updated_at=now)
            .returning(Message.id).execution_options(synchronize_session=False)
        ).all()
        if not ids:
            db.session.commit()
            continue
        db.session.execute(MessageEvent.__table__.insert(), [
            {"message_id": i, "type": "released", "at": now,
             "detail": reasons.encode("released"), "actor_id": actor.id if actor else None}
            for i in ids
        ])
        db.session.commit()
        released += len(ids)
    return released


def set_global(enabled: bool, actor: User | None = None) -> int:
    """Turn sending on or off for everyone; turning it on releases held mail (returns count)."""
    settings.put("sending_enabled", bool(enabled), actor)
    if enabled:
        return release_held(actor=actor)
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
        return release_held(customer, actor=actor)
    return 0


def pause_customer(customer: Customer, reason: str) -> None:
    """Pause a customer whose transport keeps failing: hold its mail, alert administrators."""
    customer.paused = True
    customer.paused_reason = reason[:500]
    customer.paused_at = utcnow()
    audit.record("customer.pause", None, "customer", customer.id,
                 after={"paused": True, "reason": customer.paused_reason},
                 customer_id=customer.id)
    signals.customer_paused.send(customer, reason=customer.paused_reason)


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
    signals.customer_resumed.send(customer)
    return release_held(customer, actor=actor)
