"""Database engine tuning: SQLite gets WAL, foreign keys and a busy timeout; a job (the
purge, the sweep's outcome writer) may tune a connection of its own and hands it back as
it found it.

Web requests fail fast when the database is down or stuck, instead of hanging: a connection
gives up after POSTINO_DB_CONNECT_TIMEOUT, and a connection checked out by a web request
gets PostgreSQL's statement_timeout/lock_timeout (SQLite: a shorter busy_timeout). A frozen
server answers nothing at all, not even to enforce its own timeouts, so a watchdog also cuts
the socket of a request's database call that outlives its limit. The worker's jobs (the
purge, the sweep, "run now") keep no statement limit and a 30 s busy timeout.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from flask import current_app, has_request_context
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

JOB_BUSY_TIMEOUT_MS = 30_000  # SQLite, outside web requests: jobs wait for the write lock
WATCHDOG_GRACE = 2.0  # seconds past the server-side statement_timeout before a cut
WATCHDOG_TICK = 0.2


def engine_options(config: dict) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS with the connect timeout; on PostgreSQL the pool's own
    pre-ping is replaced by the checkout check below (which the watchdog can interrupt)."""
    options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        connect_args = dict(options.get("connect_args") or {})
        connect_args.setdefault("connect_timeout",
                                max(1, round(config["POSTINO_DB_CONNECT_TIMEOUT"])))
        options["connect_args"] = connect_args
        options["pool_pre_ping"] = False
    return options


def is_unavailable(error: BaseException) -> bool:
    """True when an error means the database is down, unreachable, stuck or timed out (a
    request may succeed later), not that a query is wrong."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True  # the pool waited for a connection in vain / lost one
    if not isinstance(error, exc.OperationalError | exc.InterfaceError):
        return False
    text = str(getattr(error, "orig", error)).lower()
    # SQLite reports a missing table as an "operational" error too: that is a bug, not an outage
    return not any(bug in text for bug in ("no such table", "no such column", "syntax error",
                                           "has no column"))


class _Watchdog:
    """Cuts the socket of a web request's database call that waits too long.

    A frozen PostgreSQL (stopped process, hung host) never answers, so neither its
    statement_timeout nor TCP keepalives (the kernel still acknowledges) end the wait. A call
    is armed with a deadline when it starts; a daemon thread shuts the socket down once the
    deadline has passed while the call is still running (psycopg holds the connection's lock
    only while it waits on the server), so libpq sees the connection closed and raises.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.calls: dict[int, tuple[float, object, int]] = {}
        self.thread: threading.Thread | None = None

    def arm(self, dbapi_connection, seconds: float) -> None:
        """Watch a call on this connection from now on, for `seconds`."""
        try:
            fd = dbapi_connection.pgconn.socket
        except Exception:  # closed or broken: nothing to watch
            return
        with self.lock:
            self.calls[id(dbapi_connection)] = (time.monotonic() + seconds, dbapi_connection, fd)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="postino-db-watchdog",
                                               daemon=True)
                self.thread.start()

    def forget(self, dbapi_connection) -> None:
        """Stop watching this connection (back in the pool, closed or invalidated)."""
        with self.lock:
            self.calls.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        while True:
            time.sleep(WATCHDOG_TICK)
            now = time.monotonic()
            with self.lock:
                due = [(key, conn, fd) for key, (deadline, conn, fd) in self.calls.items()
                       if deadline < now]
            for key, conn, fd in due:
                if self._cut(conn, fd):
                    with self.lock:
                        self.calls.pop(key, None)

    @staticmethod
    def _cut(conn, fd: int) -> bool:
        """Shut the socket down if the call is still waiting on it; True when done with it."""
        try:
            if conn.closed or not conn.lock.locked():
                return False  # idle between calls: not stuck
            if conn.pgconn.socket != fd:
                return True  # reconnected meanwhile: this entry is stale
        except Exception:
            return True
        log.error("database call unanswered past its limit: cutting the connection "
                  "(database frozen or unreachable?)")
        try:
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True


watchdog = _Watchdog()


def _request_limits() -> dict | None:
    """The time limits of the current web request's database work (None outside requests)."""
    if not has_request_context():
        return None
    config = current_app.config
    return {"statement": float(config.get("POSTINO_DB_STATEMENT_TIMEOUT") or 10),
            "lock": float(config.get("POSTINO_DB_LOCK_TIMEOUT") or 5),
            "connect": float(config.get("POSTINO_DB_CONNECT_TIMEOUT") or 5)}


def init_engine_events(engine: Engine) -> None:
    """SQLite: WAL, foreign keys, busy timeouts; PostgreSQL: request timeouts and the
    watchdog (see the module docstring)."""
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine)
    elif engine.dialect.name == "postgresql":
        _postgresql_events(engine)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={JOB_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "checkout")
    def _busy_timeout(dbapi_connection, _record, _proxy):
        # A web request waits for another writer's lock at most POSTINO_DB_LOCK_TIMEOUT;
        # jobs wait up to 30 s. (A local call, no I/O.)
        limits = _request_limits()
        timeout = round(limits["lock"] * 1000) if limits else JOB_BUSY_TIMEOUT_MS
        dbapi_connection.execute(f"PRAGMA busy_timeout={timeout}")


