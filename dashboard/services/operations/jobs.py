"""Job runs: every scheduled or requested job records its start, end, counts and error."""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import UTC, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from ...extensions import db
from ...models import JobRun, utcnow
from ..core.process import worker_name

log = logging.getLogger(__name__)


def heartbeat_seconds() -> float:
    """How often a running job records that it is alive (POSTINO_JOB_HEARTBEAT_SECONDS)."""
    return float(current_app.config.get("POSTINO_JOB_HEARTBEAT_SECONDS") or 10)


def stale_after() -> timedelta:
    """A running job silent for this long has lost its worker (six missed heartbeats)."""
    return timedelta(seconds=6 * heartbeat_seconds())


class _Heartbeat:
    """A thread that stamps a running job's heartbeat_at every few seconds, on a connection
    of its own, until the job ends. A killed process or a lost database stops it, which is
    how the run is later found abandoned."""

    def __init__(self, app, run_id: int, seconds: float):
        self.app, self.run_id, self.seconds = app, run_id, seconds
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}",
                                       daemon=True)

    def _beat(self) -> None:
        with self.app.app_context():
            while not self.stop_event.wait(self.seconds):
                try:
                    with db.engine.begin() as connection:
                        connection.execute(
                            update(JobRun).where(JobRun.id == self.run_id,
                                                 JobRun.status == "running")
                            .values(heartbeat_at=utcnow()))
                except Exception as exc:  # the database is away: the next beat tries again
                    log.warning("job run %s: heartbeat not recorded: %s", self.run_id,
                                str(exc).splitlines()[0][:200])

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        self.thread.join(self.seconds + 5)
        return False


def abandon_stale(now=None) -> int:
    """Mark running jobs whose heartbeat stopped as abandoned (their worker crashed, was
    killed, or lost the database mid-run); returns how many. Called when any job starts,
    by the health check and when a worker starts."""
    now = now or utcnow()
    cutoff = now - stale_after()
    abandoned = 0
    for run in db.session.scalars(select(JobRun).where(JobRun.status == "running")):
        last = run.heartbeat_at or run.started_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        if last >= cutoff:
            continue
        run.status = "abandoned"
        run.finished_at = last
        run.error = (f"abandoned: its worker {run.worker or '?'} stopped beating at "
                     f"{last:%Y-%m-%d %H:%M:%S} UTC (killed, crashed or cut off from the "
                     "database) while the job ran")
        abandoned += 1
        log.warning("job run %s (%s on %s) abandoned: no heartbeat since %s", run.id, run.job,
                    run.worker, last.isoformat())
    db.session.commit()
    return abandoned


@contextmanager
def recorded(job: str, requested_by_id: int | None = None, params: dict | None = None):
    """Record a job run around a block; the block fills `run.counts` (and may set progress).

    While the block runs, a heartbeat thread stamps the run; runs of other workers that
    stopped beating are marked abandoned first. If the run's end cannot be recorded (the
    database went away), it stays "running" until its missing heartbeat gives it away.
    """
    abandon_stale()
    now = utcnow()
    run = JobRun(job=job, status="running", worker=worker_name(), params=params,
                 requested_by_id=requested_by_id, started_at=now, heartbeat_at=now)
    db.session.add(run)
    db.session.commit()
    run_id = run.id
    with _Heartbeat(current_app._get_current_object(), run_id, heartbeat_seconds()):
        try:
            yield run
        except Exception as exc:
            log.exception("job %s failed", job)
            try:
                db.session.rollback()
                run = db.session.get(JobRun, run_id)
                run.status = "error"
                run.error = f"{type(exc).__name__}: {exc}"[:2000]
                run.finished_at = utcnow()
                db.session.commit()
            except Exception as record_error:  # the database is away: keep the job's error
                log.error("job %s: its failure could not be recorded: %s", job,
                          str(record_error).splitlines()[0][:200])
            raise
        else:
            run = db.session.get(JobRun, run_id)
            run.status = "ok"
            run.finished_at = utcnow()
            db.session.commit()


def last_heartbeat():
    """When the latest finished sweep ended: the worker's heartbeat (an index walk, not a scan)."""
    return db.session.scalar(
        select(JobRun.finished_at).where(JobRun.job == "sweep", JobRun.finished_at.is_not(None))
        .order_by(JobRun.started_at.desc()).limit(1))


