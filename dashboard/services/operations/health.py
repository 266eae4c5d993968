"""Queue health: what the queue holds, whether a worker is alive, and the health-check job
that raises (and clears) `processing_blocked` alerts for staff."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import func, select

from ... import reasons
from ...extensions import db
from ...models import PENDING_STATUSES, Alert, Customer, Message, utcnow
from . import alerts, jobs

HEARTBEAT_ALERT_SECONDS = 5 * 60
BACKLOG_ALERT_SECONDS = 15 * 60
WORKER_CAUSE = "worker_heartbeat"
BACKLOG_CAUSE = "queue_backlog"
CAUSES = (WORKER_CAUSE, BACKLOG_CAUSE)
DUE_STATUSES = ("queued", "deferred")


@dataclass
class QueueHealth:
    """A snapshot of the queue for the Jobs page."""

    by_status: dict[str, int] = field(default_factory=dict)
    oldest_due_at: datetime | None = None
    oldest_due_seconds: float | None = None
    deferred_reasons: list[tuple[int | None, str, int]] = field(default_factory=list)
    per_customer: list[dict] = field(default_factory=list)
    heartbeat_seconds: float | None = None
    sweep_seconds: int = 5

    @property
    def worker_alive(self) -> bool:
        """A sweep finished within two sweep intervals (at least a minute, for slow sweeps)."""
        limit = max(2 * self.sweep_seconds, 60)
        return self.heartbeat_seconds is not None and self.heartbeat_seconds <= limit


def sweep_seconds() -> int:
    """The sweep interval, as configured for the worker."""
    return int(current_app.config.get("POSTINO_SWEEP_SECONDS", 5))


def oldest_due(now: datetime | None = None) -> datetime | None:
    """When the longest-waiting due message became due (None when nothing is due)."""
    now = now or utcnow()
    return db.session.scalar(
        select(func.min(Message.next_attempt_at))
        .where(Message.status.in_(DUE_STATUSES), Message.next_attempt_at <= now))


def _age(at: datetime | None, now: datetime) -> float | None:
    return None if at is None else round((now - at).total_seconds(), 1)


def queue_health(now: datetime | None = None) -> QueueHealth:
    """Messages by status, the oldest due one, deferred by reason, pending per customer."""
    now = now or utcnow()
    health = QueueHealth(sweep_seconds=sweep_seconds())
    health.by_status = dict(db.session.execute(
        select(Message.status, func.count()).group_by(Message.status)).all())
    health.oldest_due_at = oldest_due(now)
    health.oldest_due_seconds = _age(health.oldest_due_at, now)
    reason = func.substr(func.coalesce(Message.last_smtp_text, ""), 1, 120)
    health.deferred_reasons = [
        (code, text, n) for code, text, n in db.session.execute(
            select(Message.last_smtp_code, reason, func.count())
            .where(Message.status == "deferred")
            .group_by(Message.last_smtp_code, reason)
            .order_by(func.count().desc()).limit(10)).all()]
    rows = db.session.execute(
        select(Customer.code, Customer.name, Customer.paused, Message.status, func.count())
        .join(Customer, Message.customer_id == Customer.id)
        .where(Message.status.in_(PENDING_STATUSES))
        .group_by(Customer.code, Customer.name, Customer.paused, Message.status)).all()
    customers: dict[str, dict] = {}
    for code, name, paused, status, n in rows:
        entry = customers.setdefault(code, {"code": code, "name": name, "paused": paused,
                                            "counts": {}, "total": 0})
        entry["counts"][status] = n
        entry["total"] += n
    health.per_customer = sorted(customers.values(), key=lambda c: -c["total"])
    health.heartbeat_seconds = jobs.heartbeat_age_seconds()
    return health


def check(now: datetime | None = None) -> dict:
    """The health-check job: raise or clear each cause; returns what it found."""
    now = now or utcnow()
    found = {"heartbeat_seconds": jobs.heartbeat_age_seconds(), "backlog_seconds": None,
             "paused": 0, "raised": 0, "cleared": 0}
    heartbeat = found["heartbeat_seconds"]
    if heartbeat is not None and heartbeat > HEARTBEAT_ALERT_SECONDS:
        alerts.raise_alert(WORKER_CAUSE, reasons.encode("worker_heartbeat",
                                                        minutes=int(heartbeat // 60)))
        found["raised"] += 1
    else:
        found["cleared"] += alerts.clear(WORKER_CAUSE)
    backlog = _age(oldest_due(now), now)
    found["backlog_seconds"] = backlog
    if backlog is not None and backlog > BACKLOG_ALERT_SECONDS:
        alerts.raise_alert(BACKLOG_CAUSE, reasons.encode("queue_backlog",
                                                         minutes=int(backlog // 60)))
        found["raised"] += 1
    else:
        found["cleared"] += alerts.clear(BACKLOG_CAUSE)
    paused = db.session.scalars(select(Customer).where(Customer.paused.is_(True))).all()
    for customer in paused:
        alerts.processing_blocked(customer, customer.paused_reason
                                  or reasons.encode("processing_blocked"))
        found["raised"] += 1
    found["paused"] = len(paused)
    still_paused = {f"paused:{customer.id}" for customer in paused}
    open_paused = db.session.scalars(
        select(Alert.cause).where(Alert.cause.like("paused:%"), Alert.cleared_at.is_(None))).all()
    for cause in set(open_paused) - still_paused:
        found["cleared"] += alerts.clear(cause)
    db.session.commit()
    return found
