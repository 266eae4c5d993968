"""Delivery webhooks against a real HTTPS receiver: signed, retried, in order, paused."""
from __future__ import annotations

import json
import time

from sqlalchemy import select, update

from dashboard.extensions import db
from dashboard.models import Alert, Message, WebhookEndpoint, WebhookEvent, utcnow
from dashboard.services.operations import health
from dashboard.services.webhooks import delivery, endpoints, signing


def _all_due() -> None:
    """Make every waiting event due now (as if its backoff had passed)."""
    db.session.execute(update(WebhookEvent).where(WebhookEvent.status == "pending")
                       .values(next_attempt_at=utcnow()))
    db.session.commit()


def test_an_event_arrives_signed_with_the_customers_secret(hooked, receiver, timeline):
    """The receiver can verify the HMAC-SHA256 over timestamp.body with the secret it was
    shown once, and the body names message, reference, recipient, event and event id."""
    customer, _endpoint, secret = hooked
    message = timeline(customer, "queued", "sent")
    counts = delivery.run()
    assert counts["produced"] == 1 and counts["delivered"] == 1
    [request] = receiver.received
    assert request.headers["Content-Type"] == "application/json"
    assert signing.verify(secret, request.headers["Postino-Signature"], request.body)
    assert not signing.verify("whsec_other", request.headers["Postino-Signature"], request.body)
    assert not signing.verify(secret, request.headers["Postino-Signature"], request.body + b" ")
    body = request.json
    assert body["event"] == "sent" and body["message_id"] == message.public_id
    assert body["reference"] == "ORD-1" and body["recipient"] == message.recipient
    assert body["notification"] == "order_closed" and body["id"].startswith("evt_")
    assert request.headers["Postino-Event-Id"] == body["id"]
    assert db.session.scalar(select(WebhookEvent.status)) == "delivered"


def test_an_old_signature_is_refused_by_the_tolerance_window():
    """A replayed request (timestamp older than five minutes) does not verify."""
    body = b'{"id":"evt_1"}'
    header = signing.header(["whsec_x"], body, timestamp=int(time.time()) - 301)
    assert not signing.verify("whsec_x", header, body)
    assert signing.verify("whsec_x", header, body, tolerance=400)


def test_a_500_is_retried_later_with_the_same_event_id(hooked, receiver, timeline):
    """At least once: the event waits with a backoff after a 500 and goes again, same id."""
    customer, endpoint, _secret = hooked
    timeline(customer, "sent")
    receiver.answers.append(500)
    assert delivery.run()["retry"] == 1
    event = db.session.scalar(select(WebhookEvent))
    assert event.status == "pending" and event.attempts == 1 and event.last_status_code == 500
    assert event.next_attempt_at > utcnow()
    assert delivery.run()["delivered"] == 0  # not due yet
    _all_due()
    assert delivery.run()["delivered"] == 1
    first, second = receiver.events()
    assert first["id"] == second["id"]
    db.session.refresh(endpoint)
    assert endpoint.failures == 0 and endpoint.last_success_at is not None


def test_a_timeout_is_retried(app, hooked, receiver, timeline):
    """An endpoint that does not answer within POSTINO_WEBHOOK_TIMEOUT counts as a failure."""
    customer, _endpoint, _secret = hooked
    app.config["POSTINO_WEBHOOK_TIMEOUT"] = 0.5
    timeline(customer, "sent")
    receiver.answers.append("sleep:1.5")
    assert delivery.run()["retry"] == 1
    event = db.session.scalar(select(WebhookEvent))
    assert "no answer within 0.5 s" in event.last_error
    _all_due()
    assert delivery.run()["delivered"] == 1


def test_events_of_one_message_arrive_in_order(hooked, receiver, timeline):
    """A message's later event waits while an earlier one is being retried."""
    customer, _endpoint, _secret = hooked
    first = timeline(customer, "sent", ("bounce", {"fault_class": "recipient_permanent",
                                                  "fault_reason": "unknown_user",
                                                  "trusted": True}))
    other = timeline(customer, "sent")
    receiver.answers.append(500)  # the first event of `first` fails once
    delivery.run()
    seen = [(e["message_id"], e["event"]) for e in receiver.events()]
    assert (first.public_id, "bounced") not in seen  # waits behind its failed "sent"
    assert (other.public_id, "sent") in seen
    _all_due()
    delivery.run()
    of_first = [e["event"] for e in receiver.events() if e["message_id"] == first.public_id]
    assert of_first == ["sent", "sent", "bounced"]
    bounced = [e for e in receiver.events() if e["event"] == "bounced"][0]
    assert bounced["fault_class"] == "recipient_permanent"
    assert bounced["fault_reason"] == "unknown_user" and bounced["smtp_code"] == 550


