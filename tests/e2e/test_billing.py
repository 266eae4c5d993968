"""Browser: an admin's change of a customer's sending mode becomes a billable intervention that
the billing staff find under its month, open (a URL that survives reload and Back), export and
invoice; a billable change without minutes is refused before anything is saved; a waiver keeps
its reason."""
import csv
import re
from datetime import date

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import ConfigurationIntervention
from dashboard.services.billing import interventions

from .helpers import log_in

pytestmark = pytest.mark.e2e
PASSWORD = "Verdi-SMTP-Secret-31"


def fill_customer_smtp(page) -> None:
    """Choose customer_smtp and type its fields (the server is never contacted on save)."""
    page.check("input[name=sending_mode][value=customer_smtp]")
    expect(page.locator("#f-smtp_host")).to_be_visible()
    expect(page.locator("#intervention-fields")).to_contain_text("Billable")
    page.fill("#f-from_address", "notifiche@verdi.example")
    page.fill("#f-from_name", "Verdi Arredamenti")
    page.fill("#f-smtp_host", "smtp.verdi.example")
    page.fill("#f-smtp_port", "587")
    page.select_option("#f-smtp_auth", "login")
    page.fill("#f-smtp_username", "notifiche@verdi.example")
    page.fill("#f-smtp_password", PASSWORD)


def test_admin_switches_to_customer_smtp_and_billing_finds_exports_and_invoices_it(
        app, live_server, page, browser, make_user, make_customer, tmp_path):
    """Minutes, ticket and the estimate go with the change; billing sees the month's figures,
    opens the list (reload and Back keep the URL's state), downloads the CSV (no password)
    and marks it invoiced."""
    admin = make_user("admin", language="en")
    clerk = make_user("billing", language="en")
    customer, _ = make_customer("VERDI", "Verdi Arredamenti")
    interventions.add_estimate(customer, "", "60", "150", "own SMTP set-up", admin)
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    fill_customer_smtp(page)
    expect(page.locator("#f-estimate")).to_contain_text("own SMTP set-up")
    page.fill("#f-minutes", "45")
    page.fill("#f-ticket", "T-5120")
    page.click("#save-settings")
    settings = page.locator("#customer-settings")
    expect(settings).to_contain_text("Billable intervention recorded: 45 min.")
    expect(settings).to_contain_text("60 min")
    panel = page.locator("#customer-interventions")  # refreshed by the save's event
    expect(panel.locator("tbody tr").first).to_contain_text("T-5120")
    expect(panel.locator(".estimates")).to_contain_text("used")
    assert PASSWORD not in page.content()

    context = browser.new_context(accept_downloads=True)
    billing = context.new_page()
    log_in(billing, live_server, clerk.email)
    billing.goto(f"{live_server}/billing/")
    month = date.today().strftime("%Y-%m")
    row = billing.locator(".interventions-summary tbody tr", has_text="Verdi Arredamenti")
    expect(row).to_contain_text(month)
    expect(row.locator("td").nth(4)).to_have_text("45")
    figure = row.get_by_role("link", name=re.compile(
        r"^1 intervention, 1 billable, Verdi Arredamenti, \w+ \d{4}$"))
    figure.click()
    expect(billing).to_have_url(re.compile(r"show=interventions"))
    detail = billing.locator("#billing-detail")
    expect(detail).to_contain_text("T-5120")
    expect(detail).to_contain_text("own SMTP set-up")
    billing.reload()
    expect(billing.locator("#billing-detail")).to_contain_text("T-5120")
    billing.go_back()
    expect(billing).to_have_url(f"{live_server}/billing/")
    expect(billing.locator("#billing-detail")).not_to_contain_text("T-5120")
    billing.go_forward()
    expect(billing.locator("#billing-detail")).to_contain_text("T-5120")

    with billing.expect_download() as waiting:
        billing.get_by_role("button", name="Export interventions (CSV)").click()
    download = waiting.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    text = target.read_text(encoding="utf-8")
    assert PASSWORD not in text
    [line] = list(csv.DictReader(text.splitlines()))
    assert (line["customer_code"], line["minutes"], line["ticket"], line["billable"]) == (
        "VERDI", "45", "T-5120", "yes")
    assert line["estimate_minutes"] == "60" and "smtp_password" in line["fields"]

    billing.once("dialog", lambda d: d.accept())
    billing.locator("#billing-detail").get_by_role("button", name="Mark invoiced").click()
    expect(billing.locator("#billing-detail")).to_contain_text("invoiced")
    assert PASSWORD not in billing.content()
    context.close()
    db.session.expire_all()
    item = db.session.scalar(select(ConfigurationIntervention))
    assert item.invoiced_at is not None and item.minutes == 45


def test_a_billable_change_without_minutes_is_refused_and_a_waiver_keeps_its_reason(
        app, live_server, page, make_user, make_customer):
    """No minutes: the error is beside the field and nothing is saved. Waived with a reason:
    saved, not billable, the reason on the customer's list of interventions."""
    admin = make_user("admin", language="en")
    customer, _ = make_customer("VERDI", "Verdi Arredamenti")
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    fill_customer_smtp(page)
    page.click("#save-settings")
    settings = page.locator("#customer-settings")
    expect(settings).to_contain_text("Nothing was saved")
    expect(page.locator("label[for=f-minutes] .field-error")).to_contain_text(
        "needs the minutes spent")
    db.session.expire_all()
    db.session.refresh(customer)
    assert customer.sending_mode == "standard" and customer.smtp_password_encrypted is None
    assert db.session.scalar(select(ConfigurationIntervention)) is None

    page.fill("#f-smtp_password", PASSWORD)  # never sent back: typed again
    page.check("input[name=waive]")
    page.fill("#f-waive_reason", "set-up included in the annual contract")
    page.click("#save-settings")
    expect(settings).to_contain_text("not billable (waived: set-up included in the annual "
                                     "contract)")
    expect(page.locator("#customer-interventions tbody tr").first).to_contain_text(
        "set-up included in the annual contract")
    db.session.expire_all()
    item = db.session.scalar(select(ConfigurationIntervention))
    assert (item.billable, item.waived_reason, item.minutes) == (
        False, "set-up included in the annual contract", None)
