"""Browser: an admin generates a customer's DKIM key, sees the record to publish and copies
it; support sees the same record without any button that acts."""
import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.models import DkimKey
from dashboard.services.delivery import dkim_keys
from tests.e2e.helpers import log_in

pytestmark = pytest.mark.e2e


def test_admin_generates_a_dkim_key_sees_the_record_and_copies_it(
        app, live_server, page, browser, make_user, make_customer):
    """Generate (with Ed25519) → both records with name, value and 255-byte strings; the copy
    button copies the value (its label says so); support reads the same section."""
    admin = make_user("admin", language="en")
    support = make_user("support", language="en")
    customer, _ = make_customer(name="Ferramenta Rossi", sending_mode="custom_from",
                                from_address="ordini@ferramenta-rossi.example")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                   origin=live_server)
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    section = page.locator("#dkim")
    expect(section).to_contain_text("No DKIM key yet")

    page.check("#dkim input[name=ed25519]")
    page.click("#dkim-generate")
    expect(section).to_contain_text("generated: publish its record")
    db.session.expire_all()
    key = db.session.query(DkimKey).one()
    rsa_record, ed_record = dkim_keys.records(key)
    expect(section).to_contain_text(f"{key.selector}._domainkey.ferramenta-rossi.example")
    expect(section).to_contain_text(ed_record.name)
    expect(page.locator(f"#dkim-value-{key.id}-rsa")).to_have_text(rsa_record.value)
    expect(page.locator(f"#dkim-strings-{key.id}-rsa")).to_have_text(rsa_record.zone_text)
    expect(section).to_contain_text("waiting for the DNS record")

    copy = page.locator(f"button[data-copy='dkim-value-{key.id}-rsa']")
    expect(copy).to_have_accessible_name(f"Copy the value of {rsa_record.name}")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == rsa_record.value

    context = browser.new_context()
    support_page = context.new_page()
    log_in(support_page, live_server, support.email)
    support_page.goto(f"{live_server}/customers/{customer.code}")
    expect(support_page.locator(f"#dkim-value-{key.id}-rsa")).to_have_text(rsa_record.value)
    expect(support_page.locator("#dkim-generate")).to_have_count(0)
    expect(support_page.locator("#dkim .dkim-actions")).to_have_count(0)
    context.close()
    dkim_keys.invalidate()
