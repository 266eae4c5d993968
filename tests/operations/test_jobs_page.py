"""The Jobs page: schedules, runs, "run now" with a self-polling progress fragment."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry, JobRun, utcnow
from dashboard.services.operations import jobs
from dashboard.worker import scheduler


def test_the_jobs_page_lists_every_scheduled_job_with_schedule_and_runs(admin_client):
    """Sweep, purge, health check (and any job added later) appear with their schedule."""
    started = utcnow() - timedelta(minutes=3)
    db.session.add(JobRun(job="sweep", status="ok", started_at=started,
                          finished_at=started + timedelta(seconds=2), counts={"sent": 4}))
    db.session.add(JobRun(job="purge", status="error", started_at=started,
                          finished_at=started, error="OperationalError: disk full"))
    db.session.commit()
    page = admin_client.get("/jobs/").get_data(as_text=True)
    for job_id in ("sweep", "purge", "health_check"):
        assert f'id="job-{job_id}"' in page
    assert "every 5 seconds" in page and "daily at 03:15 UTC" in page
    assert "sent=4" in page and "disk full" in page
    assert "Messages older than 30 days are no longer available." in page
    assert "Opens are approximate" in page


def test_every_scheduled_job_has_a_human_title_in_both_languages(app, admin_client):
    """No card is titled with a job's id (overview_rollup): each has words, in Italian too."""
    from flask_babel import force_locale

    from dashboard.worker.scheduler import job_definitions

    ids = [definition["id"] for definition in job_definitions(app)]
    titles = {}
    with app.test_request_context():
        for language in ("en", "it"):
            with force_locale(language):
                titles[language] = [jobs.job_label(job_id) for job_id in ids]
    for english, italian in zip(titles["en"], titles["it"], strict=True):
        assert "_" not in english and english != italian  # a label of its own, translated
    page = admin_client.get("/jobs/").get_data(as_text=True)
    assert "<strong>Home chart totals</strong>" in page
    assert "<strong>overview_rollup</strong>" not in page


def test_the_jobs_page_is_for_admins_only(support_client):
    """Support staff are refused."""
    assert support_client.get("/jobs/").status_code == 403
    assert support_client.post("/jobs/purge/run").status_code == 403


def test_next_run_follows_the_schedule_and_the_last_run(app):
    """Interval jobs: last start + interval; the daily purge: the next 03:15 UTC."""
    now = utcnow()
    last = JobRun(job="x", started_at=now - timedelta(seconds=2))
    assert jobs.next_run({"trigger": "interval", "seconds": 5}, last, now) == \
        last.started_at + timedelta(seconds=5)
    assert jobs.next_run({"trigger": "interval", "seconds": 5}, None, now) is None
    daily = jobs.next_run({"trigger": "cron", "hour": 3, "minute": 15}, None, now)
    assert (daily.hour, daily.minute) == (3, 15) and now < daily <= now + timedelta(days=1)


def test_run_now_answers_progress_that_polls_until_the_new_last_run(admin_client, admin):
    """POST starts the job in the background; polling ends with 286 and the new last run."""
    response = admin_client.post("/jobs/health_check/run", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in body and "/jobs/health_check/progress?since=" in body
    poll_url = body.split('hx-get="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    scheduler.wait_for_background()
    done = admin_client.get(poll_url, headers={"HX-Request": "true"})
    assert done.status_code == 286
    text = done.get_data(as_text=True)
    assert 'id="job-health_check"' in text and "every 1s" not in text
    assert "badge-run-ok" in text
    run = db.session.scalar(select(JobRun).where(JobRun.job == "health_check"))
    assert run.status == "ok"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "job.run_now"))
    assert entry.actor_id == admin.id and entry.target_id == "health_check"


def test_progress_keeps_polling_while_the_run_is_running(admin_client):
    """A running run answers the progress fragment (200) with its progress bar."""
    since = utcnow()
    db.session.add(JobRun(job="purge", status="running", started_at=since, progress=3, total=10))
    db.session.commit()
    response = admin_client.get(f"/jobs/purge/progress?since={since.isoformat()}".replace("+", "%2B"))
    assert response.status_code == 200
    assert 'value="3" max="10"' in response.get_data(as_text=True)


def test_an_unknown_job_is_a_404(admin_client):
    """Only scheduled jobs can be run."""
    assert admin_client.post("/jobs/nope/run").status_code == 404
    assert admin_client.get("/jobs/nope/progress").status_code == 404


def test_queue_health_shows_status_counts_backlog_and_deferred_reasons(admin_client,
                                                                       make_message):
    """Messages by status, oldest due age, deferred grouped by the server's answer."""
    make_message(0.1, status="deferred", last_smtp_code=451, last_smtp_text="4.7.1 greylisted",
                 next_attempt_at=utcnow() + timedelta(minutes=5))
    make_message(0.1, status="deferred", last_smtp_code=451, last_smtp_text="4.7.1 greylisted",
                 next_attempt_at=utcnow() + timedelta(minutes=5))
    make_message(0.1, status="queued", next_attempt_at=utcnow() - timedelta(minutes=20))
    make_message(2, status="sent")
    response = admin_client.get("/jobs/health", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "<h1>" not in text
    assert "4.7.1 greylisted" in text and "Waiting for 20 min" in text
    assert "Pending mail per customer" in text
