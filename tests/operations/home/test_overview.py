"""Home aggregates: totals, buckets per hour and day, top failing customers, queue, worker."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.extensions import db
from dashboard.models import JobRun, Message, MessageRollup, utcnow
from dashboard.services.delivery import sending
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake
from dashboard.services.operations import overview
from tests.smtp_servers import start_server

DATA = {"order_number": "ORD-1", "order_date": "1/3/2026", "total": "€ 5",
        "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


@pytest.fixture
def fault_server(app):
    """Our relay pointed at a server that defers busy@ and refuses gone@ and gone2@."""
    server = start_server(faults={"busy@example.com": "451", "gone@example.com": "550",
                                  "gone2@example.com": "550"})
    saved = {k: app.config[k] for k in ("MAIL_SERVER", "MAIL_PORT")}
    app.config.update(MAIL_SERVER=server.host, MAIL_PORT=server.port)
    yield server
    server.stop()
    app.config.update(saved)


def enqueue(customer, *recipients):
    """Store one order_closed message per recipient through the real ingest."""
    return intake.enqueue(customer, "order_closed", list(recipients), reference="ORD-1",
                            language="it", data=DATA)


def age(items, **delta):
    """Move messages back in time (created_at), as if they arrived earlier."""
    for message in items:
        message.created_at = utcnow() - timedelta(**delta)
    db.session.commit()


def test_totals_by_status_come_from_the_pipeline(app, fault_server, make_customer):
    """Sent, deferred, failed and held messages of the last 24 hours are counted by status."""
    customer, _ = make_customer()
    enqueue(customer, "a@example.com", "b@example.com", "busy@example.com", "gone@example.com")
    sweep()
    held_customer, _ = make_customer()
    sending.set_customer(held_customer, False)
    enqueue(held_customer, "c@example.com")
    data = overview.overview("24h")
    assert {k: v for k, v in data.totals.items() if v} == {
        "sent": 2, "deferred": 1, "failed": 1, "held": 1}
    assert data.total == 5
    now_key = utcnow().strftime("%Y-%m-%d %H:00")
    [bucket] = [b for b in data.buckets if b.key == now_key]
    assert bucket.counts == {"sent": 2, "delivered": 0, "deferred": 1, "failed": 1,
                             "bounced": 0, "suppressed": 0}
    assert len(data.buckets) == 24 and data.buckets[-1].key == now_key


def test_periods_include_only_their_messages(app, make_customer):
    """A message of 3 days ago is outside 24 hours, inside 7 days, in its own day's bar."""
    customer, _ = make_customer()
    old = enqueue(customer, "old@example.com")
    enqueue(customer, "new@example.com")
    age(old, days=3)
    assert overview.overview("24h").total == 1
    week = overview.overview("7d")
    assert week.total == 2 and len(week.buckets) == 7
    day = (utcnow() - timedelta(days=3)).strftime("%Y-%m-%d")
    assert [b.total for b in week.buckets if b.key == day] == [0]  # queued is not a series
    assert week.totals["queued"] == 2
    assert len(overview.overview("30d").buckets) == 30


def test_closed_days_are_kept_in_the_rollup_and_recounted_later(app, make_customer):
    """A closed day is counted into the rollup, recounted after 15 minutes until it settles."""
    customer, _ = make_customer()
    old = enqueue(customer, "x@example.com", "y@example.com")
    age(old, days=2)
    first = overview.overview("7d")
    day = (utcnow() - timedelta(days=2)).strftime("%Y-%m-%d")
    stored = {(r.customer_id, r.status): r.count for r in db.session.scalars(
        db.select(MessageRollup).where(MessageRollup.day == day))}
    assert stored == {(customer.id, "queued"): 2, (-1, "queued"): 2, (0, "*"): 0}
    assert first.totals["queued"] == 2
    old[0].status = "failed"
    db.session.commit()
    assert overview.overview("7d").totals["failed"] == 0  # counted a moment ago: kept
    later = utcnow() + timedelta(minutes=16)
    assert overview.overview("7d", now=later).totals["failed"] == 1
    old[1].status = "failed"
    db.session.commit()
    # four days on (early in that day, so the 7-day window still holds it), the day is
    # counted for good
    settled = overview._midnight(utcnow()) + timedelta(days=4, minutes=30)
    overview.overview("7d", now=settled)
    assert overview.overview("7d", now=settled + timedelta(hours=1)).totals["failed"] == 2
    old[0].status = "queued"
    db.session.commit()
    assert overview.overview("7d", now=settled + timedelta(hours=2)).totals["failed"] == 2


