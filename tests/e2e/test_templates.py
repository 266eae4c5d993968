"""Browser: an admin edits a customer's subject, watches the live preview follow, saves, toggles
the mobile width and restores the previous version."""
import pytest
from playwright.sync_api import expect

from dashboard.services.content import templates as service

from .helpers import log_in

pytestmark = pytest.mark.e2e


def test_edit_subject_see_preview_save_and_restore_previous_version(
        app, live_server, page, make_user, make_customer):
    """Typing re-renders the preview; Save makes v2; restoring v1 brings its subject back as v3."""
    admin = make_user("admin", language="en")
    customer, _ = make_customer(code="ROSSI", name="Ferramenta Rossi")
    service.save(customer, "order_closed", "it",
                 service.current_source(customer, "order_closed", "it") | {
                     "subject": "Primo oggetto {{ order_number }}"}, admin)
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/templates/?customer=ROSSI")
    page.click("a[href='/templates/ROSSI/order_closed/it']")
    # typing before htmx has wired the form (on DOMContentLoaded) would send no preview
    page.wait_for_load_state("load")
    expect(page.locator("#template-status")).to_have_text("override v1")
    expect(page.locator("#preview-subject")).to_have_text("Primo oggetto ORD-2026-00421")

    page.fill("#field-subject", "Ordine {{ order_number }} confermato da {{ agent_name }}")
    expect(page.locator("#preview-subject")).to_have_text(
        "Ordine ORD-2026-00421 confermato da Marco Bianchi")
    frame = page.frame_locator("iframe.preview")
    expect(frame.locator("h1")).to_have_text("Ordine chiuso")

    page.fill("#field-subject", "Ordine {{ ordine }}")
    expect(page.locator("#preview-errors")).to_contain_text("unknown variable 'ordine'")
    expect(page.locator("#errors-subject")).to_contain_text("Line 1")
    page.fill("#field-subject", "Ordine {{ order_number }} confermato")
    expect(page.locator("#preview-subject")).to_have_text("Ordine ORD-2026-00421 confermato")

    page.click("[data-preview-width=mobile]")
    expect(page.locator("#preview-pane")).to_have_class("preview-pane mobile")
    assert page.locator("iframe.preview").bounding_box()["width"] <= 376

    page.click("#save-button")
    expect(page.locator("#template-status")).to_have_text("override v2")
    expect(page.locator("#version-2")).to_contain_text("in use")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#version-1").get_by_role("button", name="Restore this version").click()
    expect(page.locator("#template-status")).to_have_text("override v3")
    expect(page.locator("#field-subject")).to_have_value("Primo oggetto {{ order_number }}")
    expect(page.locator("#version-3")).to_contain_text("restored from v1")
