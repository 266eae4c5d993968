"""Database engine tuning: SQLite gets WAL, foreign keys and a busy timeout."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine


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