def test_an_empty_closed_day_is_marked_and_not_recounted(app):
    """Days without messages are stored as counted (a mark row) so visits stay cheap."""
    overview.overview("30d")
    marks = db.session.scalar(db.select(db.func.count(MessageRollup.id))
                              .where(MessageRollup.status == "*"))
    assert marks == 29  # 30 days less today, counted live


def test_top_customers_are_ranked_by_failures(app, fault_server, make_customer):
    """The customer with more failed or bounced messages comes first, with its rate."""
    quiet, _ = make_customer(name="Quiet")
    noisy, _ = make_customer(name="Noisy")
    enqueue(quiet, "a@example.com", "gone@example.com")
    enqueue(noisy, "gone2@example.com", "busy@example.com")
    sweep()
    [bounced] = enqueue(noisy, "b@example.com")
    sweep()
    db.session.get(Message, bounced.id).status = "bounced"  # the sweep detached its copy
    db.session.commit()
    top = overview.overview("24h").top_failures
    assert [(r.customer.name, r.failed, r.bounced, r.total) for r in top] == [
        ("Noisy", 1, 1, 3), ("Quiet", 1, 0, 2)]
    assert top[0].rate == pytest.approx(66.7)


def test_queue_depth_counts_what_is_due_and_what_is_held(app, fault_server, make_customer):
    """Due means queued or deferred whose time has come; a future retry is not due yet."""
    customer, _ = make_customer()
    enqueue(customer, "busy@example.com")
    sweep()  # deferred, next attempt in about a minute
    enqueue(customer, "a@example.com")  # queued, due now
    blocked, _ = make_customer()
    sending.set_customer(blocked, False)
    enqueue(blocked, "b@example.com")
    queue = overview.queue_depth()
    assert (queue.due, queue.queued, queue.deferred, queue.held) == (1, 1, 1, 1)
    assert overview.queue_depth(utcnow() + timedelta(minutes=5)).due == 2


def test_the_worker_heartbeat_is_never_ok_or_late(app):
    """No sweep yet: never; a sweep that just finished: ok; ten minutes ago: late."""
    assert overview.heartbeat() == (None, "never")
    run = JobRun(job="sweep", status="ok", finished_at=utcnow())
    db.session.add(run)
    db.session.commit()
    assert overview.heartbeat()[1] == "ok"
    run.finished_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert overview.heartbeat()[1] == "late"


def test_an_unknown_period_falls_back_to_24_hours(app):
    """Only 24h, 7d and 30d are periods."""
    assert overview.overview("1y").period == "24h"


def test_the_chart_stacks_series_and_scales_to_the_peak(app, relay, make_customer):
    """The tallest bar reaches the top of the plot; every segment has its series colour."""
    customer, _ = make_customer()
    enqueue(customer, "a@example.com", "b@example.com")
    sweep()
    data = overview.overview("24h")
    chart = overview.chart(data)
    [bar] = [b for b in chart.bars if b["segments"]]
    [segment] = bar["segments"]
    assert segment["series"] == "sent" and segment["n"] == 2
    assert segment["h"] == chart.plot_height and segment["colour"] == "#42a5f5"
    assert [t["value"] for t in chart.ticks] == [0, 1, 2]


def test_opened_messages_count_as_delivered_in_the_chart(app, relay, make_customer):
    """Delivered and opened share one series; the totals keep them apart."""
    customer, _ = make_customer()
    first, second = enqueue(customer, "a@example.com", "b@example.com")
    sweep()
    db.session.get(Message, first.id).status = "opened"  # the sweep detached its copies
    db.session.get(Message, second.id).status = "delivered"
    db.session.commit()
    data = overview.overview("7d")
    assert sum(b.counts["delivered"] for b in data.buckets) == 2
    assert data.totals["opened"] == 1 and data.totals["delivered"] == 1
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 2


def test_the_scheduled_refresh_counts_closed_days_once(app, make_customer):
    """The rollup job counts the 29 closed days, then nothing until they go stale."""
    customer, _ = make_customer()
    age(enqueue(customer, "a@example.com"), days=10)
    assert overview.refresh() == 29
    assert overview.refresh() == 0
    day = (utcnow() - timedelta(days=10)).strftime("%Y-%m-%d")
    assert db.session.scalar(db.select(MessageRollup.count).where(
        MessageRollup.day == day, MessageRollup.customer_id == -1)) == 1


def test_the_rollup_job_is_scheduled(app):
    """The worker refreshes the rollup every 10 minutes."""
    from dashboard.worker.scheduler import job_definitions

    [job] = [j for j in job_definitions(app) if j["id"] == "overview_rollup"]
    assert job["func"] == "dashboard.worker.scheduler:run_overview_rollup" and job["minutes"] == 10
