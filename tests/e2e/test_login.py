"""Browser: staff log in through the form, land on Home, and switch the UI language."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ..conftest import PASSWORD

pytestmark = pytest.mark.e2e


def test_log_in_land_on_home_and_switch_to_italian_and_back(live_server, page, make_user):
    """The header's language select turns the navigation Italian, and back to English."""
    admin = make_user("admin", email="elena@staff.example.com")
    page.goto(f"{live_server}/")
    expect(page).to_have_url(f"{live_server}/login?next=%2F")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()

    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server}/")
    expect(page).to_have_title("Home · Postino")
    nav = page.locator("header nav")
    expect(nav).to_contain_text(admin.email)
    expect(nav.get_by_role("link", name="Suppressions")).to_be_visible()

    page.get_by_label("Language").select_option("it")
    expect(nav.get_by_role("link", name="Soppressioni")).to_be_visible()
    expect(nav.get_by_role("link", name="Registro invii")).to_be_visible()
    expect(page.get_by_role("button", name="Esci")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "it")
    expect(page).to_have_url(f"{live_server}/")

    page.get_by_label("Lingua").select_option("en")
    expect(nav.get_by_role("link", name="Suppressions")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def test_a_wrong_password_shows_the_neutral_message_and_logging_out_returns_to_login(
        live_server, page, make_user):
    """A failed login stays on the form with a message; after login, Log out ends the session."""
    user = make_user("billing", email="paolo@staff.example.com", language="en")
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server}/")
    expect(page.locator("header nav").get_by_role("link", name="Billing")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server}/login")
    page.goto(f"{live_server}/billing/")
    expect(page).to_have_url(f"{live_server}/login?next=%2Fbilling%2F")