def heartbeat_age_seconds() -> float | None:
    """Seconds since the worker's last sweep finished, or None when it never ran."""
    last = last_heartbeat()
    if last is None:
        return None
    if last.tzinfo is None:

        last = last.replace(tzinfo=UTC)
    return round((utcnow() - last).total_seconds(), 1)


_local_locks: dict[str, threading.Lock] = {}


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


# The Jobs page: each scheduled job with its schedule, runs and next run; "run now".

HISTORY = 10


def job_label(job_id: str) -> str:
    """A scheduled job's name in the reader's language (a job without one reads as words)."""
    from flask_babel import gettext as _

    labels = {
        "sweep": _("Sweep: send due mail"),
        "purge": _("Retention purge"),
        "suppression_expiry": _("Soft-suppression expiry"),
        "health_check": _("Health check"),
        "dkim_check": _("DKIM records check"),
        "overview_rollup": _("Home chart totals"),
    }
    return labels.get(job_id) or job_id.replace("_", " ").capitalize()


def describe_schedule(definition: dict) -> str:
    """'every 5 seconds', 'daily at 03:15 UTC'…"""
    from flask_babel import gettext as _
    from flask_babel import ngettext

    if definition.get("trigger") == "interval":
        seconds = (definition.get("seconds", 0) + 60 * definition.get("minutes", 0)
                   + 3600 * definition.get("hours", 0))
        if seconds % 3600 == 0:
            return ngettext("every hour", "every %(num)d hours", seconds // 3600)
        if seconds % 60 == 0:
            return ngettext("every minute", "every %(num)d minutes", seconds // 60)
        return ngettext("every second", "every %(num)d seconds", seconds)
    if definition.get("trigger") == "cron":
        fields = {k: v for k, v in definition.items() if k not in ("id", "func", "trigger")}
        if set(fields) <= {"hour", "minute"}:
            return _("daily at %(time)s UTC", time=f"{int(fields.get('hour', 0)):02d}:"
                                                     f"{int(fields.get('minute', 0)):02d}")
        return ", ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return str(definition.get("trigger"))


def _interval(definition: dict):
    from datetime import timedelta

    return timedelta(seconds=definition.get("seconds", 0), minutes=definition.get("minutes", 0),
                     hours=definition.get("hours", 0))


def next_run(definition: dict, last: JobRun | None, now=None):
    """When the worker will run the job next, computed here (the scheduler lives elsewhere)."""
    now = now or utcnow()
    if definition.get("trigger") == "interval":
        if last is None:
            return None  # first run when a worker starts
        return max(last.started_at + _interval(definition), now)
    if definition.get("trigger") == "cron":
        from apscheduler.triggers.cron import CronTrigger

        fields = {k: v for k, v in definition.items() if k not in ("id", "func", "trigger")}
        return CronTrigger(timezone="UTC", **fields).get_next_fire_time(None, now)
    return None


def overview(definitions: list[dict], now=None) -> list[dict]:
    """One entry per scheduled job: label, schedule, last run, next run, recent history."""
    now = now or utcnow()
    result = []
    for definition in definitions:
        history = db.session.scalars(
            select(JobRun).where(JobRun.job == definition["id"])
            .order_by(JobRun.started_at.desc(), JobRun.id.desc()).limit(HISTORY)).all()
        last = next((run for run in history if run.status != "running"), None)
        running = next((run for run in history if run.status == "running"), None)
        result.append({
            "id": definition["id"], "label": job_label(definition["id"]),
            "schedule": describe_schedule(definition), "last": last, "running": running,
            "next_run": next_run(definition, history[0] if history else None, now),
            "history": history,
        })
    return result


def duration_seconds(run: JobRun) -> float | None:
    """How long a run took (or has taken so far)."""
    end = run.finished_at or utcnow()
    return round((end - run.started_at).total_seconds(), 1) if run.started_at else None


def requested_run(job_id: str, since) -> JobRun | None:
    """The run a "run now" started (the first of that job since the request), if any yet."""
    from datetime import timedelta

    return db.session.scalar(
        select(JobRun).where(JobRun.job == job_id,
                             JobRun.started_at >= since - timedelta(seconds=1))
        .order_by(JobRun.started_at, JobRun.id).limit(1))
