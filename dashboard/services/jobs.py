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
