"""Browser: an admin sets up a customer's delivery webhook, copies the secret shown once,
sends a test event and reads the answer; the section passes axe-core in both languages and
fits a phone. The API reference renders under the app's CSP."""
import pytest
from playwright.sync_api import expect

from tests.e2e.axe import assert_accessible, assert_fits, open_context
from tests.e2e.helpers import log_in
from tests.webhooks import receiver as receiver_module

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver(app, tmp_path):
    """A real HTTPS receiver whose CA the app trusts."""
    server = receiver_module.start(tmp_path)
    saved = app.config.get("POSTINO_WEBHOOK_CA_FILE")
    app.config["POSTINO_WEBHOOK_CA_FILE"] = server.ca_file
    yield server
    server.stop()
    app.config["POSTINO_WEBHOOK_CA_FILE"] = saved


def test_admin_creates_a_webhook_and_sends_a_test_event(app, live_server, browser,
                                                        browser_context_args, make_user,
                                                        make_customer, receiver):
    """Create → the secret once; test event → "delivered … 200" and a row in the table;
    reload → no secret; axe-core clean at 1280 px (English, Italian) and fits 390 px."""
    admin = make_user("admin", language="en")
    customer, _ = make_customer(name="Ferramenta Rossi")
    context = open_context(browser, browser_context_args)
    page = context.new_page()
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    section = page.locator("#webhook")
    page.fill("#webhook-url", receiver.url)
    section.get_by_role("button", name="Create webhook").click()
    secret = page.locator("#webhook-secret")
    expect(secret).to_contain_text("whsec_")
    shown = secret.inner_text()
    section.get_by_role("button", name="Send a test event").click()
    expect(page.locator("#webhook-test-result")).to_contain_text(
        "Test event delivered: the endpoint answered 200")
    expect(section.locator("tbody tr")).to_have_count(1)
    assert receiver.received[0].json["event"] == "test"
    assert_accessible(page, "customer page with a webhook (en)")
    page.reload()
    expect(section).to_contain_text(receiver.url)
    assert shown not in page.content()
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page, "customer page with a webhook at 390 px")
    context.close()

    context = open_context(browser, browser_context_args, locale="it")
    page = context.new_page()
    italian = make_user("admin", language="it")
    log_in(page, live_server, italian.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    expect(page.locator("#webhook")).to_contain_text("Ultime consegne")
    assert_accessible(page, "customer page with a webhook (it)")
    context.close()


def test_the_api_reference_renders_under_the_csp(live_server, page):
    """Swagger UI from the vendored bundle, started by the static script, no CSP error."""
    errors = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.goto(f"{live_server}/api/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("Postino API")
    expect(page.locator(".opblock-summary-path").first).to_contain_text("/api/v1/notifications")
    assert not [e for e in errors if "Content Security Policy" in e], errors
