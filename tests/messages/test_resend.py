"""Resend: a new linked message, refused for suppressed recipients, audited; bulk with a cap."""
from __future__ import annotations

from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry, JobRun, Message, Template, TemplateVersion
from dashboard.services.bounces import suppressions
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import resend as resend_service

HX = {"HX-Request": "true"}


def resends_of(message):
    """Messages linked to `message` as its resends."""
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.resend_of_id == message.id)))


def test_a_resend_is_a_new_linked_message_with_the_same_content(support_client, make_message):
    """The copy keeps subject and bodies, links to the original, and the original is unchanged."""
    original = make_message(status="failed", attempts=3)
    response = support_client.post(f"/log/{original.public_id}/resend",
                                   data={"note": "ticket #4411"}, headers=HX)
    assert response.status_code == 200
    (copy,) = resends_of(original)
    assert copy.public_id in response.get_data(as_text=True)
    assert (copy.subject, copy.html_body, copy.text_body) == (
        original.subject, original.html_body, original.text_body)
    assert copy.status == "queued" and copy.resent_by.role == "support"
    assert [e.type for e in copy.events] == ["resent", "queued"]
    db.session.refresh(original)
    assert original.status == "failed" and original.attempts == 3
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "message.resend"))
    assert entry.note == "ticket #4411" and entry.target_id == copy.public_id
    assert entry.before == {"original": original.public_id}


def test_a_resend_goes_through_the_normal_queue_and_transport(relay, support_client,
                                                             make_message):
    """The resent message is swept and reaches the relay like any other."""
    original = make_message(status="failed")
    support_client.post(f"/log/{original.public_id}/resend", headers=HX)
    assert sweep().sent == 1
    (received,) = relay.wait_for(1)
    assert received.rcpt_tos == ["mario.rossi@example.com"]
    (copy,) = resends_of(original)
    assert copy.status == "sent"


def test_a_resend_can_re_render_with_the_current_template(support_client, make_message, admin):
    """With 're-render', the copy uses the customer's current override, not the old content."""
    original = make_message()
    template = Template(customer_id=original.customer_id, event="order_closed", language="it")
    db.session.add(template)
    db.session.flush()
    version = TemplateVersion(template_id=template.id, number=1,
                              subject="Nuovo oggetto {{ order_number }}",
                              html="<p>Nuovo testo {{ order_number }}</p>", created_by_id=admin.id)
    db.session.add(version)
    db.session.flush()
    template.current_version_id = version.id
    db.session.commit()
    support_client.post(f"/log/{original.public_id}/resend", data={"rerender": "1"}, headers=HX)
    (copy,) = resends_of(original)
    assert copy.subject == "Nuovo oggetto ORD-2026-000123"
    assert copy.template_source == "override v1" and copy.template_version_id == version.id
    assert original.subject != copy.subject


def test_a_suppressed_recipient_is_refused_with_a_link_to_the_suppression(support_client,
                                                                          make_message):
    """No copy is made; the answer explains the suppression and links to it."""
    original = make_message(status="failed")
    suppressions.suppress("mario.rossi@example.com", "hard_bounce", original.customer,
                          smtp_code="550", diagnostic="5.1.1 user unknown")
    db.session.commit()
    response = support_client.post(f"/log/{original.public_id}/resend", headers=HX)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "hard_bounce" in html and "/suppressions/?q=mario.rossi@example.com" in html
    assert resends_of(original) == []
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "message.resend")) \
        is None
    page = support_client.get(f"/log/{original.public_id}").get_data(as_text=True)
    assert "a resend would be refused" in page


def test_a_resend_from_the_table_updates_the_row_in_place(support_client, make_message):
    """From the log table the answer is the new row above the updated original row."""
    original = make_message()
    response = support_client.post(f"/log/{original.public_id}/resend",
                                   data={"target": "row"}, headers=HX)
    html = response.get_data(as_text=True)
    (copy,) = resends_of(original)
    assert html.count("<tr") == 2
    assert html.index(f'id="msg-{copy.public_id}"') < html.index(f'id="msg-{original.public_id}"')
    log = support_client.get("/log/?q=ORD-2026-000123").get_data(as_text=True)
    assert copy.public_id in log and original.public_id in log


