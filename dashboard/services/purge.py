"""Retention: delete messages (with their events and attachments) older than the retention
period, in small batches so the dashboard and the worker keep working meanwhile.

Never purged: messages that can still leave (queued, deferred, sending, held), suppressions,
removals, bounce reports (their link to a purged message becomes NULL) and the audit log.
Old job runs are trimmed too (the sweep records one every few seconds), keeping each job's
latest run. The daily job, `flask purge` and "run now" all call `run_job`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import and_, delete, func, literal, select, true, tuple_, update

from ..extensions import db
from ..models import (
    PENDING_STATUSES,
    Customer,
    IdempotencyKey,
    JobRun,
    Message,
    MessageAttachment,
    MessageEvent,
    UTCDateTime,
    utcnow,
)
from . import audit, jobs, settings

log = logging.getLogger(__name__)

JOB = "purge"
BATCH_SIZE = 5000  # rows deleted per transaction, at most
PAUSE_SECONDS = 0.01  # between batches: lets the worker and the dashboard write
JOB_RUN_KEEP_DAYS = 14
IDEMPOTENCY_KEEP_DAYS = 2  # keys are replayed for 24 hours only


@dataclass
class PurgeResult:
    """What a purge deleted (or, in a dry run, would delete)."""

    messages: int = 0
    events: int = 0
    attachments: int = 0
    job_runs: int = 0
    idempotency_keys: int = 0
    batches: int = 0
    dry_run: bool = False
    skipped: bool = False

    def line(self) -> str:
        """The CLI's last line."""
        prefix = "dry run: would delete " if self.dry_run else ""
        return (f"{prefix}messages={self.messages} events={self.events} "
                f"attachments={self.attachments} job_runs={self.job_runs} "
                f"idempotency_keys={self.idempotency_keys}")

    def as_dict(self) -> dict:
        return asdict(self)


def retention_days(customer: Customer | None = None) -> int:
    """How many days of history are kept: the customer's override, else the global setting."""
    if customer is not None and customer.retention_days:
        return int(customer.retention_days)
    return int(settings.get("retention_days"))


def retention_notice(customer: Customer | None = None) -> str:
    """The sentence the log and message pages show about how long history is kept."""
    return _("Messages older than %(days)d days are no longer available.",
             days=retention_days(customer))


def _groups(older_than_days: int | None, now: datetime) -> list[tuple[datetime, object]]:
    """(cutoff, customer filter) pairs: the default retention, then each customer override.

    `older_than_days` replaces the global retention for this run; customers with their own
    retention keep it (it may be contractual).
    """
    overrides = db.session.execute(
        select(Customer.id, Customer.retention_days).where(Customer.retention_days.is_not(None),
                                                          Customer.retention_days > 0)
    ).all()
    days = older_than_days if older_than_days is not None else retention_days()
    override_ids = [row.id for row in overrides]
    default_filter = Message.customer_id.not_in(override_ids) if override_ids else true()
    groups = [(now - timedelta(days=days), default_filter)]
    groups += [(now - timedelta(days=row.retention_days), Message.customer_id == row.id)
                for row in overrides]
    return groups


def _expired(cutoff: datetime, customer_filter) -> object:
    """Messages past `cutoff` that can no longer change: the only ones ever purged."""
    return and_(Message.created_at < cutoff, Message.status.not_in(PENDING_STATUSES),
                customer_filter)


def _counts_by_message(model, ids: list[int]) -> dict[int, int]:
    rows = db.session.execute(
        select(model.message_id, func.count()).where(model.message_id.in_(ids))
        .group_by(model.message_id)).all()
    return {message_id: count for message_id, count in rows}


