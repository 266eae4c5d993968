"""Database engine tuning: SQLite gets WAL, foreign keys and a busy timeout; a job (the
purge, the sweep's outcome writer) may tune a connection of its own and hands it back as
it found it."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


def init_engine_events(engine: Engine) -> None:
    """Turn on WAL and foreign keys for every SQLite connection."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


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
