"""The suppression list: addresses we must not send to, and why."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from ..extensions import db
from ..models import Customer, Message, Suppression, User, utcnow


def scope_for(customer: Customer) -> tuple[str, int | None]:
    """Relay-wide entries for relay modes; per-customer entries for a customer's own SMTP."""
    if customer.sending_mode == "customer_smtp":
        return "customer", customer.id
    return "relay", None


def active_for(address: str, customer: Customer, now: datetime | None = None) -> Suppression | None:
    """The active entry that stops mail from `customer` to `address`, if any."""
    now = now or utcnow()
    scope, customer_id = scope_for(customer)
    query = select(Suppression).where(
        Suppression.address == address.strip().lower(),
        Suppression.lifted_at.is_(None),
        or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
        Suppression.scope == scope,
    )
    if customer_id is not None:
        query = query.where(Suppression.customer_id == customer_id)
    return db.session.scalars(query.order_by(Suppression.id.desc()).limit(1)).first()


def suppress(address: str, reason: str, customer: Customer | None = None, *,
             scope: str | None = None, smtp_code: str | None = None,
             diagnostic: str | None = None, message: Message | None = None,
             expires_at: datetime | None = None, actor: User | None = None,
             note: str | None = None) -> Suppression:
    """Add an entry unless an active one exists for the same scope; returns the entry."""
    if scope is None:
        scope, customer_id = scope_for(customer) if customer is not None else ("relay", None)
    else:
        customer_id = customer.id if (scope == "customer" and customer is not None) else None
    address = address.strip().lower()
    existing = None
    if customer is not None:
        existing = active_for(address, customer)
    if existing is not None and existing.scope == scope:
        return existing
    entry = Suppression(address=address, scope=scope, customer_id=customer_id, reason=reason,
                        smtp_code=smtp_code, diagnostic=diagnostic,
                        message_id=message.id if message is not None else None,
                        expires_at=expires_at, created_by_id=actor.id if actor else None,
                        note=note)
    db.session.add(entry)
    db.session.flush()
    return entry


def record_send_failure(message: Message, code: int | None, text: str) -> Suppression | None:
    """A 5xx at send time is a hard bounce: suppress the recipient at once."""
    if code is None or not 500 <= code < 600:
        return None
    return suppress(message.recipient, "hard_bounce", message.customer,
                    smtp_code=str(code), diagnostic=text[:2000], message=message)
