"""The sweep: claim due messages with a lease, send each over its transport, record the answer.

Its parts: leases.py (claim and lease), batch.py (batch loading), outcome_writer.py (the
outcome writer on raw DB-API cursors), outcomes.py (the rules that turn a server's answer
into a status); this module runs them in order.

Safe with many workers: due rows are read in index order (on PostgreSQL with
`FOR UPDATE SKIP LOCKED`) and claimed by one UPDATE that re-checks they are still due, each
message's outcome is committed right after the server answers (see OutcomeWriter), and a dead
worker's claims are taken over when their lease expires. A worker renews its lease before it
runs short, keeps renewing the lease of the message in flight however slow its server is
(see LeaseHeartbeat), never starts a send (nor its DATA) after its lease ended, and writes an
outcome only while it still holds the row, so two live workers never send the same message.

One message never stops the sweep: an error no rule foresaw while handling it defers it
(and fails it after a few such errors) with the error on its timeline, and the sweep goes
on with the next one (see _unexpected). A database error does stop it: outcomes could no
longer be recorded.
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import DBAPIError

from ... import reasons
from ...extensions import db
from ...models import Customer, Message, MessageEvent, Suppression, utcnow
from ..core import settings
from ..core.process import worker_name
from . import compose, modes, outcomes, rate_limits
from .batch import DEFAULT_SCHEDULE, Batch
from .credentials import CredentialsError
from .lanes import OPEN_AFTER, Job, Lane, Lanes, claim_size
from .leases import (
    DUE_STATUSES,
    LeaseHeartbeat,
    LeaseLost,
    claim,
    lease_seconds,
    lockable,
    release_claims,
    renew_lease,
)
from .outcome_writer import OutcomeWriter, event, save
from .sending import release_held
from .transport import Outcome

log = logging.getLogger(__name__)
# An unexpected error while handling a message defers it; this many such errors fail it.
ERRORS_BEFORE_FAILING = 3
UNEXPECTED = "unexpected error"  # how those timeline entries start (and are counted)


@dataclass
class SweepResult:
    """What one sweep did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    held: int = 0
    suppressed: int = 0
    lost: int = 0  # messages another worker took over mid-send: left to it, nothing written
    waiting: int = 0  # beyond a transport's rate limit: queued again for when it allows

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


def _transition(query, status: str, event_type: str, reason: str, detail: str) -> int:
    """Move the rows `query` selects to `status` in chunks, one timeline event per row moved.

    The UPDATE re-checks the status and RETURNs the rows it really changed, so two workers
    doing this at once never write two events for one message.
    """
    total = 0
    while True:
        now = utcnow()
        chunk = lockable(query.limit(500)).scalar_subquery()
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


def sweep(batch_size: int = 200, owner: str | None = None,
          max_messages: int | None = None) -> SweepResult:
    """One pass over the due queue, until nothing is due (or `max_messages` were handled).

    Messages go out over lanes (see lanes.py): up to a transport's number of connections at
    once, each answer recorded by this thread as it comes. Claims are sized to the relay's
    lanes and to the rate reached (lanes.claim_size, at most `batch_size`), and the next
    claim is made while the last messages of the previous one are still in flight."""
    result = SweepResult()
    owner = owner or f"{worker_name()}:{uuid.uuid4().hex[:8]}"
    result.held += hold_blocked()
    release_held()
    result.failed += expire_held()
    lanes = Lanes()
    lease = lease_seconds()
    # Renew the batch's claims when less than half the lease is left: a send then starts
    # with half a lease to spare, and the heartbeat renews its row long before it ends,
    # however long the server takes.
    margin = lease / 2
    heartbeat = LeaseHeartbeat(db.engine, owner, lease)
    session = db.session()
    expire_on_commit = session.expire_on_commit
    # Each message's outcome is committed alone; keeping the rest of the batch loaded
    # across those commits saves a reload query per message.
    session.expire_on_commit = False
    # Outcomes go through a connection (and a thread) of their own, one short transaction
    # per message: cheaper than the session's per-commit bookkeeping, overlapped with the
    # next SMTP exchanges, and the same guarantee per lane (see OutcomeWriter).
    writer = OutcomeWriter(db.engine, owner)
    handled = 0
    reattach: list[Message] = []
    relay_lanes = rate_limits.relay_policy().lanes
    started = time.monotonic()
    try:
        while max_messages is None or handled < max_messages:
            elapsed = time.monotonic() - started
            claim_limit = claim_size(relay_lanes, batch_size,
                                     handled / elapsed if handled and elapsed else None)
            limit = claim_limit if max_messages is None else min(claim_limit,
                                                                 max_messages - handled)
            lease_end = time.monotonic() + lease  # taken before the claim: conservative
            _collect(lanes, writer, result)
            writer.wait()
            ids = claim(owner, limit)
            if not ids:
                break
            batch = Batch.load(ids, owner)
            lanes.new_batch()
            reattach.extend(batch.reattach)
            batch.connection = writer
            batch.heartbeat = heartbeat
            for message in batch.messages:
                if time.monotonic() + margin > lease_end:
                    if time.monotonic() >= lease_end:
                        break  # we stalled past our lease: the rest may be someone else's
                    renewed_at = time.monotonic()
                    writer.wait()
                    renew_lease(owner)
                    lease_end = renewed_at + lease
                batch.lease_end = lease_end
                _process(message, batch, lanes, result)
                handled += 1
            else:
                writer.checkpoint()  # runs while the next batch is claimed
                continue
            _drain(lanes, writer, result)
            release_claims(owner)
        _drain(lanes, writer, result)
        writer.wait()
    finally:
        try:
            _drain(lanes, writer, result, record=False)
        finally:
            heartbeat.close()
            lanes.close()
            writer.close()
            result.lost += writer.lost
            session.expire_on_commit = expire_on_commit
            db.session.rollback()
            for message in reattach:  # the caller's objects stay usable, reloaded on access
                if message in db.session:
                    db.session.expire(message)
            release_claims(owner)
    return result


