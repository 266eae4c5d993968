"""Health alerts: a banner while the cause lasts, and a `processing_blocked` email to the
administrators through our relay, at most one per cause per hour."""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select, update

from ... import reasons
from ...extensions import db
from ...models import Alert, Customer, User, utcnow
from ..delivery import signals
from ..delivery.outcomes import RELAY_ALERT

log = logging.getLogger(__name__)
STAFF_CUSTOMER_CODE = "postino-staff"
NOTIFY_EVERY = timedelta(hours=1)


def staff_customer() -> Customer:
    """The internal customer that carries Postino's own alerts to staff (standard mode)."""
    customer = db.session.scalar(select(Customer).where(Customer.code == STAFF_CUSTOMER_CODE))
    if customer is None:
        customer = Customer(code=STAFF_CUSTOMER_CODE, name="Postino (staff alerts)",
                            sending_mode="standard", default_language="it",
                            open_tracking=False)
        db.session.add(customer)
        db.session.flush()
    return customer


def raise_alert(cause: str, text: str, customer: Customer | None = None,
                reason: str | None = None) -> Alert:
    """Open (or keep) the alert for `cause` and email administrators if not done this hour.

    `text` and `reason` are stored reasons (`reasons.encode`), or plain text: the banner and
    the email put them into their reader's language."""
    now = utcnow()
    alert = db.session.scalar(
        select(Alert).where(Alert.cause == cause, Alert.cleared_at.is_(None)))
    if alert is None:
        alert = Alert(cause=cause, text=text, customer_id=customer.id if customer else None,
                      raised_at=now)
        db.session.add(alert)
        db.session.flush()
    if alert.notified_at is None or now - alert.notified_at >= NOTIFY_EVERY:
        _notify_admins(customer, reason or text, alert)
        alert.notified_at = now
    return alert


def clear(cause: str) -> int:
    """Clear the open alert for `cause` (the banner disappears)."""
    now = utcnow()
    alerts = db.session.scalars(
        select(Alert).where(Alert.cause == cause, Alert.cleared_at.is_(None))).all()
    for alert in alerts:
        alert.cleared_at = now
    db.session.commit()
    return len(alerts)


def _notify_admins(customer: Customer | None, reason: str, alert: Alert) -> None:
    """Queue a processing_blocked notification to every active administrator."""
    from ..messages import intake

    admins = db.session.scalars(
        select(User.email).where(User.role == "admin", User.active.is_(True))).all()
    if not admins:
        log.warning("alert %s: no active administrator to notify", alert.cause)
        return
    base = current_app.config.get("POSTINO_PUBLIC_URL", "").rstrip("/")
    link = f"{base}/customers/{customer.code}" if customer else f"{base}/jobs/"
    staff = staff_customer()
    data = {
        "company_name": customer.name if customer else "Postino",
        # the email is rendered once, now, in the staff customer's language: so is the reason
        "reason": reasons.in_language(reason, staff.default_language or "it"),
        "since": alert.raised_at.strftime("%d/%m/%Y %H:%M UTC"),
        "link": link,
    }
    intake.enqueue(staff, "processing_blocked", admins[:50], reference=alert.cause,
                     data=data, commit=False)


def processing_blocked(customer: Customer, reason: str) -> Alert:
    """A customer was paused: alert the administrators."""
    return raise_alert(f"paused:{customer.id}",
                       reasons.encode("customer_blocked_alert", name=customer.name,
                                      reason=reason), customer, reason)


# -- what delivery announces (delivery/signals.py); connected by the app factory -----------

def _customer_paused(customer: Customer, reason: str) -> None:
    processing_blocked(customer, reason)


def _customer_resumed(customer: Customer) -> None:
    clear(f"paused:{customer.id}")


def _relay_tripped(_sender, words: str) -> None:
    # the alert keeps the server's words; the banner says the rest in the reader's language
    raise_alert(RELAY_ALERT, words, None, f"our relay refuses our sending account: {words}")


def _relay_recovered(_sender) -> None:
    """Close the relay's alert in the sweep's transaction (`clear` commits on its own)."""
    db.session.execute(update(Alert).where(Alert.cause == RELAY_ALERT,
                                           Alert.cleared_at.is_(None))
                       .values(cleared_at=utcnow())
                       .execution_options(synchronize_session=False))


def listen() -> None:
    """Raise and clear alerts on delivery's signals (idempotent)."""
    signals.customer_paused.connect(_customer_paused)
    signals.customer_resumed.connect(_customer_resumed)
    signals.relay_tripped.connect(_relay_tripped)
    signals.relay_recovered.connect(_relay_recovered)
