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
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import and_, delete, func, select, true, update
from sqlalchemy.orm import Session

from ...database import release_tuned, tune_sqlite
from ...extensions import db
from ...models import (
    PENDING_STATUSES,
    BounceReport,
    Customer,
    IdempotencyKey,
    JobRun,
    Message,
    MessageAttachment,
    MessageEvent,
    Suppression,
    utcnow,
)
from ..core import audit, settings
from . import jobs

log = logging.getLogger(__name__)

JOB = "purge"
BATCH_SIZE = 5000  # rows deleted per transaction, at most
PAUSE_SECONDS = 0.01  # between batches: lets the worker and the dashboard write
JOB_RUN_KEEP_DAYS = 14
IDEMPOTENCY_KEEP_DAYS = 2  # keys are replayed for 24 hours only
# Every foreign key to message.id, handled by _delete_range (tested against the models: on
# SQLite the purge runs with foreign keys off, so a new one must be added here).
ROWS_DELETED = (MessageEvent, MessageAttachment)  # with their message
LINKS_KEPT = (Suppression, BounceReport)  # message_id set to NULL; message.resend_of_id too
SQLITE_WAL_PAGES = 16000  # ~64 MB of WAL between checkpoints while purging (see below)


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


@contextmanager
def _purge_session():
    """A session on a connection of the purge's own, tuned for deleting on SQLite.

    Foreign keys off: every row that points at a purged message is deleted or unlinked
    explicitly, in the same transaction, so SQLite's per-row foreign-key programs only
    repeat that work (about a quarter of the purge's time). A larger WAL before
    checkpointing: each batch rewrites index pages spread all over the file and a
    checkpoint (with its fsync) after every batch costs more than the deletes themselves;
    letting the WAL reach ~64 MB lets consecutive batches' pages be copied back once.
    Both settings belong to this connection only and are put back before it returns to
    the pool. PostgreSQL needs none of this.
    """
    connection = db.engine.connect()
    saved: dict = {}
    try:
        saved = tune_sqlite(connection, foreign_keys=0, wal_autocheckpoint=SQLITE_WAL_PAGES)
        with Session(bind=connection, expire_on_commit=False) as session:
            yield session
    finally:
        release_tuned(connection, saved)


def _delete_events_in_chunks(session: Session, message_id: int, batch_size: int,
                             pause: float) -> int:
    """A message with more events than a batch: its events go first, batch by batch."""
    events = MessageEvent.__table__
    deleted = 0
    while True:
        ids = session.scalars(select(events.c.id).where(events.c.message_id == message_id)
                              .limit(batch_size)).all()
        if not ids:
            return deleted
        deleted += session.execute(delete(events).where(events.c.id.in_(ids))).rowcount
        session.commit()
        time.sleep(pause)


def _count(session: Session, table, condition) -> int:
    return session.scalar(select(func.count()).select_from(table).where(condition)) or 0


def _delete_range(session: Session, in_range, ids) -> tuple[int, int, int]:
    """Delete the messages `in_range` with their events and attachments, in one transaction,
    and unlink what must outlive them (Core statements, no ORM bookkeeping)."""
    messages = Message.__table__
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(messages.c.id).where(in_range).with_for_update()).all()
    events = session.execute(delete(MessageEvent.__table__).where(
        MessageEvent.__table__.c.message_id.in_(ids))).rowcount
    attachments = session.execute(delete(MessageAttachment.__table__).where(
        MessageAttachment.__table__.c.message_id.in_(ids))).rowcount
    # A newer resend keeps its own timeline ("resend of …"); only the link goes. Billing
    # evidence (suppressions, bounce reports) stays, without the link.
    session.execute(update(messages).where(messages.c.resend_of_id.in_(ids))
                    .values(resend_of_id=None))
    for model in LINKS_KEPT:
        table = model.__table__
        session.execute(update(table).where(table.c.message_id.in_(ids))
                        .values(message_id=None))
    deleted = session.execute(delete(messages).where(in_range)).rowcount
    session.commit()
    return deleted, events, attachments


def _purge_group(session: Session, cutoff: datetime, customer_filter, result: PurgeResult,
                 batch_size: int, pause: float, progress) -> None:
    """Walk the group's expired messages in id order, one id range per transaction, each
    range sized (by counting first) to hold at most `batch_size` rows in all."""
    expired = _expired(cutoff, customer_filter)
    upper = session.scalar(select(func.max(Message.id)).where(
        Message.created_at < cutoff, customer_filter))
    session.commit()
    if upper is None:
        return
    position, per_message = 0, 4.0  # first guess of rows per message, then measured
    events, attachments = MessageEvent.__table__, MessageAttachment.__table__
    while position < upper:
        wanted = max(1, min(batch_size, int(batch_size / per_message)))
        window = and_(Message.id > position, Message.id <= upper, expired)
        found = session.scalars(select(Message.id).where(window).order_by(Message.id)
                                .limit(wanted)).all()
        if not found:
            session.commit()
            break
        high, count = found[-1], len(found)
        in_range = and_(Message.id > position, Message.id <= high, expired)
        ids = select(Message.id).where(in_range)
        # Timeline rows and files of the id range (of its kept messages too: never fewer
        # than the transaction will delete).
        span = and_(events.c.message_id > position, events.c.message_id <= high)
        rows = count + _count(session, events, span) + _count(
            session, attachments, and_(attachments.c.message_id > position,
                                       attachments.c.message_id <= high))
        session.commit()  # end the read: the pause below must not hold a snapshot
        if rows > batch_size and count > 1:
            per_message = max(per_message * 2, rows / count * 1.1)
            continue
        if rows > batch_size:  # one message bigger than a batch: its events go first
            result.events += _delete_events_in_chunks(session, high, batch_size, pause)
        messages, deleted_events, deleted_attachments = _delete_range(session, in_range, ids)
        result.messages += messages
        result.events += deleted_events
        result.attachments += deleted_attachments
        result.batches += 1
        position = high
        per_message = max(1.0, rows / count)
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
    db.session.commit()  # the groups were read: hold no snapshot while the purge writes
    with _purge_session() as session:
        for cutoff, customer_filter in groups:
            _purge_group(session, cutoff, customer_filter, result, batch_size, pause, progress)
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
