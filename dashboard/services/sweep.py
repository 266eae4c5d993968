"""The sweep: claim due messages with a lease, send each over its transport, record the answer.

Safe with many workers: due rows are read in index order (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`) and claimed by one UPDATE that re-checks they are still due, each
message's outcome is committed right after the server answers (see _Outcomes), and a dead
worker's claims are taken over when their lease expires. A worker renews its lease before it
runs short, keeps renewing the lease of the message in flight however slow its server is
(see _Heartbeat), never starts a send (nor its DATA) after its lease ended, and writes an
outcome only while it still holds the row, so two live workers never send the same message.

One message never stops the sweep: an error no rule foresaw while handling it defers it
(and fails it after a few such errors) with the error on its timeline, and the sweep goes
on with the next one (see _unexpected). A database error does stop it: outcomes could no
longer be recorded.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from .. import reasons
from ..database import release_tuned, tune_sqlite
from ..extensions import db
from ..models import Customer, Message, MessageAttachment, MessageEvent, Suppression, utcnow
from . import compose, jobs, modes, send_outcomes, settings, suppressions
from .credentials import CredentialsError
from .messages import hold_reason, release_held
from .transport import Outcome, SmtpTransport

log = logging.getLogger(__name__)
DUE_STATUSES = ("queued", "deferred")
DEFAULT_SCHEDULE = [1, 5, 15, 60, 180, 360]
# An unexpected error while handling a message defers it; this many such errors fail it.
ERRORS_BEFORE_FAILING = 3
UNEXPECTED = "unexpected error"  # how those timeline entries start (and are counted)
# The most replies one send can wait on, each up to the transport's timeout: a reused
# connection's MAIL, then a fresh connection: TCP connect, banner, EHLO, STARTTLS, TLS
# handshake, EHLO, AUTH LOGIN (3), MAIL, RCPT, DATA, the message, its answer; rounded up.
SEND_REPLIES = 16


@dataclass
class SweepResult:
    """What one sweep did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    held: int = 0
    suppressed: int = 0
    lost: int = 0  # messages another worker took over mid-send: left to it, nothing written

    def line(self) -> str:
        """The CLI's last line."""
        return (f"sent={self.sent} deferred={self.deferred} failed={self.failed} "
                f"held={self.held}")

    def as_dict(self) -> dict:
        """The counts, for the job run record."""
        return asdict(self)


def next_delay(attempts: int, schedule: list | None = None) -> timedelta:
    """Backoff after the n-th failed attempt: the retry schedule with ±10 % jitter."""
    schedule = schedule or settings.get("retry_schedule") or DEFAULT_SCHEDULE
    minutes = schedule[min(max(attempts, 1), len(schedule)) - 1]
    return timedelta(minutes=float(minutes) * random.uniform(0.9, 1.1))


def _lease_seconds() -> int:
    return max(1, int(current_app.config.get("POSTINO_LEASE_SECONDS", 300)))


def _due_queries(now, limit: int) -> list:
    """One query per kind of due row, each read in index order and stopped at `limit`:
    queued and deferred rows by (status, next_attempt_at), then rows whose lease expired.
    A single OR-ed query would sort every due row on each claim (SQLite), which grows with
    the queue."""
    ordered = (Message.next_attempt_at, Message.id)
    queries = [select(Message.id, Message.next_attempt_at)
               .where(Message.status == status, Message.next_attempt_at <= now)
               .order_by(*ordered).limit(limit) for status in DUE_STATUSES]
    queries.append(select(Message.id, Message.next_attempt_at)
                   .where(Message.status == "sending", Message.lease_expires_at < now)
                   .order_by(*ordered).limit(limit))
    return [_lockable(query) for query in queries]


