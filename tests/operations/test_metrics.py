"""GET /metrics: Prometheus text format, read by a real parser; only for allowed clients."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.extensions import db
from dashboard.models import BounceReport
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake

ROOT = Path(__file__).resolve().parents[2]
ORDER = {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
         "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


def scrape(client, **headers) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_queue_depth_and_bounce_intake_come_from_the_database(client, make_customer):
    """Counts any web process answers alike, whichever worker did the work."""
    customer, _key = make_customer()
    intake.enqueue(customer, "order_closed", ["a@example.com", "b@example.com"], data=ORDER)
    db.session.add(BounceReport(recipient="a@example.com", kind="hard"))
    db.session.commit()
    samples = scrape(client)
    assert value(samples, "postino_queue_messages", status="queued") == 2
    assert value(samples, "postino_queue_messages", status="held") == 0
    assert value(samples, "postino_queue_due") == 2
    assert value(samples, "postino_bounce_reports_total", kind="hard") == 1
    assert ("postino_worker_last_sweep_timestamp_seconds", frozenset()) in samples


def test_send_latency_and_outcomes_are_measured(client, relay, make_customer):
    """A sweep's send shows in the latency histogram and the outcomes by transport kind."""
    before = scrape(client)
    customer, _key = make_customer()
    intake.enqueue(customer, "order_closed", "a@example.com", data=ORDER)
    assert sweep().sent == 1
    after = scrape(client)
    key = {"transport": "relay", "outcome": "sent"}
    assert value(after, "postino_send_seconds_count", **key) == \
        value(before, "postino_send_seconds_count", **key) + 1
    labels = {"outcome": "sent", "transport": "relay", "fault_class": "none"}
    assert value(after, "postino_send_outcomes_total", **labels) == \
        value(before, "postino_send_outcomes_total", **labels) + 1


def test_other_addresses_need_the_token(app, client):
    """Outside POSTINO_METRICS_ALLOW: 403, unless the Bearer token is right."""
    remote = {"REMOTE_ADDR": "192.0.2.10"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    app.config["POSTINO_METRICS_TOKEN"] = "scrape-token-0123456789"
    try:
        assert client.get("/metrics", environ_base=remote,
                          headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get("/metrics", environ_base=remote, headers={
            "Authorization": "Bearer scrape-token-0123456789"}).status_code == 200
        app.config["POSTINO_METRICS_ALLOW"] = "192.0.2.0/24"
        assert client.get("/metrics", environ_base=remote).status_code == 200
    finally:
        app.config["POSTINO_METRICS_TOKEN"] = None
        app.config["POSTINO_METRICS_ALLOW"] = "127.0.0.1,::1"


@pytest.mark.slow
def test_a_worker_processs_measurements_reach_the_web_scrape(app, client, relay, make_customer,
                                                            tmp_path):
    """Multiprocess mode: `flask sweep` in another process writes its measurements to
    PROMETHEUS_MULTIPROC_DIR, and the web process's scrape adds them up."""
    customer, _key = make_customer()
    intake.enqueue(customer, "order_closed", "a@example.com", data=ORDER)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
           "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": app.config["SECRET_KEY"],
           "POSTINO_CREDENTIALS_KEY": app.config["POSTINO_CREDENTIALS_KEY"],
           "POSTINO_BOUNCE_DOMAIN": app.config["POSTINO_BOUNCE_DOMAIN"],
           "MAIL_SERVER": relay.host, "MAIL_PORT": str(relay.port), "PYTHONPATH": str(ROOT)}
    env.pop("FLASK_APP", None)
    done = subprocess.run([sys.executable, "-m", "flask", "sweep"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().endswith("sent=1 deferred=0 failed=0 held=0"), done.stderr
    app.config["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    try:
        samples = scrape(client)
    finally:
        app.config["PROMETHEUS_MULTIPROC_DIR"] = None
    assert value(samples, "postino_send_seconds_count", transport="relay", outcome="sent") == 1
    assert value(samples, "postino_sweep_seconds_count") == 1
    assert value(samples, "postino_queue_messages", status="queued") == 0


def test_a_request_through_an_undeclared_proxy_needs_the_token(app, client):
    """Behind a proxy on this host every client would look local: with forwarding headers
    and POSTINO_TRUSTED_PROXIES=0 the address does not count, the token does."""
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert client.get("/metrics", headers=forwarded).status_code == 403
    app.config["POSTINO_METRICS_TOKEN"] = "scrape-token-0123456789"
    try:
        assert client.get("/metrics", headers={
            **forwarded, "Authorization": "Bearer scrape-token-0123456789"}).status_code == 200
    finally:
        app.config["POSTINO_METRICS_TOKEN"] = None
