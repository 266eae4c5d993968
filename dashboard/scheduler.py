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
    ]


def run_sweep() -> None:
    """Job: one sweep of the due queue."""
    from .services import jobs
    from .services.sweep import sweep

    with _app.app_context():
        with jobs.recorded("sweep") as run:
            run.counts = sweep().as_dict()


def run_suppression_expiry() -> None:
    """Job: lift expired soft-bounce suppressions (each kept as an automatic removal)."""
    from .services import jobs, suppressions

    with _app.app_context():
        with jobs.recorded("suppression_expiry") as run:
            run.counts = {"lifted": suppressions.expire_due()}


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