def _lockable(query):
    """Skip rows another worker holds (PostgreSQL); SQLite serialises writers anyway."""
    if db.engine.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def claim(owner: str, limit: int, now=None) -> list[int]:
    """Claim up to `limit` due messages for `owner`, earliest first; returns their ids."""
    now = now or utcnow()
    far = datetime.max.replace(tzinfo=UTC)
    for _attempt in range(3):
        rows = [row for query in _due_queries(now, limit) for row in db.session.execute(query)]
        rows.sort(key=lambda row: (row.next_attempt_at or far, row.id))
        ids = [row.id for row in rows[:limit]]
        if not ids:
            db.session.commit()
            return []
        # PostgreSQL: the rows read are locked until COMMIT (up to a few batches' worth,
        # the ones not taken are let go at once). SQLite: the read took no lock, so the
        # UPDATE re-checks that each row is still due; another claimer may have won them.
        claimed = db.session.scalars(
            update(Message).where(Message.id.in_(ids), or_(
                and_(Message.status.in_(DUE_STATUSES), Message.next_attempt_at <= now),
                and_(Message.status == "sending", Message.lease_expires_at < now)))
            .values(status="sending", lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=_lease_seconds()))
            .returning(Message.id)
            .execution_options(synchronize_session=False)
        ).all()
        db.session.commit()
        if claimed:
            return claimed
    return []  # lost every race three times in a row: the next sweep tries again