def _delete_events_in_chunks(message_id: int, batch_size: int, pause: float) -> int:
    """A message with more events than a batch: its events go first, batch by batch."""
    deleted = 0
    while True:
        chunk = select(MessageEvent.id).where(MessageEvent.message_id == message_id) \
            .limit(batch_size)
        ids = db.session.scalars(chunk).all()
        if not ids:
            return deleted
        deleted += db.session.execute(
            delete(MessageEvent).where(MessageEvent.id.in_(ids))
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        time.sleep(pause)


def _delete_batch(ids: list[int], cutoff: datetime, customer_filter) -> tuple[int, int, int]:
    """Delete one batch of messages with their events and attachments, in one transaction."""
    guard = select(Message.id).where(Message.id.in_(ids), _expired(cutoff, customer_filter))
    if db.engine.dialect.name == "postgresql":
        guard = guard.with_for_update()  # nobody changes them while we delete
    ids = list(db.session.scalars(guard))
    if not ids:
        db.session.rollback()
        return 0, 0, 0
    events = db.session.execute(
        delete(MessageEvent).where(MessageEvent.message_id.in_(ids))
        .execution_options(synchronize_session=False)).rowcount
    attachments = db.session.execute(
        delete(MessageAttachment).where(MessageAttachment.message_id.in_(ids))
        .execution_options(synchronize_session=False)).rowcount
    # A newer resend keeps its own timeline ("resend of …"); only the link goes.
    db.session.execute(
        update(Message).where(Message.resend_of_id.in_(ids)).values(resend_of_id=None)
        .execution_options(synchronize_session=False))
    messages = db.session.execute(
        delete(Message).where(Message.id.in_(ids), _expired(cutoff, customer_filter))
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return messages, events, attachments


def _purge_group(cutoff: datetime, customer_filter, result: PurgeResult, batch_size: int,
                 pause: float, progress) -> None:
    """Walk the expired messages of one group in (created_at, id) order, batch by batch."""
    position: tuple[datetime, int] | None = None
    rows_per_message = 4.0  # first guess, then measured
    while True:
        limit = max(1, min(batch_size, int(batch_size / rows_per_message)))
        query = select(Message.id, Message.created_at).where(_expired(cutoff, customer_filter))
        if position is not None:
            query = query.where(tuple_(Message.created_at, Message.id) > tuple_(
                literal(position[0], UTCDateTime()), literal(position[1])))
        candidates = db.session.execute(
            query.order_by(Message.created_at, Message.id).limit(limit)).all()
        db.session.commit()  # end the read: the pause below must not hold a snapshot
        if not candidates:
            return
        ids = [row.id for row in candidates]
        sizes = _counts_by_message(MessageEvent, ids)
        for message_id, count in _counts_by_message(MessageAttachment, ids).items():
            sizes[message_id] = sizes.get(message_id, 0) + count
        db.session.commit()
        chosen, rows = [], 0
        for row in candidates:
            size = 1 + sizes.get(row.id, 0)
            if size > batch_size and not chosen:
                result.events += _delete_events_in_chunks(row.id, batch_size, pause)
                size = 1
            if rows + size > batch_size:
                break
            chosen.append(row.id)
            rows += size
            position = (row.created_at, row.id)
        messages, events, attachments = _delete_batch(chosen, cutoff, customer_filter)
        result.messages += messages
        result.events += events
        result.attachments += attachments
        result.batches += 1
        rows_per_message = max(1.0, rows / len(chosen))
        if progress is not None:
            progress(result)
        time.sleep(pause)


def _job_runs_to_trim(now: datetime):
    latest = select(func.max(JobRun.id)).group_by(JobRun.job)
    return and_(JobRun.started_at < now - timedelta(days=JOB_RUN_KEEP_DAYS),
                JobRun.id.not_in(latest))


def _trim(model, condition, batch_size: int, pause: float) -> int:
    """Delete rows matching `condition` by primary key, one batch per transaction."""
    deleted = 0
    while True:
        ids = db.session.scalars(select(model.id).where(condition).limit(batch_size)).all()
        db.session.commit()
        if not ids:
            return deleted
        deleted += db.session.execute(
            delete(model).where(model.id.in_(ids))
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        time.sleep(pause)


def purge(older_than_days: int | None = None, dry_run: bool = False,
          batch_size: int = BATCH_SIZE, pause: float = PAUSE_SECONDS,
          progress=None, now: datetime | None = None) -> PurgeResult:
    """Delete (or count, in a dry run) everything past retention; see the module docstring."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    now = now or utcnow()
    result = PurgeResult(dry_run=dry_run)
    idempotency = IdempotencyKey.created_at < now - timedelta(days=IDEMPOTENCY_KEEP_DAYS)
    groups = _groups(older_than_days, now)
    if dry_run:
        for cutoff, customer_filter in groups:
            expired = select(Message.id).where(_expired(cutoff, customer_filter))
            result.messages += db.session.scalar(
                select(func.count()).select_from(expired.subquery())) or 0
            result.events += db.session.scalar(
                select(func.count(MessageEvent.id))
                .where(MessageEvent.message_id.in_(expired))) or 0
            result.attachments += db.session.scalar(
                select(func.count(MessageAttachment.id))
                .where(MessageAttachment.message_id.in_(expired))) or 0
        result.job_runs = db.session.scalar(
            select(func.count(JobRun.id)).where(_job_runs_to_trim(now))) or 0
        result.idempotency_keys = db.session.scalar(
            select(func.count(IdempotencyKey.id)).where(idempotency)) or 0
        db.session.commit()
        return result
    for cutoff, customer_filter in groups:
        _purge_group(cutoff, customer_filter, result, batch_size, pause, progress)
    result.job_runs = _trim(JobRun, _job_runs_to_trim(now), batch_size, pause)
    result.idempotency_keys = _trim(IdempotencyKey, idempotency, batch_size, pause)
    return result


def expired_count(older_than_days: int | None = None, now: datetime | None = None) -> int:
    """How many messages are past retention now (the progress bar's total)."""
    now = now or utcnow()
    return sum(db.session.scalar(select(func.count(Message.id)).where(_expired(c, f))) or 0
               for c, f in _groups(older_than_days, now))


def run_job(older_than_days: int | None = None, dry_run: bool = False, *,
            requested_by_id: int | None = None, actor=None, actor_label: str | None = None,
            batch_size: int = BATCH_SIZE, pause: float = PAUSE_SECONDS) -> PurgeResult:
    """The purge as a singleton job: skipped (and recorded so) when another one runs."""
    params = {"older_than_days": older_than_days, "dry_run": dry_run}
    with jobs.singleton(JOB) as acquired:
        if not acquired:
            jobs.skipped(JOB, "another purge is running", requested_by_id, params)
            return PurgeResult(dry_run=dry_run, skipped=True)
        with jobs.recorded(JOB, requested_by_id, params) as run:
            run_id = run.id
            if not dry_run:
                run.total = expired_count(older_than_days)
                db.session.commit()
            last = {"at": 0.0}

            def progress(result: PurgeResult) -> None:
                if time.monotonic() - last["at"] < 1:
                    return
                last["at"] = time.monotonic()
                db.session.execute(update(JobRun).where(JobRun.id == run_id)
                                   .values(progress=result.messages))
                db.session.commit()

            result = purge(older_than_days, dry_run, batch_size=batch_size, pause=pause,
                           progress=progress)
            run = db.session.get(JobRun, run_id)
            run.progress = result.messages
            run.counts = result.as_dict()
            if (actor is not None or actor_label) and not dry_run:
                audit.record("purge.run", actor, "job", JOB, after=result.as_dict(),
                             note=f"older than {older_than_days} days" if older_than_days
                             else None, actor_label=actor_label)
    log.info("purge: %s", result.line())
    return result