def _process(message: Message, batch: Batch, lanes: Lanes, result: SweepResult) -> None:
    """Hand one claimed message to a lane of its transport, or record why it does not go
    (held, expired, suppressed, waiting for a rate limit); an error no rule foresaw defers it
    instead of stopping the sweep (see _unexpected)."""
    customer = message.customer
    events: list[dict] = []
    before = (message.attempts, message.suppression_id)
    try:
        # first a free lane: waiting for one records other answers, which may pause this
        # customer (its breaker) or suppress this recipient, so the checks come after
        policy = lanes.policy(customer)
        lane = _idle_lane(customer, policy, lanes, batch.connection, result)
        now = utcnow()
        reason = batch.hold_reason(customer)
        if reason:
            _finish(message, "held", status_reason=reason)
            events.append(event(message, "held", detail=reason, at=now))
            result.held += 1
        elif message.created_at + batch.max_age < now:
            _finish(message, "failed", status_reason=reasons.encode("expired_max_age"))
            events.append(event(message, "expired", detail=message.status_reason, at=now))
            result.failed += 1
        elif (entry := batch.suppression_for(message, customer)) is not None:
            _finish(message, "suppressed", status_reason=reasons.encode(
                "suppressed", reason=reasons.suppression(entry.reason)))
            message.suppression_id = entry.id
            events.append(event(message, "suppressed", detail=message.status_reason, at=now))
            result.suppressed += 1
        else:
            if isinstance(lane, Outcome):  # the transport could not even be set up
                events.append(_record(message, customer, lane, batch, result))
            elif lanes.admit(policy, utcnow()) is not None:
                _wait_for_limit(message, customer, lanes.expected(policy))
                result.waiting += 1
            else:
                _dispatch(message, customer, lane, batch, before)
                return
    except LeaseLost as exc:
        log.warning("sweep: message %s left to another worker: %s", message.public_id, exc,
                    extra={"message_id": message.public_id})
        result.lost += 1
        return
    except Exception as exc:
        if _database_trouble(exc):
            raise  # outcomes could not be recorded either: stop, the next sweep starts over
        events = [_unexpected(message, exc, None, before, batch, result)]
    save(message, events, batch.connection)


def _idle_lane(customer: Customer, policy, lanes: Lanes, writer: OutcomeWriter,
               result: SweepResult):
    """A lane of the customer's transport with nothing in flight, recording the answers of
    its busy lanes until one is free; an Outcome when the transport cannot be set up."""
    patient = True  # first give a busy lane OPEN_AFTER to finish before opening another
    while True:
        try:
            lane = lanes.idle(customer, policy, open_new=not patient)
        except CredentialsError as exc:
            return Outcome("deferred", None, exc.message)
        if lane is not None:
            return lane
        if patient and not lanes.busy(policy.key):
            patient = False  # none open yet
            continue
        _collect(lanes, writer, result, key=policy.key, block=True,
                 timeout=OPEN_AFTER if patient else None)
        patient = False


