"""Browser: every page each role can reach passes axe-core, in Italian and English, at 1280 and
390 px, and none is wider than the window (on a phone, a tablet or a desktop).

Each role logs in and follows every link it is shown (one page per kind of address), plus a few
pages links do not lead to directly (a diagnosis, a search, the error pages); each page is then
scanned at both widths, first in English (the browser's language), then in Italian.
"""
from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from werkzeug.exceptions import HTTPException

from . import world
from .axe import assert_fits, describe, open_context, violations
from .helpers import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]

WIDTHS = (1280, 390)
FIT_WIDTHS = (1280, 800, 390)
SKIP = re.compile(r"^/(static/|logout|language)|\.csv$|/export")


def seeds(role: str, found: dict) -> list[str]:
    """Pages links do not lead to directly: a diagnosis, searches, errors, another role's."""
    address, order = found["suppressed"], found["order"]
    return {
        "admin": [f"/doctor/?address={address}", f"/log/?q={order}", "/suppressions/?state=all",
                  "/customers/ROSSI", "/customers/ALFA", "/customers/VERDI",
                  "/templates/?customer=ROSSI", "/nowhere"],
        "support": [f"/doctor/?reference={order}&customer=ROSSI",
                    "/doctor/?address=not-an-address", "/log/?status=held", "/settings/"],
        "billing": ["/log/"],
    }[role]


PAGING = {"before", "after", "period", "month", "from", "to", "billable", "state"}


def kinds(app):
    """kind(path): pages of one view with the same kind of question count once (another
    message, another page of results, another period are the same page with other data)."""
    adapter = app.url_map.bind("localhost")

    def kind(path: str) -> str:
        parts = urlsplit(path)
        try:
            endpoint, _values = adapter.match(parts.path, method="GET")
        except HTTPException:
            endpoint = "error"
        keys = sorted({pair.split("=")[0] for pair in parts.query.split("&") if pair} - PAGING)
        return endpoint + "?" + "&".join(keys)

    return kind


def links(page, base: str) -> list[str]:
    """The same-site pages the current page links to (downloads and actions left out)."""
    found = []
    for href in page.eval_on_selector_all(
            "a[href]:not([download])", "links => links.map(a => a.getAttribute('href'))"):
        target = urlsplit(urljoin(page.url, href))
        if target.netloc == urlsplit(base).netloc and not SKIP.search(target.path):
            found.append(target.path + (f"?{target.query}" if target.query else ""))
    return found


def check(page, path: str, language: str) -> list[str]:
    """Scan the loaded page at each width (axe at 1280 and 390 px; nothing wider than the
    window at those and at a tablet's 800 px); returns the problems found."""
    problems = []
    for width in FIT_WIDTHS:
        page.set_viewport_size({"width": width, "height": 844})
        page.wait_for_timeout(50)  # media queries and app.js's resize handler settle
        if width in WIDTHS:
            found = violations(page)
            if found:
                problems.append(f"{path} [{language}, {width} px]\n{describe(found)}")
        try:
            assert_fits(page, f"{path} [{language}, {width} px]")
        except AssertionError as exc:
            problems.append(str(exc))
    page.set_viewport_size({"width": WIDTHS[0], "height": 844})
    return problems


def walk(page, base: str, kind, seeds: list[str], language: str) -> tuple[list[str], list[str]]:
    """Follow links from Home (one address per kind of page) and visit the seeds, checking
    each page on the way; returns (pages visited, problems)."""
    queue, seen, pages, problems = ["/", *seeds], set(), [], []
    while queue:
        path = queue.pop(0)
        if kind(path) in seen and path not in seeds or path in pages:
            continue
        seen.add(kind(path))
        page.goto(base + path)
        pages.append(path)
        problems += check(page, path, language)
        queue += [local for local in links(page, base) if kind(local) not in seen]
    return pages, problems


def switch_to_italian(page, base: str) -> None:
    """Pick Italiano in the header's language picker (the user's own choice from now on)."""
    page.goto(base + "/")
    with page.expect_navigation():
        page.select_option("#language-form select", "it")
    assert page.locator("html").get_attribute("lang") == "it"


@pytest.mark.parametrize("role", ["admin", "support", "billing"])
def test_every_page_a_role_reaches_passes_axe_in_both_languages_and_widths(
        app, live_server, browser, browser_context_args, role):
    """Zero axe-core violations and no page wider than 390 px, on every page of the role."""
    found = world.build()
    context = open_context(browser, browser_context_args)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, live_server, world.EMAILS[role], world.PASSWORD)
    assert page.locator("html").get_attribute("lang") == "en"  # the browser's language
    pages, problems = walk(page, live_server, kinds(app), seeds(role, found), "en")
    assert len(pages) >= {"admin": 20, "support": 8, "billing": 4}[role], pages
    switch_to_italian(page, live_server)
    for path in pages:
        page.goto(live_server + path)
        problems += check(page, path, "it")
    context.close()
    assert not problems, "\n\n".join(problems)
    assert not errors, errors


def test_the_login_page_passes_axe_in_both_languages_and_widths(
        app, live_server, browser, browser_context_args):
    """The one page anybody sees: axe-clean, fits a phone, in English and in Italian."""
    problems = []
    for language in ("en-US", "it-IT"):
        context = open_context(browser, browser_context_args, locale=language)
        page = context.new_page()
        for path in ("/login", "/login?next=%2Flog%2F"):
            page.goto(live_server + path)
            problems += check(page, path, language)
        context.close()
    assert not problems, "\n\n".join(problems)
