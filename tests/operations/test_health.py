"""Health alerts: raised once per cause (one email an hour), shown as a banner, cleared when gone."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import Alert, JobRun, Message, utcnow
from dashboard.services.operations import alerts, health


def _alert_mails() -> int:
    """processing_blocked messages queued to staff."""
    return db.session.scalar(select(func.count(Message.id)).where(
        Message.event == "processing_blocked"))


def _sweep_finished(ago: timedelta) -> None:
    at = utcnow() - ago
    db.session.add(JobRun(job="sweep", status="ok", started_at=at, finished_at=at))
    db.session.commit()


def test_a_silent_worker_raises_one_alert_and_one_email_then_clears(admin, admin_client):
    """No heartbeat for 5 minutes: one alert, one email per hour, a banner; fresh heartbeat clears."""
    _sweep_finished(timedelta(minutes=7))
    health.check()
    health.check()
    open_alerts = db.session.scalars(select(Alert).where(Alert.cleared_at.is_(None))).all()
    assert [a.cause for a in open_alerts] == [health.WORKER_CAUSE]
    assert _alert_mails() == 1
    page = admin_client.get("/").get_data(as_text=True)
    assert "No worker heartbeat for over 5 minutes" in page
    _sweep_finished(timedelta(seconds=1))
    found = health.check()
    assert found["cleared"] == 1
    assert db.session.scalar(select(func.count(Alert.id)).where(Alert.cleared_at.is_(None))) == 0
    assert "No worker heartbeat" not in admin_client.get("/").get_data(as_text=True)


def test_the_web_shows_a_dead_worker_even_without_an_alert(admin_client):
    """With every worker down the health check cannot run: the banner is computed."""
    _sweep_finished(timedelta(minutes=30))
    page = admin_client.get("/").get_data(as_text=True)
    assert "No worker heartbeat for over 5 minutes" in page


def test_a_backlog_older_than_15_minutes_raises_an_alert_until_it_is_sent(admin, make_message):
    """The oldest due message waiting 20 minutes raises queue_backlog; once sent it clears."""
    _sweep_finished(timedelta(seconds=1))
    message = make_message(0.1, status="queued", next_attempt_at=utcnow() - timedelta(minutes=20))
    found = health.check()
    assert found["backlog_seconds"] > 15 * 60
    assert db.session.scalar(select(Alert.cause).where(Alert.cleared_at.is_(None))) == \
        health.BACKLOG_CAUSE
    message = db.session.get(Message, message.id)
    message.status = "sent"
    db.session.commit()
    health.check()
    assert db.session.scalar(select(func.count(Alert.id)).where(Alert.cleared_at.is_(None))) == 0


def test_a_paused_customer_keeps_its_alert_until_resumed(admin, make_customer):
    """A paused customer: alerted once an hour; resuming by any path clears the alert."""
    _sweep_finished(timedelta(seconds=1))
    customer = make_customer(paused=True, paused_reason="535 authentication failed")[0]
    health.check()
    health.check()
    assert db.session.scalar(select(Alert.cause).where(Alert.cleared_at.is_(None))) == \
        f"paused:{customer.id}"
    assert _alert_mails() == 1
    customer.paused = False
    db.session.commit()
    health.check()
    assert db.session.scalar(select(func.count(Alert.id)).where(Alert.cleared_at.is_(None))) == 0


def test_a_healthy_queue_raises_nothing(admin):
    """Fresh heartbeat, nothing due, nobody paused: no alert, no email."""
    _sweep_finished(timedelta(seconds=2))
    found = health.check()
    assert found["raised"] == 0 and _alert_mails() == 0


def test_healthz_reports_the_heartbeat_age(client):
    """GET /healthz: 200 with the worker heartbeat age, no login."""
    _sweep_finished(timedelta(seconds=42))
    body = client.get("/healthz").json
    assert body["status"] == "ok" and 41 <= body["worker_heartbeat_age"] <= 60


def test_the_health_check_job_is_scheduled_and_recorded(app, admin):
    """The scheduler's thin wrapper records a health_check job run with what it found."""
    from dashboard.worker import scheduler

    assert {"sweep", "purge", "health_check"} <= {d["id"] for d in scheduler.job_definitions(app)}
    scheduler.run_now(app, "health_check")
    run = db.session.scalar(select(JobRun).where(JobRun.job == "health_check"))
    assert run.status == "ok" and "raised" in run.counts
    alerts.clear(health.WORKER_CAUSE)
