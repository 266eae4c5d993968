"""Open tracking: the pixel goes out with HTML mail at send time; opens are recorded once."""
from __future__ import annotations

import re
import time

from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import Message, MessageEvent
from dashboard.services.delivery import pixel
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake
from dashboard.services.operations import tracking

DATA = {"order_number": "ORD-7", "order_date": "1/1/2026", "total": "€ 5",
        "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/7"}


def _html_part(received) -> str:
    """The decoded HTML alternative of a received message."""
    for part in received.message.walk():
        if part.get_content_type() == "text/html":
            return part.get_content()
    raise AssertionError("no HTML part")


def test_sent_html_mail_carries_a_signed_pixel_and_the_stored_body_does_not(relay, make_customer):
    """The relay sees the pixel at POSTINO_PUBLIC_URL/o/<token>.gif; the stored HTML is unchanged."""
    customer = make_customer()[0]
    [message] = intake.enqueue(customer, "order_closed", "buyer@example.com", "ORD-7", "it", DATA)
    assert sweep().sent == 1
    [got] = relay.wait_for(1)
    html = _html_part(got)
    [url] = re.findall(r'<img src="(http://postino\.example\.com/o/[^"]+\.gif)"', html)
    token = url.rsplit("/", 1)[1][:-len(".gif")]
    assert pixel.public_id_for(token) == message.public_id
    assert ".gif" not in db.session.get(Message, message.id).html_body


def test_no_pixel_when_the_customer_turned_open_tracking_off(relay, make_customer):
    """A customer with open tracking off gets plain HTML."""
    customer = make_customer(open_tracking=False)[0]
    intake.enqueue(customer, "order_closed", "buyer@example.com", "ORD-7", "it", DATA)
    assert sweep().sent == 1
    [got] = relay.wait_for(1)
    assert "postino.example.com/o/" not in _html_part(got)


def test_first_open_sets_opened_at_and_one_event_later_opens_only_count(client, make_customer):
    """Three fetches of the pixel: one 'opened' event, opened_at set once, open_count 3."""
    customer = make_customer()[0]
    [message] = intake.enqueue(customer, "order_closed", "buyer@example.com", "ORD-7", "it",
                                 DATA)
    message.status = "sent"
    db.session.commit()
    url = "/o/" + pixel.token_for(message) + ".gif"
    first = client.get(url)
    assert first.status_code == 200 and first.mimetype == "image/gif"
    assert first.data == tracking.PIXEL_GIF
    assert "no-store" in first.headers["Cache-Control"]
    db.session.expire_all()
    opened_at = db.session.get(Message, message.id).opened_at
    assert opened_at is not None
    client.get(url)
    client.get(url)
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.opened_at == opened_at and message.open_count == 3
    assert message.status == "opened"
    events = db.session.scalars(select(MessageEvent.type).where(
        MessageEvent.message_id == message.id, MessageEvent.type == "opened")).all()
    assert events == ["opened"]


def test_a_bad_token_still_gets_the_gif_quickly_and_stores_nothing(client, make_customer):
    """Forged, mangled or unknown tokens: the same GIF, no change in the database."""
    customer = make_customer()[0]
    [message] = intake.enqueue(customer, "order_closed", "buyer@example.com", "ORD-7", "it",
                                 DATA)
    good = pixel.token_for(message)
    forged = message.public_id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    events_before = db.session.scalar(select(func.count(MessageEvent.id)))
    for token in (forged, good[:-2] + "xx", "nothing", "a" * 500, good.split(".")[0]):
        started = time.monotonic()
        response = client.get(f"/o/{token}.gif")
        assert time.monotonic() - started < 0.5
        assert response.status_code == 200 and response.data == tracking.PIXEL_GIF
        assert "no-store" in response.headers["Cache-Control"]
    db.session.expire_all()
    message = db.session.get(Message, message.id)
    assert message.opened_at is None and message.open_count == 0
    assert db.session.scalar(select(func.count(MessageEvent.id))) == events_before


def test_tokens_are_not_enumerable(make_customer):
    """Two messages' tokens share nothing guessable beyond their random public ids."""
    customer = make_customer()[0]
    a, b = intake.enqueue(customer, "order_closed", ["a@example.com", "b@example.com"],
                            "ORD-7", "it", DATA)
    token_a, token_b = pixel.token_for(a), pixel.token_for(b)
    assert token_a.split(".")[1] != token_b.split(".")[1]
    assert len(a.public_id) >= 24 and pixel.public_id_for(token_a) == a.public_id
    swapped = b.public_id + "." + token_a.split(".")[1]
    assert pixel.public_id_for(swapped) is None


def test_the_pixel_needs_no_login_and_no_csrf(app, client, make_customer):
    """An anonymous GET with CSRF on is answered with the image, not a login redirect."""
    app.config["WTF_CSRF_ENABLED"] = True
    response = client.get("/o/whatever.gif")
    assert response.status_code == 200 and response.mimetype == "image/gif"
