"""Each of the six notifications, end to end: API → sweep → the message at the relay."""
import base64

import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import EVENTS, Message
from dashboard.services.core import settings
from dashboard.services.delivery import verp
from dashboard.services.delivery.sweep import sweep

from .conftest import sample

REGISTRATION = "registration@postino.example.com"
NOTIFICATION = "notification@postino.example.com"
PDF = b"%PDF-1.4\n% a tiny test document\n" + bytes(range(256))


@pytest.mark.parametrize("event", EVENTS)
def test_every_event_arrives_with_the_right_headers_and_both_parts(event, relay, make_customer,
                                                                   api_post):
    """API → sweep → relay: From by event, signed VERP sender, Message-ID, text and HTML."""
    _, key = make_customer()
    body = {"event": event, "to": "Buyer@Example.com", "reference": "REF-42",
            "language": "en", "data": sample(event)}
    if event == "document_sent":
        body["attachments"] = [{"filename": "listino.pdf", "content_type": "application/pdf",
                                "content": base64.b64encode(PDF).decode()}]
    response = api_post(key, body)
    assert response.status_code == 202, response.json
    [item] = response.json["messages"]
    assert item["status"] == "queued" and item["to"] == "buyer@example.com"

    assert sweep().sent == 1
    [got] = relay.wait_for(1)
    message = db.session.scalar(select(Message).where(Message.public_id == item["id"]))
    assert got.rcpt_tos == ["buyer@example.com"]
    assert got.mail_from == verp.address_for(message.public_id)
    assert verp.parse(got.mail_from) == message.public_id
    parsed = got.message
    expected_from = REGISTRATION if event in ("user_invitation", "password_reset") else NOTIFICATION
    assert parsed["From"].addresses[0].addr_spec == expected_from
    assert parsed["To"].addresses[0].addr_spec == "buyer@example.com"
    assert parsed["Message-ID"] == f"<{message.public_id}@bounces.postino.example.com>"
    assert parsed["Subject"] == message.subject and parsed["Subject"]
    text = parsed.get_body(preferencelist=("plain",))
    html = parsed.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() and "<html" in html.get_content().lower()
    files = list(parsed.iter_attachments())
    if event == "document_sent":
        [attachment] = files
        assert attachment.get_filename() == "listino.pdf"
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_content() == PDF
    else:
        assert files == []
    assert message.status == "sent" and message.attempts == 1
    assert [e.type for e in message.events] == ["queued", "sent"]
    assert message.events[-1].smtp_code == 250


def test_one_message_per_recipient_each_with_its_own_envelope(relay, make_customer, api_post):
    """Three recipients make three messages, three envelopes, three Message-IDs."""
    _, key = make_customer()
    response = api_post(key, {"event": "order_closed", "to": ["a@example.com", "b@example.com",
                                                             "A@example.com", "c@example.com"],
                              "data": sample("order_closed")})
    assert response.status_code == 202
    ids = [m["id"] for m in response.json["messages"]]
    assert len(ids) == 3  # a@ and A@ are one address
    assert sweep().sent == 3
    got = relay.wait_for(3)
    assert sorted(r.rcpt_tos[0] for r in got) == ["a@example.com", "b@example.com",
                                                  "c@example.com"]
    assert {verp.parse(r.mail_from) for r in got} == set(ids)
    assert len({r.message["Message-ID"] for r in got}) == 3


def test_the_api_shows_the_timeline_after_sending(relay, make_customer, api_post, client):
    """GET returns status, attempts and the timeline with the SMTP answer."""
    _, key = make_customer()
    [item] = api_post(key, {"event": "password_reset", "to": "u@example.com",
                            "data": sample("password_reset")}).json["messages"]
    sweep()
    response = client.get(f"/api/v1/notifications/{item['id']}",
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "sent" and body["attempts"] == 1 and body["event"] == "password_reset"
    assert [e["type"] for e in body["events"]] == ["queued", "sent"]
    assert body["events"][-1]["smtp_code"] == 250


def test_a_sweep_reuses_each_lanes_connection_for_the_whole_batch(relay, make_customer,
                                                                   api_post):
    """Twenty messages through the relay travel over at most one SMTP session per lane:
    one session with one lane, at most eight (the default) otherwise."""
    _, key = make_customer()
    sessions = []
    original = relay.handler.handle_EHLO

    async def counting_ehlo(server, session, envelope, hostname, responses):
        sessions.append(session)
        return await original(server, session, envelope, hostname, responses)

    relay.handler.handle_EHLO = counting_ehlo
    for lanes, most in ((1, 1), (8, 8)):
        settings.put("relay_lanes", lanes)
        sessions.clear()
        api_post(key, {"event": "order_closed", "to": [f"u{i}@example.com" for i in range(20)],
                       "data": sample("order_closed")})
        assert sweep().sent == 20
        assert 1 <= len({id(s) for s in sessions}) <= most
