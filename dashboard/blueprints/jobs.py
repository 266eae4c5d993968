"""Jobs (admin): scheduled jobs with their runs, "run now", and the queue's health."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, abort, current_app, request
from flask_login import current_user

from ..auth import roles
from ..htmx import render, stop_polling
from ..models import utcnow
from ..services.operations import health, jobs, purge
from ..worker import scheduler
from ..worker.scheduler import job_definitions

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
START_GRACE = timedelta(seconds=30)


def _definition(job_id: str) -> dict:
    definition = next((d for d in job_definitions(current_app) if d["id"] == job_id), None)
    if definition is None:
        abort(404)
    return definition


def _job(job_id: str) -> dict:
    """One job's entry, built the same way as on the full page."""
    return jobs.overview([_definition(job_id)])[0]


def _page_context() -> dict:
    """Everything the Jobs page shows, built in one place."""
    return {"jobs": jobs.overview(job_definitions(current_app)),
            "health": health.queue_health(), "duration": jobs.duration_seconds,
            "retention_notice": purge.retention_notice()}


@bp.route("/")
@roles("admin")
def index():
    """The Jobs page: every scheduled job, then the queue's health."""
    return render("jobs/index.html", **_page_context())


@bp.route("/health")
@roles("admin")
def queue_health():
    """The queue health section alone (it refreshes itself)."""
    return render("jobs/index.html", "jobs/_health.html", **_page_context())


@bp.route("/<job_id>/run", methods=["POST"])
@roles("admin")
def run(job_id: str):
    """Start a job now in the background; answer a progress fragment that polls itself."""
    _definition(job_id)
    since = scheduler.start_now(current_app._get_current_object(), job_id, current_user)
    return render("jobs/_progress.html", job=_job(job_id), run=None, since=since,
                  duration=jobs.duration_seconds)


@bp.route("/<job_id>/progress")
@roles("admin")
def progress(job_id: str):
    """Progress of a requested run; once finished, the job's card, and polling stops (286)."""
    _definition(job_id)
    try:
        since = datetime.fromisoformat(request.args.get("since", ""))
    except ValueError:
        since = utcnow() - START_GRACE
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    run = jobs.requested_run(job_id, since)
    finished = run is not None and run.status != "running"
    if finished or (run is None and utcnow() - since > START_GRACE):
        return stop_polling(render("jobs/_job.html", job=_job(job_id), started=run is not None,
                                   duration=jobs.duration_seconds))
    return render("jobs/_progress.html", job=_job(job_id), run=run, since=since,
                  duration=jobs.duration_seconds)
