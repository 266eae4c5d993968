"""The message page: headers sent, mode, template, content, attachments and the timeline."""
from __future__ import annotations

import base64
from datetime import timedelta

from dashboard.models import utcnow
from dashboard.services.core import timeline
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake


def test_the_message_page_shows_what_was_actually_sent(relay, support_client, make_customer):
    """After a real send: From, envelope sender, To, Subject, Message-ID, mode and timeline."""
    customer, _ = make_customer("ACME")
    from dashboard.notifications import CATALOG
    (message,) = intake.enqueue(customer, "order_closed", "mario.rossi@example.com",
                                  "ORD-2026-000123", "it", dict(CATALOG["order_closed"]["sample"]))
    assert sweep().sent == 1
    relay.wait_for(1)
    html = support_client.get(f"/log/{message.public_id}").get_data(as_text=True)
    for expected in (message.from_header, message.envelope_from, "mario.rossi@example.com",
                     message.message_id_header, message.subject, "badge-sent"):
        assert expected.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;") in html \
            or expected in html, expected
    assert 'sandbox="allow-same-origin"' in html and "srcdoc=" in html  # never allow-scripts
    assert "250" in html  # the relay's answer on the timeline
    assert "default" in html  # template version: the default template
    assert "30" in html and "retention" in html


def test_retry_times_and_smtp_answers_are_on_the_timeline(support_client, make_message):
    """A deferred attempt shows its SMTP code, text and when the next attempt is due."""
    message = make_message(status="deferred", attempts=1)
    next_at = utcnow() + timedelta(minutes=5)
    timeline.add_event(message, "deferred", code=451, text="4.7.1 Try again later",
                       data={"next_attempt_at": next_at.isoformat()})
    from dashboard.extensions import db
    db.session.commit()
    html = support_client.get(f"/log/{message.public_id}").get_data(as_text=True)
    assert "451" in html and "4.7.1 Try again later" in html
    assert next_at.strftime("%Y-%m-%d %H:%M") in html


def test_attachments_are_listed(support_client, make_customer):
    """A document_sent message lists its attachment with type and size."""
    customer, _ = make_customer()
    from dashboard.notifications import CATALOG
    (message,) = intake.enqueue(
        customer, "document_sent", "anna@example.com", "DOC-1", "it",
        dict(CATALOG["document_sent"]["sample"]),
        [{"filename": "Offerta.pdf", "content_type": "application/pdf",
          "content": base64.b64encode(b"%PDF-1.4 fake").decode()}])
    html = support_client.get(f"/log/{message.public_id}").get_data(as_text=True)
    assert "Offerta.pdf" in html and "application/pdf" in html


def test_an_unknown_or_purged_message_is_404_with_the_retention_note(support_client):
    """A message id that is not (or no longer) there answers 404 and says why it may be gone."""
    response = support_client.get("/log/0123456789abcdef01234567")
    assert response.status_code == 404
    assert "30" in response.get_data(as_text=True)


def test_the_api_never_shows_another_customers_message(client, make_customer, make_message):
    """GET /api/v1/notifications/<id> with another customer's key answers 404."""
    owner, owner_key = make_customer("OWNER")
    _, other_key = make_customer("OTHER")
    message = make_message(customer=owner)
    url = f"/api/v1/notifications/{message.public_id}"
    assert client.get(url, headers={"Authorization": f"Bearer {owner_key}"}).status_code == 200
    response = client.get(url, headers={"Authorization": f"Bearer {other_key}"})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_a_customer_test_email_is_recorded_as_a_test(relay, admin_client, make_customer,
                                                     make_message):
    """The customer page's test email borrows document_sent: the Log and the message page
    show it as a test email, a real document_sent message not; a resend stays a test."""
    from sqlalchemy import select

    from dashboard.extensions import db
    from dashboard.models import Message
    from dashboard.services.messages import resend

    customer, _ = make_customer("ACME")
    make_message(customer=customer, event="document_sent", reference="DOC-1",
                 to="real@example.com")
    admin_client.post("/customers/ACME/test-email", data={"to": "me@example.com"},
                      headers={"HX-Request": "true"})
    test = db.session.scalar(select(Message).where(Message.recipient == "me@example.com"))
    real = db.session.scalar(select(Message).where(Message.recipient == "real@example.com"))
    assert test.test is True and real.test is False
    rows = admin_client.get("/log/?event=document_sent").get_data(as_text=True)
    assert rows.count("badge-test") == 1
    row = rows[rows.index(f'id="msg-{test.public_id}"'):]
    assert "test email" in row[:row.index("</tr>")]
    page = admin_client.get(f"/log/{test.public_id}").get_data(as_text=True)
    assert page.count('class="badge badge-test"') == 2  # beside the status and the event
    assert "badge-test" not in admin_client.get(f"/log/{real.public_id}").get_data(as_text=True)
    assert resend.resend(test, None).test is True


def test_back_to_the_log_returns_to_the_search_the_user_came_from(support_client,
                                                                  make_message):
    """A message opened from a search links back to that very search; a `back` that is not
    a Log search on this site is ignored (plain Log)."""
    import html as html_module
    import re

    message = make_message(reference="ORD-2026-000777", status="failed")
    listing = support_client.get("/log/?q=ORD-2026-000777&status=failed").get_data(
        as_text=True)
    link = html_module.unescape(re.search(
        rf'href="(/log/{message.public_id}\?back=[^"]+)"', listing).group(1))
    page = support_client.get(link).get_data(as_text=True)
    assert 'href="/log/?q=ORD-2026-000777&amp;status=failed">← Log' in page
    fragment = support_client.get("/log/?q=ORD-2026", headers={"HX-Request": "true"})
    assert "?back=/log/?q%3DORD-2026" in fragment.get_data(as_text=True)  # the htmx search
    for foreign in ("https://evil.example/log/?q=x", "//evil.example/log/", "/users/",
                    "/log/\\evil", "javascript:alert(1)"):
        page = support_client.get(f"/log/{message.public_id}",
                                  query_string={"back": foreign}).get_data(as_text=True)
        assert 'href="/log/">← Log' in page, foreign


def test_the_timeline_speaks_the_readers_language(app, make_user, login, make_customer):
    """Held, then released when sending is turned back on: steps and details in Italian."""
    from dashboard.notifications import CATALOG
    from dashboard.services.delivery import sending

    customer, _ = make_customer("NERI", "Neri")
    sending.set_customer(customer, False)
    [message] = intake.enqueue(customer, "order_closed", "a@example.com", "ORD-5", "it",
                                 dict(CATALOG["order_closed"]["sample"], order_number="ORD-5"))
    sending.set_customer(customer, True)
    italian = login(app.test_client(), make_user("support", language="it"))
    html = italian.get(f"/log/{message.public_id}").get_data(as_text=True)
    assert "invio disattivato per il cliente NERI" in html  # the held step's detail
    assert ">rilasciato<" in html and "invio riattivato" in html  # the released step
    assert ">released<" not in html and "sending turned back on" not in html