def renew_lease(owner: str) -> int:
    """Push back the lease of every row `owner` still holds; returns how many."""
    result = db.session.execute(
        update(Message).where(Message.lease_owner == owner, Message.status == "sending")
        .values(lease_expires_at=utcnow() + timedelta(seconds=_lease_seconds()))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount


def release_claims(owner: str) -> None:
    """Give back claimed rows not yet sent (they stay due)."""
    db.session.execute(
        update(Message).where(Message.lease_owner == owner, Message.status == "sending")
        .values(status="queued", lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


class LeaseLost(Exception):
    """This worker no longer holds the lease of the message it is sending."""


class _Heartbeat:
    """Keeps the lease of the message in flight while its server takes its time.

    One send waits on up to SEND_REPLIES replies, each up to the transport's own timeout
    (a customer's server may be given 300 s): far longer than a lease worth having, since a
    dead worker's claims wait a whole lease to be taken over. So the lease stays short and
    a thread renews the row being sent, on a connection of its own, until its send ends
    (or has run SEND_REPLIES timeouts: a server that trickles bytes for ever does not keep
    the row for ever). The rest of the batch is renewed between messages as before; when a
    slow send outlives it, other workers take it over and this one stops before it.

    The thread wakes every sixth of the lease and renews when less than half is left; a send
    starts with at least half left (see `sweep`), so a renewal lands with a third to spare.
    `check()`, called before DATA, refuses to go on once the lease may have ended.
    """

    def __init__(self, engine, owner: str, lease: float):
        self._engine = engine
        self._owner = owner
        self._lease = lease
        self._lock = threading.Lock()
        self._current: list | None = None  # [message id, lease end, renew until] (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sending(self, message_id: int, lease_end: float, timeout: float) -> None:
        """A send of `message_id` starts; its row's lease ends at `lease_end` (monotonic)."""
        now = time.monotonic()
        with self._lock:
            self._current = [message_id, lease_end, now + SEND_REPLIES * timeout]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sweep-lease", daemon=True)
            self._thread.start()

    def done(self) -> None:
        """The send ended."""
        with self._lock:
            self._current = None

    def check(self) -> None:
        """Raise LeaseLost when the message in flight may belong to another worker by now."""
        with self._lock:
            current = self._current
        if current is not None and time.monotonic() >= current[1]:
            raise LeaseLost(f"the lease of message {current[0]} ended during its send")

    def close(self) -> None:
        """Stop the thread (it closes its connection); a renewal stuck on a frozen database
        does not hold up the end of the sweep for more than a few seconds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        connection = None
        warned = None
        try:
            while not self._stop.wait(self._lease / 6):
                with self._lock:
                    current = self._current
                if current is None:
                    continue
                message_id, lease_end, renew_until = current
                started = time.monotonic()
                if lease_end - started > self._lease / 2:
                    continue
                if started > renew_until:
                    if warned != message_id:
                        warned = message_id
                        log.warning("sweep: message %s has been sending for %d timeouts; its "
                                    "lease is no longer renewed", message_id, SEND_REPLIES)
                    continue
                try:
                    if connection is None:
                        connection = self._engine.connect()
                    renewed = connection.execute(
                        update(Message).where(Message.id == message_id,
                                              Message.lease_owner == self._owner,
                                              Message.status == "sending")
                        .values(lease_expires_at=utcnow() + timedelta(seconds=self._lease))
                    ).rowcount
                    connection.commit()
                except Exception:  # the next wake tries again; check() stops DATA meanwhile
                    log.warning("sweep: could not renew the lease of message %s", message_id,
                                exc_info=True)
                    if connection is not None:
                        connection.invalidate()
                        connection.close()
                        connection = None
                    continue
                with self._lock:
                    still_sending = self._current is current
                    if still_sending:
                        # taken before the UPDATE: the row's lease ends no earlier than this
                        current[1] = started + self._lease if renewed else 0.0
                if still_sending and not renewed:  # (once done, its outcome may be written)
                    log.warning("sweep: message %s was taken over by another worker during "
                                "its send", message_id)
        finally:
            if connection is not None:
                connection.close()


def _transition(query, status: str, event_type: str, reason: str, detail: str) -> int:
    """Move the rows `query` selects to `status` in chunks, one timeline event per row moved.

    The UPDATE re-checks the status and RETURNs the rows it really changed, so two workers
    doing this at once never write two events for one message.
    """
    total = 0
    while True:
        now = utcnow()
        chunk = _lockable(query.limit(500)).scalar_subquery()
        ids = db.session.scalars(
            update(Message).where(Message.id.in_(chunk))
            .values(status=status, status_reason=reason, updated_at=now,
                    lease_owner=None, lease_expires_at=None)
            .returning(Message.id)
            .execution_options(synchronize_session=False)).all()
        if not ids:
            db.session.commit()
            return total
        db.session.execute(MessageEvent.__table__.insert(), [
            {"message_id": i, "type": event_type, "at": now, "detail": detail} for i in ids])
        db.session.commit()
        total += len(ids)


def hold_blocked() -> int:
    """Hold every due message whose customer cannot send now (or all, when sending is off)."""
    query = select(Message.id).where(Message.status.in_(DUE_STATUSES))
    if settings.sending_enabled():
        blocked = select(Customer.id).where(
            or_(Customer.sending_enabled.is_(False), Customer.paused.is_(True)))
        query = query.where(Message.customer_id.in_(blocked))
        reason = reasons.encode("customer_blocked")
    else:
        reason = reasons.encode("sending_off")
    return _transition(query, "held", "held", reason, reason)


def expire_held() -> int:
    """Held messages older than the maximum age fail as expired (never silently dropped)."""
    cutoff = utcnow() - timedelta(hours=float(settings.get("max_age_hours")))
    query = select(Message.id).where(Message.status == "held", Message.created_at < cutoff)
    return _transition(query, "failed", "expired", reasons.encode("expired_while_held"),
                       reasons.encode("expired_held"))


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


@dataclass
class _Batch:
    """A claimed batch with what every message of it needs, read in a few queries."""

    messages: list[Message]
    sending_enabled: bool
    max_age: timedelta
    schedule: list
    suppressed: dict[str, list[Suppression]] = field(default_factory=dict)
    connection: object = None  # where outcomes are written (see _save)
    prepared: dict[int, bytes] = field(default_factory=dict)  # built ahead (see _send)
    reattach: list[Message] = field(default_factory=list)  # the caller's copies of them
    heartbeat: _Heartbeat | None = None  # renews the lease of the message in flight
    lease_end: float = math.inf  # when the batch's claims end (monotonic)
    breakers: dict = field(default_factory=dict)  # known breaker counts (send_outcomes)

    @classmethod
    def load(cls, ids: list[int], owner: str) -> _Batch:
        """The claimed rows (with customer and attachments) and the settings in force.

        The messages are read by a session of their own and come out detached: their
        outcome is written by two statements on a connection of its own (see _Outcomes),
        not by the ORM's unit of work, which costs more than the SMTP exchange itself.
        Customers stay in the sweep's session (a pause or an auth-failure count is saved
        through it).
        """
        with Session(db.engine, expire_on_commit=False) as reader:
            rows = reader.scalars(
                select(Message).where(Message.id.in_(ids), Message.lease_owner == owner,
                                      Message.status == "sending")
                .order_by(Message.next_attempt_at, Message.id)).all()
            files: dict[int, list] = {}
            for attachment in reader.scalars(select(MessageAttachment).where(
                    MessageAttachment.message_id.in_([m.id for m in rows]))
                    .order_by(MessageAttachment.id)):
                files.setdefault(attachment.message_id, []).append(attachment)
        # closing the reader detached them, loaded (a rollback would have expired them)
        customer_ids = sorted({m.customer_id for m in rows})
        customers = {c.id: c for c in db.session.scalars(
            select(Customer).where(Customer.id.in_(customer_ids)))} if rows else {}
        for message in rows:
            set_committed_value(message, "customer", customers[message.customer_id])
            set_committed_value(message, "attachments", files.get(message.id, []))
        batch = cls(rows, settings.sending_enabled(),
                    timedelta(hours=float(settings.get("max_age_hours"))),
                    list(settings.get("retry_schedule") or DEFAULT_SCHEDULE))
        # Copies the caller holds in its session are reloaded after the sweep.
        batch.reattach = [held for held in (
            db.session.identity_map.get(identity_key(Message, m.id)) for m in rows)
            if held is not None]
        recipients = sorted({m.recipient for m in rows})
        if recipients:
            now = utcnow()
            entries = db.session.scalars(select(Suppression).where(
                Suppression.address.in_(recipients), Suppression.lifted_at.is_(None),
                or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
            ).order_by(Suppression.id.desc())).all()
            for entry in entries:
                batch.suppressed.setdefault(entry.address, []).append(entry)
        return batch

    def suppression_for(self, message: Message, customer: Customer) -> Suppression | None:
        """The newest active entry stopping this message (same rule as suppressions.active_for)."""
        scope, customer_id = suppressions.scope_for(customer)
        now = utcnow()
        for entry in self.suppressed.get(message.recipient, ()):
            if entry.scope != scope or (customer_id is not None
                                        and entry.customer_id != customer_id):
                continue
            if entry.expires_at is not None and entry.expires_at <= now:
                continue
            return entry
        return None

    def hold_reason(self, customer: Customer) -> str | None:
        """Why this customer's mail cannot go now, with the switch read for this batch."""
        return hold_reason(customer, self.sending_enabled)


def sweep(batch_size: int = 200, owner: str | None = None,
          max_messages: int | None = None) -> SweepResult:
    """One pass over the due queue, until nothing is due (or `max_messages` were handled)."""
    result = SweepResult()
    owner = owner or f"{jobs.worker_name()}:{uuid.uuid4().hex[:8]}"
    result.held += hold_blocked()
    release_held()
    result.failed += expire_held()
    transports = _Transports()
    lease = _lease_seconds()
    # Renew the batch's claims when less than half the lease is left: a send then starts
    # with half a lease to spare, and the heartbeat renews its row long before it ends,
    # however long the server takes.
    margin = lease / 2
    heartbeat = _Heartbeat(db.engine, owner, lease)
    session = db.session()
    expire_on_commit = session.expire_on_commit
    # Each message's outcome is committed alone; keeping the rest of the batch loaded
    # across those commits saves a reload query per message.
    session.expire_on_commit = False
    # Outcomes go through a connection (and a thread) of their own, one short transaction
    # per message: cheaper than the session's per-commit bookkeeping, overlapped with the
    # next SMTP exchange, and the same guarantee (see _Outcomes).
    outcomes = _Outcomes(db.engine, owner)
    handled = 0
    reattach: list[Message] = []
    try:
        while max_messages is None or handled < max_messages:
            limit = batch_size if max_messages is None else min(batch_size, max_messages - handled)
            lease_end = time.monotonic() + lease  # taken before the claim: conservative
            outcomes.wait()
            ids = claim(owner, limit)
            if not ids:
                break
            batch = _Batch.load(ids, owner)
            reattach.extend(batch.reattach)
            batch.connection = outcomes
            batch.heartbeat = heartbeat
            for position, message in enumerate(batch.messages):
                if time.monotonic() + margin > lease_end:
                    if time.monotonic() >= lease_end:
                        break  # we stalled past our lease: the rest may be someone else's
                    renewed_at = time.monotonic()
                    outcomes.wait()
                    renew_lease(owner)
                    lease_end = renewed_at + lease
                batch.lease_end = lease_end
                following = batch.messages[position + 1] \
                    if position + 1 < len(batch.messages) else None
                _process(message, batch, transports, result, following)
                handled += 1
            else:
                outcomes.checkpoint()  # runs while the next batch is claimed
                continue
            outcomes.wait()
            release_claims(owner)
        outcomes.wait()
    finally:
        heartbeat.close()
        transports.close()
        outcomes.close()
        result.lost += outcomes.lost
        session.expire_on_commit = expire_on_commit
        db.session.rollback()
        for message in reattach:  # the caller's objects stay usable, reloaded on access
            if message in db.session:
                db.session.expire(message)
        release_claims(owner)
    return result


def _process(message: Message, batch: _Batch, transports: _Transports,
             result: SweepResult, following: Message | None = None) -> None:
    """Send one claimed message and commit its outcome; an error no rule foresaw defers it
    instead of stopping the sweep (see _unexpected)."""
    now = utcnow()
    customer = message.customer
    events: list[dict] = []
    before = (message.attempts, message.suppression_id)
    outcome = None
    try:
        reason = batch.hold_reason(customer)
        if reason:
            _finish(message, "held", status_reason=reason)
            events.append(_event(message, "held", detail=reason, at=now))
            result.held += 1
        elif message.created_at + batch.max_age < now:
            _finish(message, "failed", status_reason=reasons.encode("expired_max_age"))
            events.append(_event(message, "expired", detail=message.status_reason, at=now))
            result.failed += 1
        elif (entry := batch.suppression_for(message, customer)) is not None:
            _finish(message, "suppressed", status_reason=reasons.encode(
                "suppressed", reason=reasons.suppression(entry.reason)))
            message.suppression_id = entry.id
            events.append(_event(message, "suppressed", detail=message.status_reason, at=now))
            result.suppressed += 1
        else:
            outcome = _send(message, customer, transports, batch, following)
            # the previous outcome is committed before the session may write (a suppression,
            # a paused customer), so the two connections never wait on each other's lock
            batch.connection.wait()
            if outcome.status == "unsupported":
                events.append(_unsupported(message, outcome, result))
            else:
                events.append(_record(message, customer, outcome, batch, result))
    except LeaseLost as exc:
        # Not sent (we stopped before DATA) and no longer ours: the worker holding it
        # sends it and writes its outcome.
        log.warning("sweep: message %s left to another worker: %s", message.public_id, exc)
        result.lost += 1
        return
    except Exception as exc:
        if _database_trouble(exc):
            raise  # outcomes could not be recorded either: stop, the next sweep starts over
        events = [_unexpected(message, exc, outcome, before, batch, result)]
    _save(message, events, batch.connection)


def _database_trouble(exc: Exception) -> bool:
    """An error of the database itself (the driver's, raw or wrapped by SQLAlchemy)."""
    return isinstance(exc, (DBAPIError, db.engine.dialect.loaded_dbapi.Error))


def _unsupported(message: Message, outcome: Outcome, result: SweepResult) -> dict:
    """The server lacks what this message needs (SMTPUTF8): it fails at once, saying why;
    no retry would change that, and it says nothing about the recipient."""
    message.attempts += 1
    _finish(message, "failed", status_reason=outcome.text)
    message.next_attempt_at = None
    result.failed += 1
    return _event(message, "failed", detail=outcome.text)


def _unexpected(message: Message, exc: Exception, outcome: Outcome | None, before: tuple,
                batch: _Batch, result: SweepResult) -> dict:
    """An error no rule foresaw while handling one message (building it, a transport that
    raised, recording the answer): logged with its traceback and put on the timeline. The
    message is deferred like a temporary failure, and fails at its ERRORS_BEFORE_FAILING-th
    such error (or at the maximum age). A message the server had already accepted is sent.
    Returns the timeline event; never raises, so the sweep goes on with the next message."""
    db.session.rollback()  # whatever the error left half done (e.g. a pause) is undone
    now = utcnow()
    error = f"{type(exc).__name__}: {exc}".replace("\x00", "")[:1000]
    message.attempts, message.suppression_id = before[0] + 1, before[1]
    if outcome is not None and outcome.ok:
        log.error("sweep: message %s was sent, then: %s", message.public_id, error,
                  exc_info=exc)
        _finish(message, "sent")
        message.sent_at, message.next_attempt_at = now, None
        message.last_smtp_code, message.last_smtp_text = outcome.code, outcome.text[:2000]
        result.sent += 1
        return _event(message, "sent", code=outcome.code, text=outcome.text[:2000], at=now,
                      detail=f"{UNEXPECTED} after sending: {error}")
    errors = 1 + db.session.scalar(select(func.count()).select_from(MessageEvent).where(
        MessageEvent.message_id == message.id, MessageEvent.detail.like(f"{UNEXPECTED}: %")))
    log.error("sweep: message %s, %s %d of %d: %s", message.public_id, UNEXPECTED, errors,
              ERRORS_BEFORE_FAILING, error, exc_info=exc)
    detail = f"{UNEXPECTED}: {error}"
    next_at = now + next_delay(message.attempts, batch.schedule)
    if errors >= ERRORS_BEFORE_FAILING or next_at > message.created_at + batch.max_age:
        _finish(message, "failed", status_reason=f"failed after {errors} unexpected errors")
        message.next_attempt_at = None
        result.failed += 1
        return _event(message, "failed", detail=detail, at=now)
    _finish(message, "deferred", status_reason=detail)
    message.next_attempt_at = next_at
    result.deferred += 1
    return _event(message, "deferred", detail=detail, at=now,
                  data={"next_attempt_at": next_at.isoformat()})


_SAVED_COLUMNS = ("status", "status_reason", "lease_owner", "lease_expires_at", "attempts",
                  "last_smtp_code", "last_smtp_text", "sent_at", "next_attempt_at",
                  "suppression_id", "fault_class", "fault_reason")


def _event(message: Message, type_: str, *, code: int | None = None, text: str | None = None,
           detail: str | None = None, data: dict | None = None, at=None) -> dict:
    """A timeline row for `message` (inserted by _save with the status it explains)."""
    return {"message_id": message.id, "type": type_, "smtp_code": code, "smtp_text": text,
            "detail": detail, "data": data, "at": at or utcnow(), "actor_id": None}


_MESSAGES = Message.__table__
# Only while the row is still this worker's: a worker that lost it (its lease ran out and
# another claimed it) must not overwrite the other's outcome.
_SAVE_MESSAGE = (
    _MESSAGES.update().where(_MESSAGES.c.id == bindparam("message_pk"),
                             _MESSAGES.c.lease_owner == bindparam("lease_holder"),
                             _MESSAGES.c.status == bindparam("claimed_status"))
    .values({name: bindparam(f"new_{name}") for name in (*_SAVED_COLUMNS, "updated_at")})
)
_SAVE_EVENT = MessageEvent.__table__.insert()
_EVENT_KEYS = ("message_id", "type", "smtp_code", "smtp_text", "detail", "data", "at",
               "actor_id")


class _Statement:
    """A statement compiled once for the dialect, run on the driver's cursor.

    Parameters go through the very bind processors SQLAlchemy would apply (UTC datetimes,
    JSON), so the stored values are the same; only the per-execution overhead is gone.
    """

    def __init__(self, statement, dialect, column_keys=None):
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.positions = compiled.positiontup
        self.processors = dict(compiled._bind_processors)

    def params(self, values: dict):
        processed = dict(values)
        for name, process in self.processors.items():
            if name in processed:
                processed[name] = process(processed[name])
        if self.positions:
            return tuple(processed[name] for name in self.positions)
        return processed


class _Outcomes:
    """Writes each outcome (UPDATE + timeline rows, one transaction) on a thread of its own.

    The write of message N overlaps with the building of message N+1 and its MAIL/RCPT
    exchange; `wait()` is called before N+1's DATA (and before the sweep's own session
    writes), so at any moment at most one delivered message lacks its committed outcome:
    a killed worker still re-sends at most the one message that was in flight. The thread
    spends its time in the database driver, which releases the GIL, while the sweep waits
    for the SMTP server's replies.

    The UPDATE matches only a row `owner` still holds; when it matches nothing another
    worker took the message over: its timeline rows are not written either, and it is
    counted in `lost`.
    """

    def __init__(self, engine, owner: str):
        self._engine = engine
        self._owner = owner
        self.lost = 0
        self._connection = None  # opened, used and closed on the writer thread only
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-outcomes")
        self._pending: Future | None = None
        self._used = False  # the writer thread (and maybe its connection) exists
        self._saved_pragmas: dict = {}  # what _open changed on its connection (SQLite)
        dialect = engine.dialect
        self.update = _Statement(_SAVE_MESSAGE, dialect)
        self.insert = _Statement(_SAVE_EVENT, dialect, column_keys=list(_EVENT_KEYS))

    def save(self, values: dict, events: list[dict]) -> None:
        """Queue the write; the previous one is finished first (and its error raised)."""
        self.wait()
        values["lease_holder"], values["claimed_status"] = self._owner, "sending"
        self._used = True
        self._pending = self._executor.submit(self._write, values, events)

    def wait(self) -> None:
        """Block until every queued outcome is committed; raise the write's error, if any."""
        pending = self._pending
        if pending is not None:
            try:
                pending.result()
            finally:
                if pending.done():  # an interrupted wait leaves it for close() to wait on
                    self._pending = None

    def checkpoint(self) -> None:
        """SQLite: copy the WAL back into the database now, between two batches, while the
        sweep claims the next one (the writer's own commits never checkpoint, see _open)."""
        if self._engine.dialect.name == "sqlite" and self._connection is not None:
            self._executor.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            self._connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            self._connection.commit()
        except Exception:  # the next commit's own checkpoint (or another connection's) does it
            log.warning("sweep: WAL checkpoint between batches failed", exc_info=True)

    def _open(self):
        """The writer's connection. On SQLite a commit that finds the WAL over 1,000 pages
        copies it back and fsyncs, which would stall the send waiting for that commit:
        this connection leaves checkpoints to `checkpoint()` (and every other one)."""
        connection = self._engine.connect()
        self._saved_pragmas = tune_sqlite(connection, wal_autocheckpoint=0)
        return connection

    def _write(self, values: dict, events: list[dict]) -> None:
        """UPDATE the message, INSERT its events, COMMIT: all or nothing."""
        if self._connection is None:
            self._connection = self._open()
        raw = self._connection.connection.dbapi_connection
        cursor = raw.cursor()
        try:
            cursor.execute(self.update.sql, self.update.params(values))
            if cursor.rowcount != 1:
                raw.rollback()
                self.lost += 1
                log.warning("sweep: message id %s was taken over by another worker; this "
                            "worker's outcome for it is not written", values["message_pk"])
                return
            for event in events:
                cursor.execute(self.insert.sql, self.insert.params(event))
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            cursor.close()

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            release_tuned(connection, self._saved_pragmas)

    def close(self) -> None:
        """Finish the queued write and stop the thread, logging (never raising) errors:
        this runs in the sweep's `finally`, which must still release the claims."""
        try:
            self.wait()
        except Exception:
            log.exception("sweep: the last outcome could not be written; the message is "
                          "released and sent again by the next sweep")
        try:
            if self._used:
                self._executor.submit(self._close_connection).result()
        except Exception:
            log.exception("sweep: the outcome writer's connection did not close cleanly")
        finally:
            self._executor.shutdown(wait=True)


def _save(message: Message, events: list[dict], outcomes: _Outcomes) -> None:
    """Write the message's new state and its timeline rows (committed by the writer)."""
    session = db.session()
    if session.in_transaction() or session.dirty:  # e.g. an auth-failure count reset
        # a suppression, a paused customer…: those go first (and on SQLite the session
        # must not hold the write lock while the other connection writes)
        outcomes.wait()
        db.session.commit()
    message.updated_at = utcnow()
    values = {f"new_{name}": getattr(message, name) for name in (*_SAVED_COLUMNS, "updated_at")}
    values["message_pk"] = message.id
    outcomes.save(values, events)


def _send(message: Message, customer: Customer, transports: _Transports, batch: _Batch,
          following: Message | None) -> Outcome:
    """Build (unless built ahead) and send one message, its lease kept by the heartbeat."""
    try:
        transport = transports.get(customer)
    except CredentialsError as exc:
        return Outcome("deferred", None, exc.message)
    data = batch.prepared.pop(message.id, None)
    if data is None:
        data = compose.build_bytes(message, open_tracking=True)
    envid = message.public_id if customer.sending_mode != "customer_smtp" else None

    def prepare_following() -> None:
        """Build the next message while the server takes this one in."""
        if following is None:
            return
        try:  # never raises: the current message's answer is still to be read
            if _will_send(following, batch):
                batch.prepared[following.id] = compose.build_bytes(following,
                                                                   open_tracking=True)
        except Exception:  # noqa: BLE001 - built (and failing) again in its own turn
            pass

    heartbeat = batch.heartbeat

    def before_data() -> None:
        """The last point where not sending is safe: the previous outcome is committed and
        this message is still ours."""
        batch.connection.wait()
        if heartbeat is not None:
            heartbeat.check()

    if heartbeat is not None:
        heartbeat.sending(message.id, batch.lease_end, transport.settings.timeout)
    try:
        return transport.send(message.envelope_from, message.recipient, data, dsn_envid=envid,
                              before_data=before_data, while_server_works=prepare_following,
                              smtputf8=compose.smtputf8_address(message))
    finally:
        if heartbeat is not None:
            heartbeat.done()


def _will_send(message: Message, batch: _Batch) -> bool:
    """What _process checks before sending, as things stand now."""
    return (batch.hold_reason(message.customer) is None
            and message.created_at + batch.max_age >= utcnow()
            and batch.suppression_for(message, message.customer) is None)


def _finish(message: Message, status: str, status_reason: str | None = None) -> None:
    message.status = status
    message.status_reason = status_reason
    message.lease_owner = None
    message.lease_expires_at = None


def _record(message: Message, customer: Customer, outcome: Outcome, batch: _Batch,
            result: SweepResult) -> dict:
    """Turn the server's answer into a status (by send_outcomes' rules: who is at fault);
    returns the timeline event to store."""
    now = utcnow()
    text = outcome.text[:2000]
    message.attempts += 1
    message.last_smtp_code = outcome.code
    message.last_smtp_text = text
    decision = send_outcomes.decide(outcome)
    verdict = decision.verdict
    message.fault_class = verdict.fault_class if verdict else None
    message.fault_reason = verdict.reason if verdict else None
    send_outcomes.update_breaker(customer, decision, outcome, batch.breakers)
    if decision.status == "sent":
        _finish(message, "sent")
        message.sent_at = now
        message.next_attempt_at = None
        result.sent += 1
        return _event(message, "sent", code=outcome.code, text=text, at=now)
    data = {**verdict.as_dict(), "stage": outcome.stage}
    detail = send_outcomes.status_reason(decision, outcome.stage)
    if decision.status == "failed":
        _finish(message, "failed", status_reason=detail)
        message.next_attempt_at = None
        _note_entry(message, send_outcomes.record_recipient(message, outcome, decision), batch)
        result.failed += 1
        return _event(message, "failed", code=outcome.code, text=text, at=now,
                      detail=message.status_reason, data=data)
    # deferred: retry later, unless the message is too old by then
    if decision.soft:
        _note_entry(message, send_outcomes.record_recipient(message, outcome, decision), batch)
    next_at = now + next_delay(message.attempts, batch.schedule)
    if next_at > message.created_at + batch.max_age:
        _finish(message, "failed", status_reason=reasons.encode("expired_retries"))
        message.next_attempt_at = None
        _note_entry(message, send_outcomes.record_recipient(message, outcome, decision,
                                                            expired=True), batch)
        result.failed += 1
        return _event(message, "expired", code=outcome.code, text=text, at=now,
                      detail=message.status_reason, data=data)
    _finish(message, "deferred", status_reason=detail)
    message.next_attempt_at = next_at
    result.deferred += 1
    return _event(message, "deferred", code=outcome.code, text=text, at=now, detail=detail,
                  data={**data, "next_attempt_at": next_at.isoformat()})


def _note_entry(message: Message, entry: Suppression | None, batch: _Batch) -> None:
    """A suppression entry the answer caused: linked, and known to the rest of the batch."""
    if entry is None:
        return
    message.suppression_id = entry.id
    if entry.lifted_at is None and entry not in batch.suppressed.get(entry.address, []):
        batch.suppressed.setdefault(entry.address, []).insert(0, entry)


FRONT_OF_QUEUE = datetime(2000, 1, 1, tzinfo=UTC)


def send_now(message: Message) -> Message:
    """Put a queued message first in line and run one sweep pass of exactly that message
    (test emails: the real queue and transport, now); returns it, reloaded, with its outcome.
    A held or suppressed message is returned as it is, never forced out."""
    if message.status != "queued":
        return message
    message.next_attempt_at = FRONT_OF_QUEUE
    db.session.commit()
    message_id = message.id
    sweep(max_messages=1)
    db.session.expire_all()  # the sweep wrote the outcome on its own connection
    return db.session.get(Message, message_id)
