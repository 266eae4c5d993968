"""The Suppressions page: search, reasons and evidence, manual add, lift in place."""
from __future__ import annotations

from dashboard.extensions import db
from dashboard.models import AuditEntry, BounceReport, Suppression, SuppressionRemoval
from dashboard.services.bounces import suppressions

HX = {"HX-Request": "true"}


def entry_for(address="mario.rossi@example.org"):
    """The active relay entry for an address."""
    return suppressions.active_entry(address, "relay", None)


def test_the_page_is_for_support_and_admin_only(client, support_client, billing_client, login,
                                                make_user, app):
    """Anonymous → login, billing → 403, support → 200."""
    assert client.get("/suppressions/").status_code == 302
    assert billing_client.get("/suppressions/").status_code == 403
    assert support_client.get("/suppressions/").status_code == 200


def test_search_by_address_shows_reason_evidence_and_links(support_client, bounce):
    """An entry shows its reason, code, the report linked to its message and raw report."""
    message = bounce("postfix_hard.eml")
    bounce("success_dsn.eml", "other@example.org")
    page = support_client.get("/suppressions/?q=Mario.Rossi@example.org").get_data(as_text=True)
    assert "mario.rossi@example.org" in page and "5.1.1" in page
    assert f"/log/{message.public_id}" in page
    report = db.session.scalar(db.select(BounceReport).where(BounceReport.kind == "hard"))
    assert f"/suppressions/reports/{report.id}" in page
    raw = support_client.get(f"/suppressions/reports/{report.id}").get_data(as_text=True)
    assert "Recipient address rejected" in raw


def test_htmx_search_answers_only_the_results(support_client, bounce):
    """Active search swaps the results: no page chrome, filtered by domain and reason."""
    bounce("postfix_hard.eml", "a@one.example")
    bounce("arf_complaint.eml", "b@one.example")
    response = support_client.get("/suppressions/?q=one.example&reason=complaint", headers=HX)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in body
    assert "b@one.example" in body and "a@one.example" not in body


def test_a_bad_date_filter_answers_422_beside_the_field(support_client):
    """An invalid date is refused with its error, and nothing is listed."""
    response = support_client.get("/suppressions/?since=yesterday")
    assert response.status_code == 422 and "YYYY-MM-DD" in response.get_data(as_text=True)


def test_an_unknown_address_says_it_is_not_suppressed(support_client):
    """The empty state tells support the list does not stop that address."""
    body = support_client.get("/suppressions/?q=nobody@example.org").get_data(as_text=True)
    assert "nobody@example.org" in body and "not stopped" in body


def test_staff_add_an_address_by_hand(support_client):
    """Manual add with a reason; without one: 422 and nothing stored."""
    response = support_client.post("/suppressions/", data={"address": "x@example.org",
                                                           "reason": "", "scope": "relay"})
    assert response.status_code == 422 and "A reason is required" in response.get_data(
        as_text=True)
    assert db.session.scalar(db.select(db.func.count(Suppression.id))) == 0
    response = support_client.post("/suppressions/", data={
        "address": "X@Example.org", "reason": "customer asked", "scope": "relay"})
    assert response.status_code == 302
    assert entry_for("x@example.org").reason == "manual"


def test_the_lift_form_preselects_the_customer_of_the_latest_message(support_client, bounce,
                                                                     customer):
    """GET lift answers the form row with the requesting customer selected."""
    bounce("postfix_hard.eml")
    entry = entry_for()
    body = support_client.get(f"/suppressions/{entry.id}/lift", headers=HX).get_data(
        as_text=True)
    assert f'<option value="{customer.id}" selected>' in body
    assert "Not billable" in body and 'hx-target="closest tr"' in body


def test_lifting_without_a_reason_answers_422_and_changes_nothing(support_client, bounce,
                                                                  customer):
    """The form comes back with the error beside the field; the entry stays."""
    bounce("postfix_hard.eml")
    entry = entry_for()
    response = support_client.post(f"/suppressions/{entry.id}/lift", headers=HX,
                                    data={"customer": customer.id, "reason": " ",
                                          "minutes": "5"})
    assert response.status_code == 422
    assert "A reason is required" in response.get_data(as_text=True)
    assert entry_for() is not None
    assert db.session.scalar(db.select(db.func.count(SuppressionRemoval.id))) == 0