def _postgresql_events(engine: Engine) -> None:
    def watched(record) -> float | None:
        """The watchdog limit of a connection checked out by a web request, else None."""
        return record.info.get("postino_limit") if record is not None else None

    @event.listens_for(engine, "connect")
    def _fresh(_dbapi_connection, record):
        record.info["postino_fresh"] = True

    @event.listens_for(engine, "checkout")
    def _check_and_tune(dbapi_connection, record, _proxy):
        # Doubles as the pool's pre-ping: one round trip per checkout either way.
        limits = _request_limits()
        record.info["postino_limit"] = (limits["statement"] + WATCHDOG_GRACE) if limits else None
        fresh = record.info.pop("postino_fresh", False)
        statement_ms = round(limits["statement"] * 1000) if limits else 0
        lock_ms = round(limits["lock"] * 1000) if limits else 0
        if limits:
            watchdog.arm(dbapi_connection, limits["connect"])
        try:
            # autocommit for this one statement: a session SET survives without a COMMIT
            # round trip (the connection is idle at checkout, so switching costs nothing)
            dbapi_connection.autocommit = True
            try:
                dbapi_connection.execute("SELECT set_config('statement_timeout', %s, false), "
                                         "set_config('lock_timeout', %s, false)",
                                         (str(statement_ms), str(lock_ms)))
            finally:
                if not dbapi_connection.closed and not dbapi_connection.broken:
                    dbapi_connection.autocommit = False
        except Exception as error:
            if fresh:
                raise  # a brand-new connection failing: the database is really unavailable
            # a pooled connection from before a restart: the pool replaces it and retries
            raise exc.DisconnectionError(str(error)) from error
        finally:
            watchdog.forget(dbapi_connection)

    @event.listens_for(engine, "before_cursor_execute")
    def _arm(conn, _cursor, _statement, _parameters, _context, _executemany):
        limit = watched(conn.connection._connection_record)
        if limit:
            watchdog.arm(conn.connection.dbapi_connection, limit)

    @event.listens_for(engine, "after_cursor_execute")
    def _disarm(conn, _cursor, _statement, _parameters, _context, _executemany):
        if watched(conn.connection._connection_record):
            watchdog.forget(conn.connection.dbapi_connection)

    @event.listens_for(engine, "handle_error")
    def _disarm_on_error(context):
        connection = context.connection
        if connection is not None and not connection.invalidated:
            dbapi_connection = connection.connection.dbapi_connection
            if dbapi_connection is not None:
                watchdog.forget(dbapi_connection)

    for name in ("commit", "rollback"):
        @event.listens_for(engine, name)
        def _arm_end(conn, *_args):
            # no "after" event: the watchdog only cuts while psycopg still waits
            limit = watched(conn.connection._connection_record)
            if limit:
                watchdog.arm(conn.connection.dbapi_connection, limit)

    @event.listens_for(engine, "reset")
    def _arm_reset(dbapi_connection, record, _state):
        limit = watched(record)
        if limit:
            watchdog.arm(dbapi_connection, limit)

    for name in ("checkin", "close", "invalidate", "soft_invalidate", "detach"):
        @event.listens_for(engine, name)
        def _forget(dbapi_connection, *_args):
            if dbapi_connection is not None:
                watchdog.forget(dbapi_connection)


def is_postgresql(engine: Engine) -> bool:
    """True on PostgreSQL, where row locks and advisory locks exist."""
    return engine.dialect.name == "postgresql"


def tune_sqlite(connection: Connection, **pragmas) -> dict:
    """Set per-connection SQLite PRAGMAs for one job; returns the values they had, for
    `release_tuned` ({} on PostgreSQL, where nothing is set). Runs outside any transaction
    (SQLite ignores foreign_keys inside one)."""
    if connection.dialect.name != "sqlite":
        return {}
    saved = {name: int(connection.exec_driver_sql(f"PRAGMA {name}").scalar())
             for name in pragmas}
    try:
        for name, value in pragmas.items():
            connection.exec_driver_sql(f"PRAGMA {name}={int(value)}")
        connection.commit()
    except Exception:  # half-tuned: never pooled
        connection.invalidate()
        raise
    return saved


def release_tuned(connection: Connection, saved: dict) -> None:
    """Close a connection `tune_sqlite` changed, its PRAGMAs put back first (and the WAL
    checkpointed): the pool's next user must not inherit them. If they cannot be put back,
    the connection is discarded instead of pooled."""
    try:
        if saved:
            connection.rollback()
            for name, value in saved.items():
                connection.exec_driver_sql(f"PRAGMA {name}={value}")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            connection.commit()
    except Exception:
        connection.invalidate()
        raise
    finally:
        connection.close()
