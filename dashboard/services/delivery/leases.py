"""Claim and lease: which worker holds which queued message, and for how long.

Due rows are read in index order (on PostgreSQL with `FOR UPDATE SKIP LOCKED`) and claimed
by one UPDATE that re-checks they are still due; a dead worker's claims are taken over when
their lease expires. `LeaseHeartbeat` keeps the lease of the message in flight however slow
its server is.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update

from ...extensions import db
from ...models import Message, utcnow

log = logging.getLogger(__name__)
DUE_STATUSES = ("queued", "deferred")
# The most replies one send can wait on, each up to the transport's timeout: a reused
# connection's MAIL, then a fresh connection: TCP connect, banner, EHLO, STARTTLS, TLS
# handshake, EHLO, AUTH LOGIN (3), MAIL, RCPT, DATA, the message, its answer; rounded up.
SEND_REPLIES = 16


def lease_seconds() -> int:
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
    return [lockable(query) for query in queries]


def lockable(query):
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
                    lease_expires_at=now + timedelta(seconds=lease_seconds()))
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
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds()))
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


class LeaseHeartbeat:
    """Keeps the lease of the messages in flight (one per lane) while their servers take
    their time.

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
        # message id -> [lease end, renew until] (monotonic), one per message in flight
        self._current: dict[int, list] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sending(self, message_id: int, lease_end: float, timeout: float) -> None:
        """A send of `message_id` starts; its row's lease ends at `lease_end` (monotonic)."""
        now = time.monotonic()
        with self._lock:
            self._current[message_id] = [lease_end, now + SEND_REPLIES * timeout]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sweep-lease", daemon=True)
            self._thread.start()

    def done(self, message_id: int) -> None:
        """The send of `message_id` ended."""
        with self._lock:
            self._current.pop(message_id, None)

    def check(self, message_id: int) -> None:
        """Raise LeaseLost when this message in flight may belong to another worker by now
        (called from its lane's thread)."""
        with self._lock:
            current = self._current.get(message_id)
        if current is not None and time.monotonic() >= current[0]:
            raise LeaseLost(f"the lease of message {message_id} ended during its send")

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
                    in_flight = list(self._current.items())
                for message_id, current in in_flight:
                    connection, warned = self._renew(connection, message_id, current, warned)
        finally:
            if connection is not None:
                connection.close()

    def _renew(self, connection, message_id: int, current: list, warned):
        """Renew one message's lease when less than half is left; returns the connection
        (None after an error: the next wake opens another) and the last warned id."""
        lease_end, renew_until = current
        started = time.monotonic()
        if lease_end - started > self._lease / 2:
            return connection, warned
        if started > renew_until:
            if warned != message_id:
                warned = message_id
                log.warning("sweep: message %s has been sending for %d timeouts; its "
                            "lease is no longer renewed", message_id, SEND_REPLIES)
            return connection, warned
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
            return None, warned
        with self._lock:
            still_sending = self._current.get(message_id) is current
            if still_sending:
                # taken before the UPDATE: the row's lease ends no earlier than this
                current[0] = started + self._lease if renewed else 0.0
        if still_sending and not renewed:  # (once done, its outcome may be written)
            log.warning("sweep: message %s was taken over by another worker during "
                        "its send", message_id)
        return connection, warned
