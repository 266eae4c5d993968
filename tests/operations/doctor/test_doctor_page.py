"""The doctor page: asking, reading verdicts, and fixing causes in place by role."""
from __future__ import annotations

import re

from dashboard.extensions import db
from dashboard.models import Message, Suppression, SuppressionRemoval
from dashboard.services.bounces import suppressions
from dashboard.services.core import settings
from dashboard.services.delivery import sending

HTMX = {"HX-Request": "true"}


def test_billing_may_not_use_the_doctor(billing_client):
    """The doctor is for support and admins."""
    assert billing_client.get("/doctor/").status_code == 403


def test_the_empty_doctor_invites_a_question(support_client):
    """Without a question the page shows the form and an empty state."""
    response = support_client.get("/doctor/")
    assert response.status_code == 200
    assert b"Diagnose" in response.data and b'class="empty"' in response.data


def test_a_bad_address_answers_422_beside_the_field(support_client):
    """A malformed address comes back 422 with the error next to the address field."""
    response = support_client.get("/doctor/?address=nonsense", headers=HTMX)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and "field-error" in page
    assert "<html" not in page  # the htmx partial, not the whole page


def test_an_unknown_customer_answers_422(support_client):
    """A customer code that does not exist is a field error."""
    response = support_client.get("/doctor/?address=a@example.com&customer=NOPE")
    assert response.status_code == 422
    assert "Unknown customer NOPE" in response.get_data(as_text=True)


def test_the_page_shows_the_four_causes_and_links_the_messages(support_client, relay,
                                                               make_customer, notify):
    """Every cause is on the page, in order, and the messages read are listed."""
    customer, _ = make_customer()
    message = notify(customer, "anna@example.com")
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    positions = [page.index(f'id="verdict-{cause}"')
                 for cause in ("sending", "spam", "suppression", "temporary")]
    assert positions == sorted(positions)
    assert 'data-cause="spam" data-colour="amber"' in page
    assert message.public_id in page


def test_support_sees_turn_on_only_as_advice(support_client, make_customer, notify):
    """Turning sending on is for admins: support reads 'ask an administrator'."""
    customer, _ = make_customer()
    sending.set_global(False)
    notify(customer, "anna@example.com")
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    assert 'data-cause="sending" data-colour="red"' in page
    assert "ask an administrator" in page and 'action="/doctor/turn-on"' not in page
    assert support_client.post("/doctor/turn-on", data={"scope": "global"}).status_code == 403


def test_an_admin_turns_sending_on_from_the_doctor(admin_client, make_customer, notify):
    """The admin's button turns sending on, releases held mail, and (a) turns green."""
    customer, _ = make_customer()
    sending.set_global(False)
    message = notify(customer, "anna@example.com")
    response = admin_client.post("/doctor/turn-on", headers=HTMX, data={
        "scope": "global", "address": "anna@example.com", "reference": "", "customer": ""})
    assert response.status_code == 200
    assert settings.sending_enabled()
    page = response.get_data(as_text=True)
    assert 'data-cause="sending" data-colour="green"' in page
    assert "banners" in response.headers["HX-Trigger"]
    db.session.refresh(message)
    assert message.status == "queued"


def test_an_admin_resumes_a_paused_customer_from_the_doctor(admin_client, make_customer, notify):
    """Resume from the doctor: the customer is no longer paused; a plain post redirects back."""
    customer, _ = make_customer()
    sending.pause_customer(customer, "auth failures")
    db.session.commit()
    notify(customer, "anna@example.com")
    response = admin_client.post("/doctor/resume", data={
        "code": customer.code, "address": "anna@example.com"})
    assert response.status_code == 302
    assert response.headers["Location"].replace("%40", "@").endswith(
        "/doctor/?address=anna@example.com")
    db.session.refresh(customer)
    assert not customer.paused


