"""Browser, on a phone (390 px) and on a desktop (1280 px): the navigation folds into a Menu
button, the gear menu opens inside the screen, no page is wider than the screen, and every
action (Resend, Lift, the doctor's fixes) can be seen and tapped."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.notifications import CATALOG
from dashboard.services.bounces import reports, suppressions
from dashboard.services.messages import intake

from ..bounces.conftest import report
from .axe import assert_accessible, assert_fits, assert_in_view, open_context
from .helpers import log_in

pytestmark = pytest.mark.e2e

PHONE, DESKTOP = 390, 1280
ADDRESS = "francesca.lombardi-bertolini@aziendale-distribuzione.example.com"


def order(customer, reference: str, to: str):
    """An order_closed notification through the real intake."""
    data = dict(CATALOG["order_closed"]["sample"], order_number=reference)
    [message] = intake.enqueue(customer, "order_closed", to, reference, "it", data)
    return message


def desk(make_user, make_customer, role: str = "support", language: str | None = None):
    """A day at the desk: long names and addresses, a failed order, a suppressed address that
    was lifted once already (so its next lift is billable)."""
    user = make_user(role, language=language)
    customer, _ = make_customer("ACME", "Acme Distribuzione Ricambi Industriali S.p.A.")
    for n in range(3):
        order(customer, f"ORD-2026-00{n}42", f"responsabile.acquisti{n}@{ADDRESS.split('@')[1]}")
    failed = order(customer, "ORD-2026-00999", ADDRESS)
    failed.status, failed.attempts = "failed", 3
    failed.last_smtp_code, failed.last_smtp_text = 550, "5.1.1 " + "mailbox unavailable " * 4
    db.session.commit()
    reports.ingest(failed.public_id, report("postfix_hard.eml", failed))
    entry = suppressions.active_entry(ADDRESS, "relay", None)
    suppressions.lift(entry, customer, "mailbox recreated", "4711", 10, user)
    reports.ingest(failed.public_id, report("postfix_hard.eml", failed))
    failed.status = "failed"  # as the sweep left it: the doctor offers a resend
    db.session.commit()
    return user, customer, failed


@pytest.fixture
def phone(browser, browser_context_args):
    """A page in a 390 px wide browser (an iPhone's width), English, axe allowed in."""
    context = open_context(browser, browser_context_args, width=PHONE)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
    assert not errors, errors


def test_on_a_phone_the_menu_button_opens_the_navigation_and_the_gear_menu(
        app, live_server, phone, make_user):
    """Menu (aria-expanded) shows the links and the tools; the gear menu's items are inside
    the screen, readable and tappable; Escape closes it and gives the focus back; in Italian
    too."""
    admin = make_user("admin", language="it")
    log_in(phone, live_server, admin.email)
    menu = phone.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(phone.get_by_role("link", name="Registro invii")).to_be_hidden()
    assert_fits(phone)

    menu.focus()
    phone.keyboard.press("Enter")  # a real button: the keyboard opens it
    expect(menu).to_have_attribute("aria-expanded", "true")
    for name in ("Home", "Registro invii", "Soppressioni", "Diagnosi", "Fatturazione"):
        link = phone.get_by_role("link", name=name, exact=True)
        expect(link).to_be_visible()
        assert_in_view(link)
    expect(phone.get_by_role("combobox", name="Lingua")).to_be_visible()
    assert_in_view(phone.get_by_role("button", name="Esci"))
    phone.locator("details.gear > summary").click()
    for name in ("Impostazioni", "Clienti", "Modelli", "Utenti", "Elaborazioni",
                 "Registro modifiche"):
        item = phone.locator("details.gear").get_by_role("link", name=name)
        expect(item).to_be_visible()
        assert_in_view(item)
    assert_fits(phone)
    assert_accessible(phone, "the open menu, 390 px")

    phone.keyboard.press("Escape")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(menu).to_be_focused()
    menu.click()
    phone.locator("details.gear > summary").click()
    phone.locator("details.gear").get_by_role("link", name="Clienti").click()
    expect(phone).to_have_url(f"{live_server}/customers/")
    assert_fits(phone)


def test_without_javascript_the_navigation_stays_open(app, live_server, browser,
                                                     browser_context_args, make_user):
    """No script, no Menu button: every link is shown, stacked, inside the screen."""
    support = make_user("support")
    context = open_context(browser, browser_context_args, width=PHONE, java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server, support.email)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    for name in ("Home", "Log", "Suppressions", "Doctor"):
        assert_in_view(page.get_by_role("link", name=name, exact=True))
    assert_fits(page)
    context.close()


def test_on_a_phone_the_log_fits_and_resend_stays_in_reach(app, live_server, phone, make_user,
                                                            make_customer):
    """A wide results table scrolls in its own box; each row's Resend stays on screen and
    works; the page itself is never wider than the phone."""
    support, _customer, _failed = desk(make_user, make_customer)
    log_in(phone, live_server, support.email)
    phone.goto(f"{live_server}/log/?q=ORD-2026")
    rows = phone.locator("#log-rows tr")
    expect(rows).to_have_count(4)
    assert_fits(phone)
    for button in rows.get_by_role("button", name="Resend").all():
        expect(button).to_be_visible()
        assert_in_view(button)
    table = phone.locator(".table-scroll").first
    assert table.evaluate("box => box.scrollWidth > box.clientWidth")  # it scrolls, inside
    expect(table).to_have_attribute("tabindex", "0")  # …and the keyboard can scroll it
    rows.filter(has_text="responsabile.acquisti0").get_by_role("button", name="Resend").click()
    expect(phone.locator("#log-rows tr.log-new")).to_have_count(1)
    for action in ("Export CSV", "Resend all…"):
        assert_in_view(phone.get_by_role("link", name=action).or_(
            phone.get_by_role("button", name=action)))
    assert_fits(phone)
    assert_accessible(phone, "the Log, 390 px")


def test_on_a_phone_the_message_page_fits_and_the_email_is_shown_whole(
        app, live_server, phone, make_user, make_customer):
    """Long headers wrap, the timeline scrolls in its box, Resend is on screen, and the email's
    frame is as tall as the email (its footer is not cut off); "← Log" returns to the search."""
    support, _customer, failed = desk(make_user, make_customer)
    log_in(phone, live_server, support.email)
    phone.goto(f"{live_server}/log/?q=ORD-2026-00999")
    phone.locator("#log-rows tr").first.get_by_role("link").click()
    phone.wait_for_url(re.compile(rf"/log/{failed.public_id}\?back="))
    assert_fits(phone)
    resend = phone.locator("#resends").get_by_role("button", name="Resend")
    resend.scroll_into_view_if_needed()
    assert_in_view(resend)
    frame = phone.locator("iframe.preview")
    expect(frame).to_have_attribute("sandbox", "allow-same-origin")
    phone.wait_for_function(
        "() => { const f = document.querySelector('iframe.preview');"
        " return f.contentDocument && f.contentDocument.readyState === 'complete'"
        " && f.getBoundingClientRect().height > 200; }")
    fit = frame.evaluate("""f => ({frame: f.getBoundingClientRect().height,
                                   content: f.contentDocument.documentElement.scrollHeight,
                                   footer: f.contentDocument.body.innerText.includes('Postino')})""")
    assert fit["frame"] >= fit["content"] - 2, fit  # nothing hidden below the frame's edge
    assert_accessible(phone, "the message page, 390 px")
    phone.get_by_role("link", name="← Log").click()
    expect(phone).to_have_url(f"{live_server}/log/?q=ORD-2026-00999")


def test_on_a_phone_support_lifts_a_suppression(app, live_server, phone, make_user,
                                                make_customer):
    """Search, Lift on screen, a form that fits the screen, the billable warning says what
    4711 is, and the lift goes through."""
    support, customer, _failed = desk(make_user, make_customer)
    log_in(phone, live_server, support.email)
    phone.goto(f"{live_server}/suppressions/?q={ADDRESS}")
    row = phone.locator("tr.suppression-row", has_text=ADDRESS)
    lift = row.get_by_role("button", name="Lift")
    assert_in_view(lift)
    assert_fits(phone)
    lift.click()
    form = phone.locator("tr.suppression-lift form")
    expect(form.locator(".billable-warning")).to_contain_text("(ticket 4711)")
    for field in ("select[name=customer]", "input[name=minutes]", "input[name=reason]"):
        assert_in_view(form.locator(field))
    submit = form.get_by_role("button", name="Lift (billable)")
    assert_in_view(submit)
    assert_fits(phone)
    assert_accessible(phone, "the open Lift form, 390 px")
    form.locator("select[name=customer]").select_option(str(customer.id))
    form.locator("input[name=minutes]").fill("20")
    form.locator("input[name=reason]").fill("asked again by the customer")
    submit.click()
    expect(phone.locator("tr.suppression-row", has_text=ADDRESS)).to_contain_text("lifted")
    assert_fits(phone)


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_the_doctor_fits_and_shows_its_fixes_and_its_errors(app, live_server, browser,
                                                           browser_context_args, make_user,
                                                           make_customer, width):
    """The verdicts and their fixes are on screen; a bad address's error is below its field,
    never under it."""
    support, _customer, _failed = desk(make_user, make_customer)
    context = open_context(browser, browser_context_args, width=width)
    page = context.new_page()
    log_in(page, live_server, support.email)
    page.goto(f"{live_server}/doctor/?address={ADDRESS}")
    verdict = page.locator("#verdict-suppression")
    expect(verdict).to_have_attribute("data-colour", "red")
    for action in (verdict.get_by_role("button", name=re.compile("^Lift")),
                   verdict.get_by_role("button", name="Open in Suppressions"),
                   page.locator("#verdict-temporary").get_by_role("button", name=re.compile(
                       "^Resend"))):
        action.scroll_into_view_if_needed()
        expect(action).to_be_visible()
        assert_in_view(action)
    assert_fits(page)
    assert_accessible(page, f"the doctor, {width} px")

    page.fill("#doctor-address", "not-an-address")
    page.get_by_role("button", name="Diagnose").click()
    error = page.locator("#doctor .field-error")
    expect(error).to_have_text("Enter a valid email address.")
    field = page.locator("#doctor-address").bounding_box()
    below = error.bounding_box()
    assert below["y"] >= field["y"] + field["height"] - 1, (field, below)  # not behind it
    assert_in_view(error)
    context.close()


def test_at_1280_px_the_navigation_is_one_row_and_the_gear_menu_opens_inside(
        app, live_server, browser, browser_context_args, make_user):
    """The desktop is unchanged: no Menu button, the links in one row, the gear menu
    right-aligned under the gear and inside the window."""
    admin = make_user("admin")
    context = open_context(browser, browser_context_args, width=DESKTOP)
    page = context.new_page()
    log_in(page, live_server, admin.email)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    tops = {round(page.get_by_role("link", name=name, exact=True).bounding_box()["y"])
            for name in ("Home", "Log", "Suppressions", "Doctor", "Billing")}
    assert len(tops) == 1, tops
    page.locator("details.gear > summary").click()
    gear = page.locator("details.gear > summary").bounding_box()
    items = page.locator("details.gear > ul").bounding_box()
    assert abs((items["x"] + items["width"]) - (gear["x"] + gear["width"])) < 2
    assert_in_view(page.locator("details.gear").get_by_role("link", name="Settings"))
    assert_fits(page)
    context.close()


def test_a_late_search_answer_never_loses_a_half_filled_lift_form(
        app, live_server, phone, make_user, make_customer, monkeypatch):
    """A search typed before Lift was opened and answered after it leaves the form, and what
    was typed in it, in place; later searches refresh the other rows around the open form."""
    import time

    from dashboard.services.bounces import suppressions as service

    support, customer, _failed = desk(make_user, make_customer)
    suppressions.suppress("other.person@example.org", "hard_bounce", customer)
    db.session.commit()
    search = service.search

    def slow_search(filters, *args, **kwargs):
        if filters.q.startswith("slow"):
            time.sleep(1.5)
        return search(filters, *args, **kwargs)

    monkeypatch.setattr(service, "search", slow_search)
    phone.set_viewport_size({"width": DESKTOP, "height": 844})
    log_in(phone, live_server, support.email)
    phone.goto(f"{live_server}/suppressions/")
    row = phone.locator("tr.suppression-row", has_text=ADDRESS)
    expect(row).to_be_visible()

    with phone.expect_request(re.compile(r"/suppressions/\?q=slow")):
        phone.fill("#suppressions-q", "slow")  # answered in 1.5 s
    row.get_by_role("button", name="Lift").click()
    reason = phone.locator("tr.suppression-lift input[name=reason]")
    reason.fill("the customer's IT recreated the mailb")
    phone.wait_for_timeout(2500)  # the slow answer would have arrived by now
    expect(reason).to_have_value("the customer's IT recreated the mailb")

    with phone.expect_response(re.compile(r"/suppressions/\?q=example")):
        phone.fill("#suppressions-q", "example")  # lists both entries, the open one kept
    expect(phone.locator("tr.suppression-row", has_text="other.person@example.org")).to_be_visible()
    expect(reason).to_have_value("the customer's IT recreated the mailb")
    with phone.expect_response(re.compile(r"/suppressions/\?q=other")):
        phone.fill("#suppressions-q", "other")  # the open entry is not in this answer
    expect(reason).to_have_value("the customer's IT recreated the mailb")
    phone.locator("tr.suppression-lift").get_by_role("button", name="Cancel").click()
    expect(phone.locator("tr.suppression-lift")).to_have_count(0)


def test_the_italian_header_is_never_squeezed(app, live_server, browser, browser_context_args,
                                               make_user):
    """At every width the Italian header fits the window and the language picker shows its
    whole word ("Italiano", not "I")."""
    admin = make_user("admin", language="it")
    context = open_context(browser, browser_context_args, width=PHONE)
    page = context.new_page()
    log_in(page, live_server, admin.email)
    for width in (PHONE, 800, 1024, DESKTOP):
        page.set_viewport_size({"width": width, "height": 844})
        menu = page.get_by_role("button", name="Menu")
        if menu.is_visible() and menu.get_attribute("aria-expanded") == "false":
            menu.click()
        picker = page.get_by_role("combobox", name="Lingua")
        shown = picker.evaluate("s => s.getBoundingClientRect().width >= s.scrollWidth - 1"
                                " && s.getBoundingClientRect().width > 90")
        assert shown, f"the language picker is squeezed at {width} px"
        assert_in_view(picker)
        assert_fits(page, f"the header at {width} px")
    context.close()
