"""Scheduled jobs: APScheduler 3, one scheduler per process, only in `flask worker` and
`flask demo`. Jobs are referenced by string with fixed ids, and each is a thin wrapper that
records a job run and calls the same service the web views and the CLI use."""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

log = logging.getLogger(__name__)
_app: Flask | None = None


def job_definitions(app: Flask) -> list[dict]:
    """Every scheduled job: id, function reference, trigger and its arguments."""
    return [
        {"id": "sweep", "func": "dashboard.scheduler:run_sweep", "trigger": "interval",
         "seconds": int(app.config.get("POSTINO_SWEEP_SECONDS", 5))},
        {"id": "suppression_expiry", "func": "dashboard.scheduler:run_suppression_expiry",
         "trigger": "interval", "minutes": 10},
        {"id": "purge", "func": "dashboard.scheduler:run_purge", "trigger": "cron",
         "hour": 3, "minute": 15},
        {"id": "health_check", "func": "dashboard.scheduler:run_health_check",
         "trigger": "interval", "seconds": 60},
        {"id": "overview_rollup", "func": "dashboard.scheduler:run_overview_rollup",
         "trigger": "interval", "minutes": 10},
        {"id": "dkim_check", "func": "dashboard.scheduler:run_dkim_check",
         "trigger": "interval", "minutes": 60},
    ]


def run_sweep() -> None:
    """Job: one sweep of the due queue."""
    from .services import jobs
    from .services.delivery.sweep import sweep

    with _app.app_context():
        with jobs.recorded("sweep") as run:
            run.counts = sweep().as_dict()


def run_suppression_expiry() -> None:
    """Job: lift expired soft-bounce suppressions (each kept as an automatic removal)."""
    from .services import jobs, suppressions

    with _app.app_context():
        with jobs.recorded("suppression_expiry") as run:
            run.counts = {"lifted": suppressions.expire_due()}


def run_purge() -> None:
    """Job: retention purge (a singleton: skipped while another worker purges)."""
    from .services import purge

    with _app.app_context():
        purge.run_job()


def run_health_check() -> None:
    """Job: queue health alerts (worker heartbeat, backlog, paused customers)."""
    from .services import health, jobs

    with _app.app_context():
        with jobs.recorded("health_check") as run:
            run.counts = health.check()


def run_overview_rollup() -> None:
    """Job: count closed days into the Home rollup, so no visit pays for it."""
    from .services import jobs, overview

    with _app.app_context():
        with jobs.recorded("overview_rollup") as run:
            run.counts = {"days": overview.refresh()}


def run_dkim_check() -> None:
    """Job: look up the DKIM records of active and prepared keys, so signing starts once the
    customer publishes its record (and stops if it goes away)."""
    from .services import jobs
    from .services.delivery import dkim_keys

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
