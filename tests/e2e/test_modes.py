"""Browser: an admin moves a customer from standard to customer_smtp, tests the connection
against a real STARTTLS+AUTH server and saves; support sees the same page read-only."""
import re

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.services.delivery import credentials

# the modes area's fixtures: a private CA, its server certificate, a STARTTLS+AUTH server
from tests.delivery.modes.conftest import (  # noqa: F401
    SMTP_PASSWORD,
    SMTP_USER,
    ca,
    ca_pem,
    server_cert,
    silent_server,
    starttls_server,
)
from tests.e2e.helpers import log_in

pytestmark = pytest.mark.e2e


def test_admin_switches_to_customer_smtp_tests_the_connection_and_saves(
        app, live_server, page, browser, make_user, make_customer, starttls_server,  # noqa: F811
        ca_pem):  # noqa: F811
    """Radio → fields swapped in; Test connection shows each step; Save stores it; support
    then sees the page without any form."""
    admin = make_user("admin", language="en")
    support = make_user("support", language="en")
    customer, _ = make_customer(name="Ferramenta Rossi")
    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/customers/{customer.code}")
    expect(page.locator("#mode-fields")).to_contain_text("notification@postino.example.com")

    page.check("input[name=sending_mode][value=customer_smtp]")
    expect(page.locator("#f-smtp_host")).to_be_visible()
    page.fill("#f-from_address", "notifiche@cliente.example")
    page.fill("#f-from_name", "Ferramenta Rossi")
    page.fill("#f-smtp_host", starttls_server.host)
    page.fill("#f-smtp_port", str(starttls_server.port))
    page.select_option("#f-smtp_security", "starttls")
    page.select_option("#f-smtp_auth", "plain")
    page.fill("#f-smtp_username", SMTP_USER)
    page.fill("#f-smtp_password", SMTP_PASSWORD)
    page.fill("#f-smtp_ca_pem", ca_pem)

    page.click("#test-connection")
    result = page.locator("#probe-result")
    expect(result).to_contain_text("Connection works")
    expect(result).to_contain_text("235 authentication succeeded")
    expect(result).to_contain_text("220")

    page.fill("#f-minutes", "45")  # a switch to customer_smtp is billable
    page.click("#save-settings")
    expect(page.locator("#customer-settings")).to_contain_text("Sending mode saved")
    expect(page.locator("#f-smtp_password")).to_have_value("")
    assert SMTP_PASSWORD not in page.content()
    db.session.expire_all()
    db.session.refresh(customer)
    assert customer.sending_mode == "customer_smtp"
    assert customer.smtp_port == starttls_server.port and customer.smtp_ca_pem
    assert credentials.decrypt(customer.smtp_password_encrypted) == SMTP_PASSWORD

    context = browser.new_context()
    support_page = context.new_page()
    log_in(support_page, live_server, support.email)
    support_page.goto(f"{live_server}/customers/{customer.code}")
    main = support_page.locator("main")
    expect(main).to_contain_text(f"{starttls_server.host}:{starttls_server.port}")
    expect(main.locator("form")).to_have_count(0)
    expect(main.locator("input, textarea, select, button")).to_have_count(0)
    context.close()


def _customer_smtp_form(page, live_server, customer, host, port, security, auth):
    """Open a customer's page and fill the customer_smtp fields (password left empty)."""
    page.goto(f"{live_server}/customers/{customer.code}")
    page.check("input[name=sending_mode][value=customer_smtp]")
    page.fill("#f-from_address", "notifiche@cliente.example")
    page.fill("#f-smtp_host", host)
    page.fill("#f-smtp_port", str(port))
    page.select_option("#f-smtp_security", security)
    page.select_option("#f-smtp_auth", auth)


def test_the_connection_test_shows_progress_and_disables_its_button_while_it_runs(
        app, live_server, page, make_user, make_customer, silent_server):  # noqa: F811
    """Against a server that never answers: the button is disabled and the progress shown
    until the test gives up, then the result says so in words."""
    admin = make_user("admin", language="en")
    customer, _ = make_customer()
    app.config["POSTINO_SMTP_TEST_TIMEOUT"] = 3
    try:
        log_in(page, live_server, admin.email)
        _customer_smtp_form(page, live_server, customer, "127.0.0.1", silent_server,
                            "starttls", "none")
        button, progress = page.locator("#test-connection"), page.locator("#probe-progress")
        expect(progress).to_have_css("opacity", "0")
        button.click()
        expect(button).to_be_disabled()
        expect(progress).to_have_class(re.compile(r"\bhtmx-request\b"))
        expect(progress).to_have_css("opacity", "1")
        expect(progress).to_contain_text("at most 3 s per step")
        result = page.locator("#probe-result")
        expect(result).to_contain_text(f"No answer from 127.0.0.1:{silent_server} in 3 s",
                                       timeout=10_000)
        expect(button).to_be_enabled()
        expect(progress).to_have_css("opacity", "0")
    finally:
        app.config["POSTINO_SMTP_TEST_TIMEOUT"] = 10


def test_saving_a_login_without_encryption_warns_and_needs_the_confirmation(
        app, live_server, page, browser, make_user, make_customer):
    """Security None with a login is not saved until the admin ticks the confirmation; then
    support reads 'no encryption' instead of 'TLS certificate: verified'."""
    admin = make_user("admin", language="en")
    support = make_user("support", language="en")
    customer, _ = make_customer()
    log_in(page, live_server, admin.email)
    _customer_smtp_form(page, live_server, customer, "smtp.cliente.example", 25, "none", "plain")
    page.fill("#f-smtp_username", SMTP_USER)
    page.fill("#f-smtp_password", SMTP_PASSWORD)
    page.fill("#f-minutes", "20")  # a switch to customer_smtp is billable
    page.click("#save-settings")
    settings = page.locator("#customer-settings")
    expect(settings).to_contain_text("Nothing was saved")
    expect(settings).to_contain_text("the password crosses the network unencrypted")
    db.session.expire_all()
    db.session.refresh(customer)
    assert customer.sending_mode == "standard"

    page.fill("#f-smtp_password", SMTP_PASSWORD)  # never sent back: typed again
    if not page.input_value("#f-minutes"):  # kept by the refused form, or typed again
        page.fill("#f-minutes", "20")
    page.check("#f-confirm_plaintext")
    page.click("#save-settings")
    expect(settings).to_contain_text("Sending mode saved")
    db.session.expire_all()
    db.session.refresh(customer)
    assert customer.sending_mode == "customer_smtp" and customer.smtp_security == "none"

    context = browser.new_context()
    support_page = context.new_page()
    log_in(support_page, live_server, support.email)
    support_page.goto(f"{live_server}/customers/{customer.code}")
    main = support_page.locator("main")
    expect(main).to_contain_text("no encryption")
    expect(main).not_to_contain_text("TLS certificate")
    context.close()