def test_support_lifts_a_suppression_from_the_doctor(support_client, make_customer):
    """The lift form records a removal and the verdict for (c) turns green."""
    customer, _ = make_customer()
    entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    assert 'data-cause="suppression" data-colour="red"' in page and "Lift anna@example.com" in page
    response = support_client.post("/doctor/lift", headers=HTMX, data={
        "suppression_id": entry.id, "reason": "mailbox fixed", "requester": customer.code,
        "minutes": "10", "address": "anna@example.com", "reference": "", "customer": ""})
    assert response.status_code == 200
    assert 'data-cause="suppression" data-colour="green"' in response.get_data(as_text=True)
    removal = db.session.scalar(db.select(SuppressionRemoval))
    assert (removal.reason, removal.minutes_spent, removal.customer_id) == (
        "mailbox fixed", 10, customer.id)


def test_a_lift_without_a_reason_answers_422_and_changes_nothing(support_client, make_customer):
    """Missing reason: 422, the error beside the reason, the entry still active."""
    customer, _ = make_customer()
    entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    response = support_client.post("/doctor/lift", headers=HTMX, data={
        "suppression_id": entry.id, "reason": "", "requester": customer.code, "minutes": "3",
        "address": "anna@example.com"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "A reason is required." in page and 'value="3"' in page
    assert db.session.get(Suppression, entry.id).lifted_at is None


def test_a_lift_without_the_requesting_customer_answers_422(support_client, make_customer):
    """The customer who asked is required for every removal."""
    customer, _ = make_customer()
    entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    response = support_client.post("/doctor/lift", headers=HTMX, data={
        "suppression_id": entry.id, "reason": "fixed", "requester": "", "minutes": "3",
        "address": "anna@example.com"})
    assert response.status_code == 422
    assert db.session.get(Suppression, entry.id).lifted_at is None


def test_support_may_not_lift_a_complaint(support_client, make_customer):
    """A complaint is lifted by an admin only."""
    customer, _ = make_customer()
    entry = suppressions.suppress("anna@example.com", "complaint", customer)
    db.session.commit()
    response = support_client.post("/doctor/lift", data={
        "suppression_id": entry.id, "reason": "ok", "requester": customer.code, "minutes": "1"})
    assert response.status_code == 403


def test_lifting_an_unknown_entry_is_404(support_client):
    """An id that does not exist is a 404, not a 500."""
    assert support_client.post("/doctor/lift", data={"suppression_id": "999"}).status_code == 404


def test_support_resends_a_failed_message_once_its_address_is_lifted(
        support_client, fault_relay, make_customer, notify):
    """A refused resend (still suppressed) is 422; after the lift it makes a linked message."""
    fault_relay({"gone@example.com": "550"})
    customer, _ = make_customer()
    original = notify(customer, "gone@example.com")
    assert original.status == "failed"
    page = support_client.get("/doctor/?address=gone@example.com").get_data(as_text=True)
    assert f"Resend {original.public_id}" in page
    form = {"public_id": original.public_id, "address": "gone@example.com"}
    refused = support_client.post("/doctor/resend", headers=HTMX, data=form)
    assert refused.status_code == 422 and "suppression list" in refused.get_data(as_text=True)
    assert db.session.scalar(db.select(Message).where(Message.resend_of_id == original.id)) is None
    entry = db.session.scalar(db.select(Suppression))
    support_client.post("/doctor/lift", headers=HTMX, data={
        "suppression_id": entry.id, "reason": "mailbox recreated", "requester": customer.code,
        "minutes": "5", "address": "gone@example.com"})
    response = support_client.post("/doctor/resend", headers=HTMX, data=form)
    assert response.status_code == 200
    copy = db.session.scalar(db.select(Message).where(Message.resend_of_id == original.id))
    assert copy is not None and copy.status == "queued"
    assert 'data-cause="temporary" data-colour="green"' in response.get_data(as_text=True)
    db.session.refresh(original)
    assert original.status == "failed"


def test_resending_an_unknown_message_is_404(support_client):
    """get-or-404 for public ids."""
    assert support_client.post("/doctor/resend", data={"public_id": "nope"}).status_code == 404


def test_nothing_found_is_said_on_the_page(support_client):
    """An address with no messages: the retention period is named."""
    page = support_client.get("/doctor/?address=nobody@example.com").get_data(as_text=True)
    assert "No message found" in page and "last 30 days" in page


def test_the_doctor_asks_which_customer_when_several_wrote_to_the_address(
        support_client, make_customer, make_user):
    """Two customers wrote to a relay-suppressed address: no customer is pre-selected, both
    are offered first; a repeated removal's form and confirmation say billable and its
    minutes are required (0 refused)."""
    from dashboard.services.messages import intake

    from .conftest import ORDER_DATA

    first, _ = make_customer("ROSSI", "Rossi")
    second, _ = make_customer("VERDI", "Verdi")
    make_customer("BIANCHI", "Bianchi")
    for owner in (first, second):
        intake.enqueue(owner, "order_closed", "anna@example.com", reference="ORD-1",
                         data=ORDER_DATA)
    entry = suppressions.suppress("anna@example.com", "hard_bounce", first)
    db.session.commit()
    suppressions.lift(entry, second, "first time", None, 5, make_user("support"))
    entry = suppressions.suppress("anna@example.com", "hard_bounce", first)
    db.session.commit()
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    form = page.split('class="lift-form"', 1)[1].split("</form>", 1)[0]
    assert "selected" not in form.split('name="requester"', 1)[1].split("</select>", 1)[0]
    senders = form.split("<optgroup", 2)[1]
    assert "Rossi" in senders and "Verdi" in senders and "Bianchi" not in senders
    assert "2 customers wrote to this address" in form
    assert re.search(r'class="lift-form"[^>]*hx-confirm="[^"]*This removal is BILLABLE', page)
    minutes = form.split('name="minutes"', 1)[1].split(">", 1)[0]
    assert 'min="1"' in minutes and "required" in minutes
    response = support_client.post("/doctor/lift", headers=HTMX, data={
        "suppression_id": entry.id, "reason": "again", "requester": "VERDI", "minutes": "0",
        "address": "anna@example.com"})
    assert response.status_code == 422
    assert "minutes spent (more than 0)" in response.get_data(as_text=True)
    assert db.session.get(Suppression, entry.id).lifted_at is None


def test_one_message_read_is_said_in_the_singular(support_client, make_customer, notify):
    """'1 message read', '1 message is queued': plurals follow the number."""
    customer, _ = make_customer()
    notify(customer, "anna@example.com", sweep_now=False)
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    assert "1 message read in the last 30 days." in page
    assert "1 message is queued and will be sent shortly." in page
    assert "1 messages" not in page


def test_a_name_ending_in_a_full_stop_does_not_double_it(app, make_user, login,
                                                          support_client, make_customer,
                                                          notify):
    """'Bianchi Distribuzione S.p.A.' ends the doctor's sentences with one full stop, in
    English and in Italian (where the name ends more sentences)."""
    customer, _ = make_customer("BIANCHI", "Bianchi Distribuzione S.p.A.")
    sending.set_customer(customer, False)
    notify(customer, "anna@example.com", sweep_now=False)
    italian = login(app.test_client(), make_user("support", language="it"))
    for client in (support_client, italian):
        for query in ("address=anna@example.com", "address=nobody@example.com&customer=BIANCHI"):
            page = client.get(f"/doctor/?{query}").get_data(as_text=True)
            assert "S.p.A." in page and "S.p.A.." not in page
    page = support_client.get("/doctor/?address=anna@example.com").get_data(as_text=True)
    assert "Most likely:</strong> Sending is off for Bianchi Distribuzione S.p.A.\n" in page


def test_a_bad_address_is_explained_in_the_users_language(app, make_user, login):
    """The address validator speaks English only: the doctor says it in the user's words."""
    italian = login(app.test_client(), make_user("support", language="it"))
    page = italian.get("/doctor/?address=not-an-address").get_data(as_text=True)
    assert "Inserisci un indirizzo email valido." in page and "@-sign" not in page
