"""Browser: support finds a suppressed address, lifts it with a reason, and on a second lift
sees — before confirming — that the removal is billable."""
import re

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.models import SuppressionRemoval
from dashboard.services.bounces import reports
from dashboard.services.messages import intake

from ..bounces.conftest import ORDER_DATA, report
from .helpers import log_in

ADDRESS = "mario.rossi@example.org"

pytestmark = pytest.mark.e2e


def hard_bounce(customer) -> None:
    """A message to ADDRESS and a hard-bounce report for it, through intake."""
    [message] = intake.enqueue(customer, "order_closed", ADDRESS, reference="ORD-1",
                                 data=ORDER_DATA)
    reports.ingest(message.public_id, report("postfix_hard.eml", message))


def test_support_lifts_an_address_and_sees_the_billable_warning_on_a_second_lift(
        app, live_server, page, make_user, make_customer):
    """Search → Lift in place with a reason → lifted; suppressed again → the second lift
    form and its confirmation both say billable."""
    support = make_user("support", language="en")
    customer, _ = make_customer("ACME", "Acme S.p.A.")
    hard_bounce(customer)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    log_in(page, live_server, support.email)

    page.goto(f"{live_server}/suppressions/")
    page.fill("#suppressions-q", "rossi@example")
    expect(page).to_have_url(re.compile(r"q=rossi"))  # the active search has answered
    row = page.locator("tr.suppression-row", has_text=ADDRESS)
    expect(row).to_be_visible()
    expect(row).to_contain_text("Hard bounce")
    row.get_by_role("button", name="Lift").click()

    form = page.locator("tr.suppression-lift form")
    expect(form.locator(".not-billable")).to_be_visible()
    expect(form.locator("select[name=customer]")).to_have_value(str(customer.id))
    form.locator("input[name=reason]").fill("")
    form.locator("input[name=minutes]").fill("10")
    form.get_by_role("button", name="Lift").click()
    # checked in the page before the confirmation: no dialog, no request
    expect(form.locator("input[name=reason]")).to_have_js_property("validationMessage",
                                                                 "A reason is required.")
    assert dialogs == []
    form.locator("input[name=reason]").fill("mailbox recreated by the customer's IT")
    form.locator("input[name=ticket]").fill("T-100")
    form.get_by_role("button", name="Lift").click()
    lifted = page.locator("tr.suppression-row", has_text=ADDRESS)
    expect(lifted).to_contain_text("lifted")
    assert dialogs and "BILLABLE" not in dialogs[-1]

    hard_bounce(customer)  # the address bounces again
    page.goto(f"{live_server}/suppressions/?q={ADDRESS}")
    row = page.locator("tr.suppression-row", has_text=ADDRESS)
    expect(row).to_contain_text("repeatedly suppressed")
    row.get_by_role("button", name="Lift").click()
    form = page.locator("tr.suppression-lift form")
    expect(form.locator(".billable-warning")).to_contain_text("Billable")
    expect(form.locator(".billable-warning")).to_contain_text("T-100")
    form.locator("input[name=reason]").fill("asked again")
    asked = len(dialogs)
    form.get_by_role("button", name="Lift (billable)").click()  # minutes left empty
    expect(form.locator("input[name=minutes]")).to_have_js_property(
        "validationMessage", "A billable removal needs the minutes spent (more than 0).")
    assert len(dialogs) == asked
    form.locator("input[name=minutes]").fill("30")
    form.get_by_role("button", name="Lift (billable)").click()
    expect(page.locator("tr.suppression-row", has_text=ADDRESS)).to_contain_text("billable")
    assert "BILLABLE" in dialogs[-1]

    db.session.expire_all()
    removals = db.session.scalars(db.select(SuppressionRemoval).order_by(
        SuppressionRemoval.id)).all()
    assert [(r.billable, r.minutes_spent) for r in removals] == [(False, 10), (True, 30)]
