"""The sweep: claim due messages with a lease, send each over its transport, record the answer.

Safe with many workers: rows are claimed by one UPDATE (on PostgreSQL its subquery uses
`FOR UPDATE SKIP LOCKED`), each message's outcome is committed right after the server
answers, and a dead worker's claims are taken over when their lease expires. A worker stops
using a claim well before its lease ends, so two workers never hold the same row.
"""
from __future__ import annotations

import email.policy
import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import joinedload, selectinload

from ..extensions import db
from ..models import Customer, Message, MessageEvent, utcnow
from . import compose, jobs, modes, settings, suppressions
from .credentials import CredentialsError
from .messages import add_event, hold_reason, release_held
from .transport import Outcome, SmtpTransport

log = logging.getLogger(__name__)
DUE_STATUSES = ("queued", "deferred")
AUTH_FAILURES_BEFORE_PAUSE = 3


@dataclass
class SweepResult:
    """What one sweep did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    held: int = 0
    suppressed: int = 0

    def line(self) -> str:
        """The CLI's last line."""
        return (f"sent={self.sent} deferred={self.deferred} failed={self.failed} "
                f"held={self.held}")

    def as_dict(self) -> dict:
        return asdict(self)


def next_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt: the retry schedule with ±10 % jitter."""
    schedule = settings.get("retry_schedule") or [1, 5, 15, 60, 180, 360]
    minutes = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return timedelta(minutes=float(minutes) * random.uniform(0.9, 1.1))


def _lease_seconds() -> int:
    return int(current_app.config.get("POSTINO_LEASE_SECONDS", 300))


def _due_filter(now):
    return or_(
        and_(Message.status.in_(DUE_STATUSES), Message.next_attempt_at <= now),
        and_(Message.status == "sending", Message.lease_expires_at < now),
    )


def claim(owner: str, limit: int, now=None) -> list[int]:
    """Claim up to `limit` due messages for `owner`; returns their ids."""
    now = now or utcnow()
    due = (select(Message.id).where(_due_filter(now))
           .order_by(Message.next_attempt_at, Message.id).limit(limit))
    if db.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    db.session.execute(
        update(Message).where(Message.id.in_(due.scalar_subquery()))
        .values(status="sending", lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=_lease_seconds()))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return list(db.session.scalars(
        select(Message.id).where(Message.lease_owner == owner, Message.status == "sending")
        .order_by(Message.next_attempt_at, Message.id)
    ))


def release_claims(owner: str) -> None:
    """Give back claimed rows not yet sent (they stay due)."""
    db.session.execute(
        update(Message).where(Message.lease_owner == owner, Message.status == "sending")
        .values(status="queued", lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def hold_blocked() -> int:
    """Hold every due message whose customer cannot send now (or all, when sending is off)."""
    now = utcnow()
    query = select(Message.id).where(Message.status.in_(DUE_STATUSES))
    if settings.sending_enabled():
        blocked = select(Customer.id).where(
            or_(Customer.sending_enabled.is_(False), Customer.paused.is_(True)))
        query = query.where(Message.customer_id.in_(blocked))
        reason = "sending is off for this customer, or it is paused"
    else:
        reason = "sending is off for everyone (Settings)"
    total = 0
    while True:
        ids = db.session.scalars(query.limit(1000)).all()
        if not ids:
            return total
        db.session.execute(
            update(Message).where(Message.id.in_(ids), Message.status.in_(DUE_STATUSES))
            .values(status="held", status_reason=reason, updated_at=now)
            .execution_options(synchronize_session=False))
        db.session.execute(MessageEvent.__table__.insert(), [
            {"message_id": i, "type": "held", "at": now, "detail": reason} for i in ids])
        db.session.commit()
        total += len(ids)


def expire_held() -> int:
    """Held messages older than the maximum age fail as expired (never silently dropped)."""
    now = utcnow()
    cutoff = now - timedelta(hours=float(settings.get("max_age_hours")))
    ids = db.session.scalars(
        select(Message.id).where(Message.status == "held", Message.created_at < cutoff)
    ).all()
    if ids:
        db.session.execute(
            update(Message).where(Message.id.in_(ids))
            .values(status="failed", status_reason="expired while held", updated_at=now)
            .execution_options(synchronize_session=False))
        db.session.execute(MessageEvent.__table__.insert(), [
            {"message_id": i, "type": "expired", "at": now,
             "detail": "expired: held longer than the maximum age"} for i in ids])
        db.session.commit()
    return len(ids)


class _Transports:
    """One transport per key for the whole sweep, closed at the end."""

    def __init__(self):
        self._open: dict[str, SmtpTransport] = {}

    def get(self, customer: Customer) -> SmtpTransport:
        key = modes.transport_key(customer)
        transport = self._open.get(key)
        if transport is None:
            transport = SmtpTransport(modes.transport_settings(customer))
            self._open[key] = transport
        return transport

    def close(self) -> None:
        for transport in self._open.values():
            transport.close()
        self._open.clear()


def sweep(batch_size: int = 200, owner: str | None = None,
          max_messages: int | None = None) -> SweepResult:
    """One pass over the due queue, until nothing is due (or `max_messages` were handled)."""
    result = SweepResult()
    owner = owner or f"{jobs.worker_name()}:{uuid.uuid4().hex[:8]}"
    result.held += hold_blocked()
    release_held()
    result.failed += expire_held()
    transports = _Transports()
    handled = 0
    try:
        while max_messages is None or handled < max_messages:
            limit = batch_size if max_messages is None else min(batch_size, max_messages - handled)
            ids = claim(owner, limit)
            if not ids:
                break
            deadline = time.monotonic() + _lease_seconds() * 0.8
            for index, message_id in enumerate(ids):
                timeout = current_app.config.get("MAIL_TIMEOUT", 30)
                if time.monotonic() + 2 * float(timeout) > deadline:
                    release_claims(owner)  # near the lease end: give the rest back
                    break
                _process(message_id, owner, transports, result)
                handled += 1
    finally:
        transports.close()
        db.session.rollback()
        release_claims(owner)
    return result


def _process(message_id: int, owner: str, transports: _Transports, result: SweepResult) -> None:
    """Send one claimed message and commit its outcome."""
    message = db.session.scalar(
        select(Message).options(joinedload(Message.customer), selectinload(Message.attachments))
        .where(Message.id == message_id, Message.lease_owner == owner,
               Message.status == "sending"))
    if message is None:
        return
    now = utcnow()
    customer = message.customer
    max_age = timedelta(hours=float(settings.get("max_age_hours")))
    reason = hold_reason(customer)
    if reason:
        _finish(message, "held", status_reason=reason)
        add_event(message, "held", detail=reason)
        result.held += 1
    elif message.created_at + max_age < now:
        _finish(message, "failed", status_reason="expired: not delivered within the maximum age")
        add_event(message, "expired", detail=message.status_reason)
        result.failed += 1
    elif (entry := suppressions.active_for(message.recipient, customer, now)) is not None:
        _finish(message, "suppressed", status_reason=f"recipient on the suppression list "
                f"({entry.reason})")
        message.suppression_id = entry.id
        add_event(message, "suppressed", detail=message.status_reason)
        result.suppressed += 1
    else:
        outcome = _send(message, customer, transports)
        _record(message, customer, outcome, result)
    db.session.commit()


def _send(message: Message, customer: Customer, transports: _Transports) -> Outcome:
    try:
        transport = transports.get(customer)
    except CredentialsError as exc:
        return Outcome("deferred", None, exc.message)
    data = compose.build(message, open_tracking=True).as_bytes(policy=email.policy.SMTP)
    envid = message.public_id if customer.sending_mode != "customer_smtp" else None
    return transport.send(message.envelope_from, message.recipient, data, dsn_envid=envid)


def _finish(message: Message, status: str, status_reason: str | None = None) -> None:
    message.status = status
    message.status_reason = status_reason
    message.lease_owner = None
    message.lease_expires_at = None


def _record(message: Message, customer: Customer, outcome: Outcome, result: SweepResult) -> None:
    """Turn the server's answer into a status and a timeline event."""
    now = utcnow()
    message.attempts += 1
    message.last_smtp_code = outcome.code
    message.last_smtp_text = outcome.text[:2000]
    if outcome.status == "sent":
        _finish(message, "sent")
        message.sent_at = now
        message.next_attempt_at = None
        add_event(message, "sent", code=outcome.code, text=outcome.text[:2000], at=now)
        if customer.auth_failures:
            customer.auth_failures = 0
        result.sent += 1
        return
    if outcome.status == "failed":
        _finish(message, "failed", status_reason=f"refused by the server at {outcome.stage}")
        message.next_attempt_at = None
        add_event(message, "failed", code=outcome.code, text=outcome.text[:2000], at=now,
                  detail=message.status_reason)
        if outcome.stage in ("rcpt", "data"):
            entry = suppressions.record_send_failure(message, outcome.code, outcome.text)
            if entry is not None:
                message.suppression_id = entry.id
        result.failed += 1
        return
    # deferred or auth_failed: retry later, unless the message is too old by then
    detail = None
    if outcome.status == "auth_failed":
        detail = "authentication failed"
        customer.auth_failures = (customer.auth_failures or 0) + 1
        if customer.auth_failures >= AUTH_FAILURES_BEFORE_PAUSE and not customer.paused:
            from . import sending

            sending.pause_customer(customer, f"repeated SMTP authentication failures "
                                             f"({outcome.code} {outcome.text[:200]})")
    next_at = now + next_delay(message.attempts)
    max_age = timedelta(hours=float(settings.get("max_age_hours")))
    if next_at > message.created_at + max_age:
        _finish(message, "failed", status_reason="expired: retries exhausted")
        message.next_attempt_at = None
        add_event(message, "expired", code=outcome.code, text=outcome.text[:2000], at=now,
                  detail=message.status_reason)
        result.failed += 1
        return
    _finish(message, "deferred", status_reason=detail)
    message.next_attempt_at = next_at
    add_event(message, "deferred", code=outcome.code, text=outcome.text[:2000], at=now,
              detail=detail, data={"next_attempt_at": next_at.isoformat()})
    result.deferred += 1
