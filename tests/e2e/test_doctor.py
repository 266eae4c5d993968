"""Browser: support asks the doctor about a suppressed address, sees cause (c) in red, lifts
it from the doctor and sees the verdict turn green."""
import re

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.models import SuppressionRemoval
from dashboard.services.bounces import suppressions
from dashboard.services.messages import intake

from ..conftest import PASSWORD
from ..operations.doctor.conftest import ORDER_DATA

pytestmark = pytest.mark.e2e
ADDRESS = "giulia.bianchi@example.org"


def test_support_lifts_a_suppressed_address_from_the_doctor(app, live_server, page, make_user,
                                                            make_customer):
    """Diagnose → (c) red with the entry → a reason-less lift is stopped before the dialog →
    lift with reason, customer and minutes → (c) green, the removal recorded."""
    support = make_user("support", language="en")
    customer, _ = make_customer("ACME", "Acme S.p.A.")
    suppressions.suppress(ADDRESS, "hard_bounce", customer, smtp_code="550",
                          diagnostic="5.1.1 user unknown")
    db.session.commit()
    intake.enqueue(customer, "order_closed", ADDRESS, reference="ORD-42",
                     data=dict(ORDER_DATA, order_number="ORD-42"))
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", support.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")

    page.goto(f"{live_server}/doctor/")
    page.fill("#doctor-address", ADDRESS)
    page.get_by_role("button", name="Diagnose").click()
    expect(page).to_have_url(re.compile(r"address=giulia"))
    verdict = page.locator("#verdict-suppression")
    expect(verdict).to_have_attribute("data-colour", "red")
    expect(verdict).to_contain_text("hard bounce")
    expect(verdict).to_contain_text("550")
    expect(page.locator("#diagnosis table")).to_contain_text("ORD-42")

    form = verdict.locator("form.lift-form")
    form.locator("select[name=requester]").select_option("ACME")
    form.locator("input[name=minutes]").fill("10")
    form.get_by_role("button", name=f"Lift {ADDRESS}").click()
    # the missing reason is said in the page before the confirmation: no dialog, no request
    expect(form.locator("input[name=reason]")).to_have_js_property("validationMessage",
                                                                 "A reason is required.")
    assert dialogs == []
    expect(page.locator("#verdict-suppression")).to_have_attribute("data-colour", "red")

    form = page.locator("#verdict-suppression form.lift-form")
    form.locator("input[name=reason]").fill("mailbox recreated by the customer's IT")
    form.get_by_role("button", name=f"Lift {ADDRESS}").click()
    expect(page.locator("#verdict-suppression")).to_have_attribute("data-colour", "green")
    expect(page.locator("#doctor [role=status]")).to_contain_text("lifted")
    assert any(ADDRESS in message for message in dialogs)

    removal = db.session.scalar(db.select(SuppressionRemoval))
    assert (removal.reason, removal.minutes_spent, removal.customer_id) == (
        "mailbox recreated by the customer's IT", 10, customer.id)


def test_the_doctor_asks_who_requested_a_billable_lift_and_says_billable_before_lifting(
        app, live_server, page, make_user, make_customer):
    """Two customers wrote to the address: none is pre-selected and the page says so; lifting
    without a customer or minutes is stopped before the dialog; the dialog says BILLABLE; the
    removal is billed to the customer chosen."""
    support = make_user("support", language="en")
    rossi, _ = make_customer("ROSSI", "Rossi S.r.l.")
    verdi, _ = make_customer("VERDI", "Verdi Arredamenti")
    for owner in (rossi, verdi):
        intake.enqueue(owner, "order_closed", ADDRESS, reference="ORD-42",
                         data=dict(ORDER_DATA, order_number="ORD-42"))
    entry = suppressions.suppress(ADDRESS, "hard_bounce", rossi)
    db.session.commit()
    suppressions.lift(entry, rossi, "first time", None, 5, support)
    suppressions.suppress(ADDRESS, "hard_bounce", verdi)
    db.session.commit()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", support.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")
    page.goto(f"{live_server}/doctor/?address={ADDRESS}")
    form = page.locator("#verdict-suppression form.lift-form")
    expect(form.locator(".billable-warning")).to_contain_text("billable")
    requester = form.locator("select[name=requester]")
    expect(requester).to_have_value("")
    expect(form).to_contain_text("2 customers wrote to this address")
    form.locator("input[name=reason]").fill("asked again by Verdi")
    form.get_by_role("button", name=f"Lift {ADDRESS}").click()
    expect(requester).to_have_js_property("validationMessage", "Choose the customer who asked.")
    requester.select_option("VERDI")
    form.get_by_role("button", name=f"Lift {ADDRESS}").click()
    expect(form.locator("input[name=minutes]")).to_have_js_property(
        "validationMessage", "A billable removal needs the minutes spent (more than 0).")
    assert dialogs == []
    form.locator("input[name=minutes]").fill("20")
    form.get_by_role("button", name=f"Lift {ADDRESS}").click()
    expect(page.locator("#verdict-suppression")).to_have_attribute("data-colour", "green")
    assert len(dialogs) == 1 and "BILLABLE" in dialogs[0]
    db.session.expire_all()
    removal = db.session.scalars(db.select(SuppressionRemoval).order_by(
        SuppressionRemoval.id.desc())).first()
    assert (removal.customer_id, removal.billable, removal.minutes_spent) == (verdi.id, True, 20)