def test_a_refused_resend_from_the_table_keeps_the_row_and_explains(support_client, make_message):
    """Refused from the table: the row stays, followed by the explanation."""
    original = make_message()
    suppressions.suppress("mario.rossi@example.com", "complaint", original.customer)
    db.session.commit()
    response = support_client.post(f"/log/{original.public_id}/resend",
                                   data={"target": "row"}, headers=HX)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert f'id="msg-{original.public_id}"' in html and "log-refused" in html


def test_the_message_page_links_resends_and_their_original(support_client, make_message):
    """The original lists its resends with who resent it; the resend links back."""
    original = make_message()
    support_client.post(f"/log/{original.public_id}/resend")
    (copy,) = resends_of(original)
    page = support_client.get(f"/log/{original.public_id}").get_data(as_text=True)
    assert f"/log/{copy.public_id}" in page and copy.resent_by.email in page
    back = support_client.get(f"/log/{copy.public_id}").get_data(as_text=True)
    assert f"/log/{original.public_id}" in back


def test_bulk_resend_asks_first_with_the_count(support_client, make_message):
    """The confirmation says how many messages of the search would be resent."""
    for _ in range(3):
        make_message(status="failed")
    make_message(status="sent")
    html = support_client.get("/log/bulk-resend?status=failed", headers=HX).get_data(as_text=True)
    assert "3 messages match" in html and "hx-confirm" in html
    assert 'name="status" value="failed"' in html


def wait_for_run(client, run_id):
    """Poll the progress fragment as the browser does until it answers 286."""
    import time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        db.session.rollback()  # requests share the test's session: end its snapshot first
        response = client.get(f"/log/bulk-resend/{run_id}", headers=HX)
        if response.status_code == 286:
            return response
        assert response.status_code == 200 and "every 1s" in response.get_data(as_text=True)
        time.sleep(0.05)
    raise AssertionError("the bulk resend did not finish")


def test_bulk_resend_runs_in_the_background_skips_suppressed_and_reports(
        support_client, make_message, make_customer):
    """Suppressed recipients are skipped and counted; progress polls until 286."""
    customer, _ = make_customer("BULK")
    for i in range(4):
        make_message(customer=customer, to=f"u{i}@example.com", status="failed")
    suppressions.suppress("u0@example.com", "hard_bounce", customer)
    db.session.commit()
    response = support_client.post("/log/bulk-resend", headers=HX, data={
        "customer": str(customer.id), "status": "failed", "from": "", "note": "outage 12:00"})
    assert response.status_code == 200
    run = db.session.scalar(select(JobRun).where(JobRun.job == "bulk_resend"))
    assert run.total == 4
    done = wait_for_run(support_client, run.id)
    assert "3" in done.get_data(as_text=True) and "HX-Trigger" in done.headers
    db.session.expire_all()
    run = db.session.get(JobRun, run.id)
    assert run.status == "ok" and run.progress == 4
    assert run.counts == {"resent": 3, "suppressed": 1, "errors": 0}
    resent = db.session.scalars(select(Message).where(Message.resend_of_id.is_not(None))).all()
    assert sorted(m.recipient for m in resent) == ["u1@example.com", "u2@example.com",
                                                   "u3@example.com"]
    actions = db.session.scalars(select(AuditEntry.action)).all()
    assert actions.count("message.resend") == 3 and actions.count("message.bulk_resend") == 1


def test_bulk_resend_is_capped(support_client, make_customer, insert_messages, monkeypatch):
    """Above the cap only the newest messages are resent, and the confirmation says so."""
    monkeypatch.setattr(resend_service, "BULK_CAP", 5)
    customer, _ = make_customer()
    insert_messages(8, customer, status="failed")
    html = support_client.get("/log/bulk-resend?status=failed", headers=HX).get_data(as_text=True)
    assert "More than 5 messages match" in html
    support_client.post("/log/bulk-resend", headers=HX, data={"status": "failed"})
    run = db.session.scalar(select(JobRun).where(JobRun.job == "bulk_resend"))
    wait_for_run(support_client, run.id)
    resent = db.session.scalars(select(Message).where(Message.resend_of_id.is_not(None))).all()
    assert len(resent) == 5
    originals = {m.resend_of.reference for m in resent}
    assert originals == {f"ORD-2026-{i:06d}" for i in range(3, 8)}  # the newest five


def test_bulk_resend_of_an_empty_search_changes_nothing(support_client):
    """Nothing matches: 422 with an explanation, no job recorded."""
    response = support_client.post("/log/bulk-resend", headers=HX, data={"q": "nothing"})
    assert response.status_code == 422
    assert db.session.scalar(select(JobRun)) is None
