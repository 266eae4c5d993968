"""Scheduled jobs: APScheduler 3, one scheduler per process, only in `flask worker` and
`flask demo`. Jobs are referenced by string with fixed ids, and each is a thin wrapper that
records a job run and calls the same service the web views and the CLI use."""
from __future__ import annotations

import logging
import threading

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from ..extensions import db
from ..models import utcnow
from ..services.core import audit

log = logging.getLogger(__name__)
_app: Flask | None = None
_background: dict[str, threading.Thread] = {}  # "run now" threads, by job id


def job_definitions(app: Flask) -> list[dict]:
    """Every scheduled job: id, function reference, trigger and its arguments."""
    return [
        {"id": "sweep", "func": "dashboard.worker.scheduler:run_sweep", "trigger": "interval",
         "seconds": int(app.config.get("POSTINO_SWEEP_SECONDS", 5))},
        {"id": "suppression_expiry", "func": "dashboard.worker.scheduler:run_suppression_expiry",
         "trigger": "interval", "minutes": 10},
        {"id": "purge", "func": "dashboard.worker.scheduler:run_purge", "trigger": "cron",
         "hour": 3, "minute": 15},
        {"id": "health_check", "func": "dashboard.worker.scheduler:run_health_check",
         "trigger": "interval", "seconds": 60},
        {"id": "overview_rollup", "func": "dashboard.worker.scheduler:run_overview_rollup",
         "trigger": "interval", "minutes": 10},
        {"id": "dkim_check", "func": "dashboard.worker.scheduler:run_dkim_check",
         "trigger": "interval", "minutes": 60},
    ]


def run_sweep() -> None:
    """Job: one sweep of the due queue."""
    from ..services.delivery.sweep import sweep
    from ..services.operations import jobs

    with _app.app_context():
        with jobs.recorded("sweep") as run:
            run.counts = sweep().as_dict()


def run_suppression_expiry() -> None:
    """Job: lift expired soft-bounce suppressions (each kept as an automatic removal)."""
    from ..services.bounces import suppressions
    from ..services.operations import jobs

    with _app.app_context():
        with jobs.recorded("suppression_expiry") as run:
            run.counts = {"lifted": suppressions.expire_due()}


def run_purge() -> None:
    """Job: retention purge (a singleton: skipped while another worker purges)."""
    from ..services.operations import purge

    with _app.app_context():
        purge.run_job()


def run_health_check() -> None:
    """Job: queue health alerts (worker heartbeat, backlog, paused customers)."""
    from ..services.operations import health, jobs

    with _app.app_context():
        with jobs.recorded("health_check") as run:
            run.counts = health.check()


def run_overview_rollup() -> None:
    """Job: count closed days into the Home rollup, so no visit pays for it."""
    from ..services.operations import jobs, overview

    with _app.app_context():
        with jobs.recorded("overview_rollup") as run:
            run.counts = {"days": overview.refresh()}


def run_dkim_check() -> None:
    """Job: look up the DKIM records of active and prepared keys, so signing starts once the
    customer publishes its record (and stops if it goes away)."""
    from ..services.delivery import dkim_keys
    from ..services.operations import jobs

    with _app.app_context():
        with jobs.recorded("dkim_check") as run:
            run.counts = dkim_keys.check_due()


def run_now(app: Flask, job_id: str) -> None:
    """Run one scheduled job's function now, in this process (the Jobs page's "run now")."""
    from apscheduler.util import ref_to_obj

    global _app
    _app = app
    definition = next(d for d in job_definitions(app) if d["id"] == job_id)
    ref_to_obj(definition["func"])()


def make_scheduler(app: Flask, background: bool = False):
    """Build the process's one scheduler with every job, replacing any of the same id."""
    global _app
    _app = app
    scheduler = (BackgroundScheduler if background else BlockingScheduler)(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        timezone="UTC",
    )
    for job in job_definitions(app):
        job = dict(job)
        scheduler.add_job(job.pop("func"), id=job.pop("id"), trigger=job.pop("trigger"),
                          replace_existing=True, **job)
    return scheduler


def start_now(app, job_id: str, actor=None):
    """Run a scheduled job now in a background thread with its own app context; audited.
    Returns the time the request was made: its run is the first one started after it."""
    audit.record("job.run_now", actor, "job", job_id)
    db.session.commit()
    since = utcnow()

    def _target():
        with app.app_context():
            try:
                run_now(app, job_id)
            except Exception:  # recorded on the job run; the thread must not die noisily
                log.exception("job %s (run now) failed", job_id)
            finally:
                db.session.remove()

    thread = threading.Thread(target=_target, name=f"run-now-{job_id}", daemon=True)
    _background[job_id] = thread
    thread.start()
    return since


def wait_for_background(timeout: float = 30) -> None:
    """Join "run now" threads (tests, and a clean shutdown)."""
    for thread in list(_background.values()):
        thread.join(timeout)