def test_lifting_in_place_answers_the_row_and_audits(support_client, bounce, customer):
    """A lift answers the updated row (lifted), stores the removal and audits it."""
    bounce("postfix_hard.eml")
    entry = entry_for()
    response = support_client.post(f"/suppressions/{entry.id}/lift", headers=HX, data={
        "customer": customer.id, "reason": "user fixed the mailbox", "ticket": "T-42",
        "minutes": "15"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and body.lstrip().startswith("<tr")
    assert "lifted" in body and "suppression-lifted" in response.headers["HX-Trigger"]
    removal = db.session.scalar(db.select(SuppressionRemoval))
    assert (removal.ticket, removal.minutes_spent, removal.billable) == ("T-42", 15, False)
    assert db.session.scalar(db.select(AuditEntry).where(
        AuditEntry.action == "suppression.lift")).note == "user fixed the mailbox"


def test_the_lift_dialog_says_billable_before_confirming(support_client, bounce, customer,
                                                         make_user):
    """After a first removal, the second lift form warns that it is billable."""
    bounce("postfix_hard.eml")
    suppressions.lift(entry_for(), customer, "first", "T-1", 5, make_user("support"))
    bounce("postfix_hard.eml")
    entry = entry_for()
    page = support_client.get("/suppressions/?q=mario.rossi@example.org").get_data(as_text=True)
    assert "repeatedly suppressed" in page
    body = support_client.get(f"/suppressions/{entry.id}/lift", headers=HX).get_data(
        as_text=True)
    assert "billable-warning" in body and "T-1" in body and "BILLABLE" in body
    support_client.post(f"/suppressions/{entry.id}/lift", headers=HX, data={
        "customer": customer.id, "reason": "again", "minutes": "30"})
    assert db.session.scalar(db.select(SuppressionRemoval).order_by(
        SuppressionRemoval.id.desc())).billable


def test_the_billable_warning_says_what_its_number_is(support_client, bounce, customer,
                                                       make_user):
    """The earlier removal's ticket is named as a ticket, in the warning and the history,
    never a bare "(4711)"."""
    bounce("postfix_hard.eml")
    suppressions.lift(entry_for(), customer, "mailbox fixed", "4711", 5, make_user("support"))
    bounce("postfix_hard.eml")
    entry = entry_for()
    body = support_client.get(f"/suppressions/{entry.id}/lift", headers=HX).get_data(
        as_text=True)
    assert "(ticket 4711)" in body and "(4711)" not in body
    page = support_client.get("/suppressions/?q=mario.rossi@example.org&state=all").get_data(
        as_text=True)
    assert "mailbox fixed (ticket 4711)" in page


def test_support_cannot_lift_a_complaint_but_an_admin_can(support_client, admin_client, bounce,
                                                          customer):
    """Complaint entries: 403 for support (no Lift button), lifted by an admin."""
    bounce("arf_complaint.eml")
    entry = entry_for()
    page = support_client.get("/suppressions/").get_data(as_text=True)
    assert "lifted by an admin" in page
    assert support_client.get(f"/suppressions/{entry.id}/lift", headers=HX).status_code == 403
    data = {"customer": customer.id, "reason": "asked", "minutes": "5"}
    assert support_client.post(f"/suppressions/{entry.id}/lift", data=data).status_code == 403
    assert entry_for() is not None
    assert admin_client.post(f"/suppressions/{entry.id}/lift", data=data,
                             headers=HX).status_code == 200
    assert entry_for() is None


def test_a_missing_entry_is_404(support_client):
    """Unknown ids answer 404, never 500."""
    assert support_client.get("/suppressions/999/lift").status_code == 404
    assert support_client.get("/suppressions/reports/999").status_code == 404


def test_a_billable_lift_form_requires_minutes_and_the_server_refuses_none(
        support_client, bounce, customer, make_user):
    """The billable form marks minutes required (min 1, with its message, checked before the
    confirmation by app.js); posted without them it answers 422 beside the field."""
    bounce("postfix_hard.eml")
    suppressions.lift(entry_for(), customer, "first", "T-1", 5, make_user("support"))
    bounce("postfix_hard.eml")
    entry = entry_for()
    body = support_client.get(f"/suppressions/{entry.id}/lift", headers=HX).get_data(
        as_text=True)
    minutes = body.split('name="minutes"', 1)[1].split(">", 1)[0]
    assert 'min="1"' in minutes and "required" in minutes and "data-invalid-message" in minutes
    response = support_client.post(f"/suppressions/{entry.id}/lift", headers=HX, data={
        "customer": customer.id, "reason": "again", "minutes": ""})
    assert response.status_code == 422
    assert "minutes spent (more than 0)" in response.get_data(as_text=True)
    assert entry_for() is not None