def test_each_kind_of_step_becomes_its_event(hooked, receiver, timeline):
    """sent, delivered, bounced, suppressed, failed (and expired), opened, complaint; a
    report about another address and steps like queued or deferred make none."""
    customer, _endpoint, _secret = hooked
    timeline(customer, "queued", "deferred", "sent", ("delivered", {"trusted": True}),
             "opened", ("complaint", {"trusted": True, "fault_class": "complaint"}))
    timeline(customer, "suppressed")
    timeline(customer, "failed")
    timeline(customer, "expired")
    timeline(customer, ("bounce", {"trusted": False}))
    delivery.run()
    kinds = sorted(e["event"] for e in receiver.events())
    assert kinds == sorted(["sent", "delivered", "opened", "complaint", "suppressed", "failed",
                            "failed"])
    assert len({e["id"] for e in receiver.events()}) == len(kinds)


def test_steps_recorded_before_the_endpoint_are_not_sent(app, make_customer, receiver,
                                                         timeline):
    """A new endpoint starts with what happens from now on."""
    customer, _key = make_customer()
    timeline(customer, "sent")
    endpoints.configure(customer, receiver.url, None)
    timeline(customer, "sent")
    assert delivery.run()["delivered"] == 1


def test_repeated_failures_pause_the_endpoint_with_an_alert(app, hooked, receiver, timeline,
                                                           make_user, monkeypatch):
    """After PAUSE_AFTER failures in a row nothing more is sent and admins are alerted; new
    events still enter the outbox, and resuming sends them all."""
    make_user("admin")
    monkeypatch.setattr(delivery, "PAUSE_AFTER", 3)
    customer, endpoint, _secret = hooked
    for _ in range(3):
        timeline(customer, "sent")
    receiver.answers.extend([500, 500, 500])
    delivery.run()
    db.session.refresh(endpoint)
    assert endpoint.paused_at is not None and "HTTP 500" in endpoint.paused_reason
    health.check()  # the health-check job raises the alert (banner and email to admins)
    alert = db.session.scalar(select(Alert).where(Alert.cause == f"webhook:{customer.id}"))
    assert alert is not None and alert.cleared_at is None
    timeline(customer, "sent")
    _all_due()
    counts = delivery.run()
    assert counts["produced"] == 1 and counts["delivered"] == 0 and len(receiver.received) == 3
    endpoints.resume(endpoint, None)
    assert delivery.run()["delivered"] == 4
    db.session.refresh(alert)
    assert alert.cleared_at is not None
    assert db.session.scalar(select(Message).where(Message.event == "processing_blocked"))


def test_a_test_event_is_sent_at_once_and_not_retried(hooked, receiver):
    """The customer page's "send a test event": one attempt, its answer shown."""
    _customer, endpoint, secret = hooked
    event = endpoints.send_test(endpoint)
    assert event.status == "delivered" and event.last_status_code == 200
    request = receiver.received[0]
    assert request.json["event"] == "test" and request.json["test"] is True
    assert signing.verify(secret, request.headers["Postino-Signature"], request.body)
    receiver.answers.append(503)
    event = endpoints.send_test(endpoint)
    assert event.status == "failed" and "HTTP 503" in event.last_error
    db.session.refresh(endpoint)
    assert endpoint.failures == 0


def test_a_rotated_secret_signs_beside_the_previous_one_for_a_day(hooked, receiver, timeline):
    """Receivers switch secrets without refusing events: both verify for a day."""
    customer, endpoint, old = hooked
    new = endpoints.rotate_secret(endpoint, None)
    assert new != old and old not in json.dumps(
        [endpoint.secret_encrypted, endpoint.previous_secret_encrypted])
    timeline(customer, "sent")
    delivery.run()
    request = receiver.received[0]
    assert signing.verify(new, request.headers["Postino-Signature"], request.body)
    assert signing.verify(old, request.headers["Postino-Signature"], request.body)