def _wait_for_limit(message: Message, customer: Customer, at: datetime) -> None:
    """Beyond its transport's rate limit: queued again, due when the window allows it (not
    an attempt, no timeline entry: the Log and Home show it waiting, with the time)."""
    code = (rate_limits.CUSTOMER_WAITING if customer.sending_mode == "customer_smtp"
            else rate_limits.RELAY_WAITING)
    _finish(message, "queued", status_reason=reasons.encode(code))
    message.next_attempt_at = at


def _dispatch(message: Message, customer: Customer, lane: Lane, batch: Batch,
              before: tuple) -> None:
    """Build the message and hand it to the lane's thread, its lease kept by the heartbeat.

    The lane sends its DATA only once its previous message's outcome is committed and this
    message is still ours (the last point where not sending is safe)."""
    data = compose.build_bytes(message, open_tracking=True)
    envid = message.public_id if customer.sending_mode != "customer_smtp" else None
    smtputf8 = compose.smtputf8_address(message)
    heartbeat = batch.heartbeat
    message_id = message.id

    def before_data() -> None:
        lane.previous_committed()
        if heartbeat is not None:
            heartbeat.check(message_id)

    def send() -> Outcome:
        return lane.transport.send(message.envelope_from, message.recipient, data,
                                   dsn_envid=envid, before_data=before_data,
                                   smtputf8=smtputf8)

    if heartbeat is not None:
        heartbeat.sending(message_id, batch.lease_end, lane.transport.settings.timeout)
    lane.job = Job(message, batch, lane, lane.executor.submit(send), utcnow(), before)


def _collect(lanes: Lanes, writer: OutcomeWriter, result: SweepResult, key: str | None = None,
             block: bool = False, timeout: float | None = None) -> None:
    """Record the answers of the sends that ended (waiting for one of `key`'s, or any, with
    `block`, at most `timeout` s)."""
    for job in lanes.finished(key, block, timeout):
        _complete(job, lanes, writer, result)


def _drain(lanes: Lanes, writer: OutcomeWriter, result: SweepResult,
           record: bool = True) -> None:
    """Wait for every send in flight and record its answer (`record=False`, on the way out
    after an error: only wait, so no claim is released while its message is on the wire)."""
    while jobs := lanes.busy():
        if not record:
            for job in jobs:
                try:
                    job.future.exception()
                finally:
                    job.lane.job = None
                    if job.batch.heartbeat is not None:
                        job.batch.heartbeat.done(job.message.id)
            return
        _collect(lanes, writer, result, block=True)


def _complete(job: Job, lanes: Lanes, writer: OutcomeWriter, result: SweepResult) -> None:
    """One lane's send ended: turn its answer into a status and queue the write (the lane's
    next DATA waits for it)."""
    message, batch, lane = job.message, job.batch, job.lane
    if batch.heartbeat is not None:
        batch.heartbeat.done(message.id)
    lane.job = None
    customer = message.customer
    outcome = None
    try:
        try:
            outcome = job.future.result()
        except LeaseLost as exc:
            # Not sent (we stopped before DATA) and no longer ours: the worker holding it
            # sends it and writes its outcome.
            log.warning("sweep: message %s left to another worker: %s", message.public_id,
                        exc, extra={"message_id": message.public_id})
            result.lost += 1
            return
        if outcome.status == "unsupported":
            events = [_unsupported(message, outcome, result)]
        else:
            if not outcome.ok:
                # the session may write (a suppression, a paused customer): the queued
                # outcomes go first, so the two connections never wait on each other's lock
                writer.wait()
            events = [_record(message, customer, outcome, batch, result,
                              lanes=lanes, started_at=job.started_at)]
    except Exception as exc:
        if _database_trouble(exc):
            raise
        events = [_unexpected(message, exc, outcome, job.before, batch, result)]
    lane.written = save(message, events, writer)


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
    return event(message, "failed", detail=outcome.text)


