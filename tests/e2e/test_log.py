"""Browser: support types an order number, sees the row, opens it, resends, sees the new row."""
import re

import pytest
from playwright.sync_api import expect

from dashboard.notifications import CATALOG
from dashboard.services.messages import intake

from .helpers import log_in

pytestmark = pytest.mark.e2e


def order(customer, reference: str, to: str):
    """An order_closed notification through the real ingest."""
    data = dict(CATALOG["order_closed"]["sample"], order_number=reference)
    (message,) = intake.enqueue(customer, "order_closed", to, reference, "it", data)
    return message


def test_support_finds_an_order_opens_it_resends_and_sees_the_new_row(
        app, live_server, page, make_user, make_customer):
    """Active search by order number → row → message page → Resend → a second row."""
    support = make_user("support", language="en")
    customer, _ = make_customer("ACME", "Acme S.p.A.")
    wanted = order(customer, "ORD-2026-000123", "mario.rossi@example.com")
    order(customer, "ORD-2026-000999", "anna.bianchi@example.com")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    log_in(page, live_server, support.email)

    page.goto(f"{live_server}/log/")
    page.fill("#log-q", " ord-2026-000123")
    expect(page).to_have_url(re.compile(r"q=(%20|\+)?ord-2026-000123"))  # hx-push-url after the search
    rows = page.locator("#log-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("mario.rossi@example.com")
    expect(page.locator("#log-summary")).to_contain_text("1 message")

    rows.first.get_by_role("link").click()
    # the message remembers the search it was opened from ("← Log" goes back to it)
    page.wait_for_url(re.compile(rf"/log/{wanted.public_id}\?back=/log/\?q%3D"))
    expect(page.locator("iframe.preview")).to_have_attribute("sandbox", "allow-same-origin")
    page.fill("input[name=note]", "ticket 4411")
    page.locator("#resends button[type=submit]").click()
    expect(page.locator("#resends")).to_contain_text("Resent as a new message")
    assert dialogs and "mario.rossi@example.com" in dialogs[0]

    page.goto(f"{live_server}/log/?q=ORD-2026-000123")
    expect(page.locator("#log-rows tr")).to_have_count(2)
    expect(page.locator("#log-rows tr").first).to_contain_text("resend")


def test_a_resend_from_the_table_adds_the_row_in_place(app, live_server, page, make_user,
                                                      make_customer):
    """The row's Resend button puts the new message above the original without a reload."""
    support = make_user("support", language="en")
    customer, _ = make_customer("ACME", "Acme S.p.A.")
    order(customer, "ORD-2026-000555", "luca@example.com")
    page.on("dialog", lambda d: d.accept())
    log_in(page, live_server, support.email)
    page.goto(f"{live_server}/log/?q=ORD-2026-000555")
    expect(page.locator("#log-rows tr")).to_have_count(1)
    page.locator("#log-rows tr").first.get_by_role("button", name="Resend").click()
    expect(page.locator("#log-rows tr")).to_have_count(2)
    expect(page.locator("#log-rows tr.log-new")).to_contain_text("luca@example.com")
