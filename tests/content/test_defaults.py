"""The shipped default templates: every event in both languages, checked against snapshots.

Run with UPDATE_SNAPSHOTS=1 to (re)write the snapshots after an intended change, then review
the diff of tests/content/snapshots/ before committing it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboard.notifications import CATALOG, LANGUAGES, default_source, required_variables
from dashboard.services.content import render

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
CASES = [(event, language) for event in CATALOG for language in LANGUAGES]


def check_snapshot(name: str, actual: str) -> None:
    """Compare with the stored snapshot, or write it when UPDATE_SNAPSHOTS=1."""
    path = SNAPSHOTS / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing snapshot {name}: run with UPDATE_SNAPSHOTS=1")
        path.write_text(actual, encoding="utf-8")
        return
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its snapshot"


@pytest.mark.parametrize(("event", "language"), CASES)
def test_default_template_matches_its_snapshot(event, language):
    """Subject, plain text and inlined HTML of each default stay exactly as reviewed."""
    rendered = render.render_notification(None, event, language, CATALOG[event]["sample"])
    check_snapshot(f"{event}.{language}.subject", rendered.subject + "\n")
    check_snapshot(f"{event}.{language}.txt", rendered.text)
    check_snapshot(f"{event}.{language}.html", rendered.html)
    assert rendered.source == "default" and rendered.template_version_id is None


@pytest.mark.parametrize(("event", "language"), CASES)
def test_default_html_is_inlined_responsive_and_in_its_language(event, language):
    """The HTML carries inline styles, keeps the mobile media query and declares its language."""
    rendered = render.render_notification(None, event, language, CATALOG[event]["sample"])
    assert f'<html lang="{language}">' in rendered.html
    assert '<td class="content" align="left" style="' in rendered.html or \
        '<td class="content" style="' in rendered.html
    assert "@media only screen and (max-width: 620px)" in rendered.html
    assert 'role="presentation"' in rendered.html
    assert CATALOG[event]["sample"]["link"] in rendered.text, "links survive in the text part"


@pytest.mark.parametrize(("event", "language"), CASES)
def test_default_needs_only_the_documented_variables(event, language):
    """Each default renders with just the required variables, and names any missing one."""
    sample = CATALOG[event]["sample"]
    required = {name: sample[name] for name in required_variables(event)}
    render.render_source(default_source(event, language), required)
    missing = dict(required)
    name = required_variables(event)[0]
    del missing[name]
    with pytest.raises(render.RenderError) as error:
        render.render_source(default_source(event, language), missing)
    assert error.value.field == f"data.{name}"


def test_default_sources_use_only_catalog_variables():
    """No default uses a variable the catalog does not document."""
    for event, language in CASES:
        problems = render.check_source(default_source(event, language),
                                       frozenset(CATALOG[event]["variables"]))
        assert problems == [], (event, language, [p.message for p in problems])


def test_sample_values_are_escaped_in_html_but_not_in_the_subject():
    """Data is HTML-escaped in the body (no injection) and left as typed in the subject."""
    data = {**CATALOG["order_closed"]["sample"], "order_number": "<b>A&B</b>"}
    rendered = render.render_notification(None, "order_closed", "en", data)
    assert "&lt;b&gt;A&amp;B&lt;/b&gt;" in rendered.html and "<b>A&B</b>" not in rendered.html
    assert rendered.subject == "Order <b>A&B</b> closed"


def test_optional_outcome_is_left_out_when_missing():
    """activity_closed without an outcome renders without the outcome block."""
    data = {k: v for k, v in CATALOG["activity_closed"]["sample"].items() if k != "outcome"}
    rendered = render.render_notification(None, "activity_closed", "it", data)
    assert "Esito" not in rendered.text