def test_only_https_addresses_are_accepted(app, make_customer):
    """Events carry recipients' addresses: plain http is refused."""
    import pytest

    from dashboard.services import ServiceError

    customer, _key = make_customer()
    for bad in ("http://example.com/hook", "ftp://example.com", "https://", "example.com",
                "https://user:pw@example.com/", "https://example.com:99999/"):
        with pytest.raises(ServiceError):
            endpoints.configure(customer, bad, None)
    assert db.session.scalar(select(WebhookEndpoint)) is None


def test_an_untrusted_certificate_is_a_failure(app, hooked, receiver, timeline):
    """Certificates are verified: without the receiver's CA the attempt fails (TLS)."""
    customer, _endpoint, _secret = hooked
    app.config["POSTINO_WEBHOOK_CA_FILE"] = None
    timeline(customer, "sent")
    assert delivery.run()["retry"] == 1
    assert "TLS" in db.session.scalar(select(WebhookEvent.last_error))
    assert receiver.received == []


def test_reading_the_timeline_again_adds_no_event_twice(hooked, timeline):
    """The cursor held back for late commits (or two workers reading at once) never makes
    a second event for one timeline step."""
    from sqlalchemy import func

    from dashboard.services.webhooks import outbox

    customer, endpoint, _secret = hooked
    timeline(customer, "sent", "opened")
    assert outbox.produce_for(endpoint) == 2
    endpoint.cursor = 0
    db.session.commit()
    assert outbox.produce_for(endpoint) == 0
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 2


def test_a_quiet_customers_cursor_moves_past_other_customers_steps(hooked, make_customer,
                                                                    timeline, monkeypatch):
    """Other customers' timeline rows are skipped for good once settled, so a pass never
    rereads the whole table for a customer that sends nothing."""
    from datetime import timedelta

    from dashboard.services.webhooks import outbox

    monkeypatch.setattr(outbox, "SETTLE", timedelta(0))
    monkeypatch.setattr(outbox, "_WATERMARKS", {})
    _customer, endpoint, _secret = hooked
    other, _key = make_customer()
    last = timeline(other, "sent", "opened")
    outbox.produce_for(endpoint)  # takes the watermark
    outbox.produce_for(endpoint)  # moves up to it
    assert endpoint.cursor == max(e.id for e in last.events)
    assert db.session.scalar(select(WebhookEvent)) is None


def test_rotate_credentials_re_encrypts_webhook_secrets(app, hooked, receiver, timeline, runner,
                                                        monkeypatch):
    """New credentials key first, rotate, drop the old key: events are still signed with the
    secret the platform holds."""
    from cryptography.fernet import Fernet

    customer, endpoint, secret = hooked
    old_token = endpoint.secret_encrypted
    old_key = app.config["POSTINO_CREDENTIALS_KEY"]
    new_key = Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", f"{new_key},{old_key}")
    result = runner.invoke(args=["rotate-credentials"])
    assert result.exit_code == 0 and "re-encrypted 1 stored secrets" in result.output
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).secret_encrypted != old_token
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", new_key)
    timeline(customer, "sent")
    assert delivery.run()["delivered"] == 1
    request = receiver.received[0]
    assert signing.verify(secret, request.headers["Postino-Signature"], request.body)


def test_a_failed_delivery_logs_its_customer_and_message(hooked, receiver, timeline):
    """With JSON logs, the warning of a failed attempt names the customer and the message."""
    import io
    import logging

    from dashboard import log_format

    customer, _endpoint, _secret = hooked
    message = timeline(customer, "sent")
    receiver.answers.append(500)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log_format.JsonFormatter())
    logger = logging.getLogger("dashboard.services.webhooks.delivery")
    logger.addHandler(handler)
    try:
        delivery.run()
    finally:
        logger.removeHandler(handler)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["level"] == "WARNING" and "HTTP 500" in line["message"]
    assert line["customer"] == customer.code and line["message_id"] == message.public_id


def test_the_readme_verification_snippet_accepts_postinos_signature():
    """The platform's side as the README shows it: it verifies our header and refuses a
    tampered body, another secret and an old timestamp."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = readme.split("Verifying a request on the platform's side")[1]
    snippet = snippet.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    verify = namespace["verify"]
    body = b'{"id":"evt_1","event":"sent"}'
    header = signing.header(["whsec_secret"], body)
    assert verify("whsec_secret", header, body)
    assert not verify("whsec_secret", header, body + b" ")
    assert not verify("whsec_other", header, body)
    old = signing.header(["whsec_secret"], body, timestamp=int(time.time()) - 600)
    assert not verify("whsec_secret", old, body)
