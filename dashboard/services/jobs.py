"""Job runs: every scheduled or requested job records its start, end, counts and error."""
from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager

from sqlalchemy import func, select

from ..extensions import db
from ..models import JobRun, utcnow

log = logging.getLogger(__name__)


def worker_name() -> str:
    """host:pid of this process, used for leases and job runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def recorded(job: str, requested_by_id: int | None = None, params: dict | None = None):
    """Record a job run around a block; the block fills `run.counts` (and may set progress)."""
    run = JobRun(job=job, status="running", worker=worker_name(), params=params,
                 requested_by_id=requested_by_id)
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    try:
        yield run
    except Exception as exc:
        db.session.rollback()
        run = db.session.get(JobRun, run_id)
        run.status = "error"
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = utcnow()
        db.session.commit()
        log.exception("job %s failed", job)
        raise
    else:
        run = db.session.get(JobRun, run_id)
        run.status = "ok"
        run.finished_at = utcnow()
        db.session.commit()


def last_heartbeat():
    """When any job last finished: the worker's heartbeat."""
    return db.session.scalar(select(func.max(JobRun.finished_at)).where(JobRun.job == "sweep"))


def heartbeat_age_seconds() -> float | None:
    """Seconds since the worker's last sweep finished, or None when it never ran."""
    last = last_heartbeat()
    if last is None:
        return None
    if last.tzinfo is None:
        from datetime import timezone

        last = last.replace(tzinfo=timezone.utc)
    return round((utcnow() - last).total_seconds(), 1)


_local_locks: dict[str, "threading.Lock"] = {}


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the job name."""
    import hashlib

    digest = hashlib.sha256(f"postino:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def singleton(name: str):
    """Yield True when this process may run the singleton job `name` now, False when it is taken.

    PostgreSQL: a session advisory lock on a connection of its own, held for the whole block
    (the block may commit many times) and released when that connection closes, even if the
    process dies. SQLite has one worker: a lock per process keeps "run now" from doubling it.
    """
    import threading

    lock = _local_locks.setdefault(name, threading.Lock())
    if not lock.acquire(blocking=False):
        yield False
        return
    try:
        if db.engine.dialect.name != "postgresql":
            yield True
            return
        key = _advisory_key(name)
        connection = db.engine.connect()
        try:
            acquired = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
            connection.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    connection.scalar(select(func.pg_advisory_unlock(key)))
                    connection.commit()
        finally:
            connection.close()
    finally:
        lock.release()


def skipped(job: str, reason: str, requested_by_id: int | None = None,
            params: dict | None = None) -> JobRun:
    """Record a run that did not happen because another one holds the job's lock."""
    now = utcnow()
    run = JobRun(job=job, status="skipped", worker=worker_name(), started_at=now,
                 finished_at=now, error=reason[:2000], params=params,
                 requested_by_id=requested_by_id)
    db.session.add(run)
    db.session.commit()
    return run
