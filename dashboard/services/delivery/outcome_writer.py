"""The outcome writer: each message's new state and its timeline rows, written by two
statements compiled once and run on the driver's own cursor, on a thread and a connection of
its own (one short transaction per message)."""
from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import bindparam

from ...database import release_tuned, tune_sqlite
from ...extensions import db
from ...models import Message, MessageEvent, utcnow

log = logging.getLogger(__name__)

SAVED_COLUMNS = ("status", "status_reason", "lease_owner", "lease_expires_at", "attempts",
                 "last_smtp_code", "last_smtp_text", "sent_at", "next_attempt_at",
                 "suppression_id", "fault_class", "fault_reason")


def event(message: Message, type_: str, *, code: int | None = None, text: str | None = None,
          detail: str | None = None, data: dict | None = None, at=None) -> dict:
    """A timeline row for `message` (inserted by `save` with the status it explains)."""
    return {"message_id": message.id, "type": type_, "smtp_code": code, "smtp_text": text,
            "detail": detail, "data": data, "at": at or utcnow(), "actor_id": None}


_MESSAGES = Message.__table__
# Only while the row is still this worker's: a worker that lost it (its lease ran out and
# another claimed it) must not overwrite the other's outcome.
_SAVE_MESSAGE = (
    _MESSAGES.update().where(_MESSAGES.c.id == bindparam("message_pk"),
                             _MESSAGES.c.lease_owner == bindparam("lease_holder"),
                             _MESSAGES.c.status == bindparam("claimed_status"))
    .values({name: bindparam(f"new_{name}") for name in (*SAVED_COLUMNS, "updated_at")})
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


class OutcomeWriter:
    """Writes each outcome (UPDATE + timeline rows, one transaction) on a thread of its own.

    Writes are queued and committed in order; `save` returns the write's Future. A lane
    waits for the Future of its previous message's outcome before its next DATA (and the
    sweep calls `wait()` before its own session writes), so at any moment at most one
    delivered message per lane lacks its committed outcome: a killed worker re-sends at
    most the one message in flight on each lane. The thread
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
        self._pending: list[Future] = []
        self._used = False  # the writer thread (and maybe its connection) exists
        self._saved_pragmas: dict = {}  # what _open changed on its connection (SQLite)
        dialect = engine.dialect
        self.update = _Statement(_SAVE_MESSAGE, dialect)
        self.insert = _Statement(_SAVE_EVENT, dialect, column_keys=list(_EVENT_KEYS))

    def save(self, values: dict, events: list[dict]) -> Future:
        """Queue the write after the ones already queued; returns its Future. An earlier
        write that failed raises here (outcomes can no longer be recorded)."""
        self._raise_failed()
        values["lease_holder"], values["claimed_status"] = self._owner, "sending"
        self._used = True
        future = self._executor.submit(self._write, values, events)
        self._pending.append(future)
        return future

    def _raise_failed(self) -> None:
        """Forget the writes that are done; raise the first one's error, if any failed."""
        done = [future for future in self._pending if future.done()]
        self._pending = [future for future in self._pending if not future.done()]
        for future in done:
            future.result()

    def wait(self) -> None:
        """Block until every queued outcome is committed; raise a write's error, if any."""
        while self._pending:
            future = self._pending[0]
            try:
                future.result()
            finally:
                if future.done():  # an interrupted wait leaves it for close() to wait on
                    self._pending.remove(future)

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


def save(message: Message, events: list[dict], writer: OutcomeWriter) -> Future:
    """Write the message's new state and its timeline rows (committed by the writer);
    returns the write's Future."""
    session = db.session()
    if session.in_transaction() or session.dirty:  # e.g. an auth-failure count reset
        # a suppression, a paused customer…: those go first (and on SQLite the session
        # must not hold the write lock while the other connection writes)
        writer.wait()
        db.session.commit()
    message.updated_at = utcnow()
    values = {f"new_{name}": getattr(message, name) for name in (*SAVED_COLUMNS, "updated_at")}
    values["message_pk"] = message.id
    return writer.save(values, events)