def _unexpected(message: Message, exc: Exception, outcome: Outcome | None, before: tuple,
                batch: Batch, result: SweepResult) -> dict:
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
                  exc_info=exc, extra={"message_id": message.public_id})
        _finish(message, "sent")
        message.sent_at, message.next_attempt_at = now, None
        message.last_smtp_code, message.last_smtp_text = outcome.code, outcome.text[:2000]
        result.sent += 1
        return event(message, "sent", code=outcome.code, text=outcome.text[:2000], at=now,
                      detail=f"{UNEXPECTED} after sending: {error}")
    errors = 1 + db.session.scalar(select(func.count()).select_from(MessageEvent).where(
        MessageEvent.message_id == message.id, MessageEvent.detail.like(f"{UNEXPECTED}: %")))
    log.error("sweep: message %s, %s %d of %d: %s", message.public_id, UNEXPECTED, errors,
              ERRORS_BEFORE_FAILING, error, exc_info=exc, extra={"message_id": message.public_id})
    detail = f"{UNEXPECTED}: {error}"
    next_at = now + next_delay(message.attempts, batch.schedule)
    if errors >= ERRORS_BEFORE_FAILING or next_at > message.created_at + batch.max_age:
        _finish(message, "failed", status_reason=f"failed after {errors} unexpected errors")
        message.next_attempt_at = None
        result.failed += 1
        return event(message, "failed", detail=detail, at=now)
    _finish(message, "deferred", status_reason=detail)
    message.next_attempt_at = next_at
    result.deferred += 1
    return event(message, "deferred", detail=detail, at=now,
                  data={"next_attempt_at": next_at.isoformat()})


def _finish(message: Message, status: str, status_reason: str | None = None) -> None:
    message.status = status
    message.status_reason = status_reason
    message.lease_owner = None
    message.lease_expires_at = None


def _record(message: Message, customer: Customer, outcome: Outcome, batch: Batch,
            result: SweepResult, lanes: Lanes | None = None,
            started_at: datetime | None = None) -> dict:
    """Turn the server's answer into a status (by outcomes' rules: who is at fault);
    returns the timeline event to store. A quota refusal slows the transport down (see
    rate_limits); one for a send already in flight when an earlier one did so is not
    counted again, by the slow-down nor by the circuit breaker."""
    now = utcnow()
    text = outcome.text[:2000]
    message.attempts += 1
    message.last_smtp_code = outcome.code
    message.last_smtp_text = text
    decision = outcomes.decide(outcome)
    verdict = decision.verdict
    message.fault_class = verdict.fault_class if verdict else None
    message.fault_reason = verdict.reason if verdict else None
    if rate_limits.is_quota(verdict):
        key = modes.transport_key(customer)
        if not rate_limits.quota_refused(key, started_at or now, text):
            decision = replace(decision, breaker=None)
        if lanes is not None:
            lanes.slowed(key)
    outcomes.update_breaker(customer, decision, outcome, batch.breakers)
    if decision.status == "sent":
        _finish(message, "sent")
        message.sent_at = now
        message.next_attempt_at = None
        result.sent += 1
        return event(message, "sent", code=outcome.code, text=text, at=now)
    data = {**verdict.as_dict(), "stage": outcome.stage}
    detail = outcomes.status_reason(decision, outcome.stage)
    if decision.status == "failed":
        _finish(message, "failed", status_reason=detail)
        message.next_attempt_at = None
        _note_entry(message, outcomes.record_recipient(message, outcome, decision), batch)
        result.failed += 1
        return event(message, "failed", code=outcome.code, text=text, at=now,
                      detail=message.status_reason, data=data)
    # deferred: retry later, unless the message is too old by then
    if decision.soft:
        _note_entry(message, outcomes.record_recipient(message, outcome, decision), batch)
    next_at = now + next_delay(message.attempts, batch.schedule)
    if next_at > message.created_at + batch.max_age:
        _finish(message, "failed", status_reason=reasons.encode("expired_retries"))
        message.next_attempt_at = None
        _note_entry(message, outcomes.record_recipient(message, outcome, decision,
                                                            expired=True), batch)
        result.failed += 1
        return event(message, "expired", code=outcome.code, text=text, at=now,
                      detail=message.status_reason, data=data)
    _finish(message, "deferred", status_reason=detail)
    message.next_attempt_at = next_at
    result.deferred += 1
    return event(message, "deferred", code=outcome.code, text=text, at=now, detail=detail,
                  data={**data, "next_attempt_at": next_at.isoformat()})


def _note_entry(message: Message, entry: Suppression | None, batch: Batch) -> None:
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

