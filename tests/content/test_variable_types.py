"""Template variables are plain values unless the template accepts a list or an object:
null, lists and objects never print as "None" or "[…]" in a customer's email."""
from __future__ import annotations

import shutil

import pytest
from sqlalchemy import select

import dashboard.notifications
from dashboard.extensions import db
from dashboard.models import Message
from dashboard.notifications import CATALOG
from dashboard.services.content import render
from dashboard.services.content import templates as service

from ..delivery.conftest import counts

ORDER = CATALOG["order_closed"]["sample"]
LINES_HTML = ("{% accepts lines as list %}<p>Ordine {{ order_number }}</p>"
              "{% if lines is defined %}<ul>{% for line in lines %}<li>{{ line.sku }} × "
              "{{ line.qty }}</li>{% endfor %}</ul>{% endif %}")


def _post(api_post, key, data):
    return api_post(key, {"event": "order_closed", "to": "buyer@example.com", "data": data})


@pytest.mark.parametrize(("value", "kind"), [(None, "null"), ({"n": 421}, "an object"),
                                              (["ORD", 421], "a list")])
def test_null_objects_and_lists_are_refused_naming_the_variable(make_customer, api_post, value,
                                                                kind):
    """`"order_number": null` used to go out as "Ordine None chiuso": now a 422 naming
    data.order_number, and nothing is stored."""
    _, key = make_customer()
    response = _post(api_post, key, {**ORDER, "order_number": value})
    assert response.status_code == 422
    error = response.json["error"]
    assert error["field"] == "data.order_number"
    assert error["code"] == "invalid_variable"
    assert f"data.order_number is {kind}" in error["message"]
    assert counts() == (0, 0, 0)


def test_a_null_optional_variable_is_refused_too(make_customer, api_post):
    """An optional variable is left out, not sent as null (`is defined` would be true)."""
    _, key = make_customer()
    data = {**CATALOG["activity_closed"]["sample"], "outcome": None}
    response = api_post(key, {"event": "activity_closed", "to": "a@example.com", "data": data})
    assert response.status_code == 422 and response.json["error"]["field"] == "data.outcome"


def test_an_override_that_accepts_a_list_gets_one(make_customer, api_post, admin):
    """`{% accepts lines as list %}` lets a list through to that template, and only a list."""
    customer, key = make_customer()
    service.save(customer, "order_closed", "it",
                 {"subject": "Ordine {{ order_number }}", "html": LINES_HTML, "text": None},
                 admin)
    lines = [{"sku": "CAFFÈ-1KG", "qty": 3}, {"sku": "ZUCCHERO", "qty": 1}]
    response = _post(api_post, key, {**ORDER, "lines": lines})
    assert response.status_code == 202, response.json
    message = db.session.scalar(select(Message))
    assert "CAFFÈ-1KG × 3" in message.html_body and "ZUCCHERO × 1" in message.html_body
    refused = _post(api_post, key, {**ORDER, "lines": "CAFFÈ-1KG"})
    assert refused.status_code == 422
    assert refused.json["error"]["field"] == "data.lines"
    assert "must be a list" in refused.json["error"]["message"]
    other = _post(api_post, key, {**ORDER, "total": {"amount": 5}})
    assert other.status_code == 422 and other.json["error"]["field"] == "data.total"


def test_a_default_template_declares_the_same_way(app, make_customer, monkeypatch, tmp_path):
    """The shipped defaults are files read by the same renderer: an `accepts` there works
    exactly like in an override."""
    defaults = tmp_path / "defaults"
    shutil.copytree(dashboard.notifications.DEFAULTS_DIR, defaults)
    html = defaults / "order_closed" / "en.html"
    source = html.read_text(encoding="utf-8").replace(
        "{% block content %}", "{% block content %}{% for line in lines %}[{{ line }}]{% endfor %}")
    html.write_text("{% accepts lines as list %}" + source, encoding="utf-8")
    monkeypatch.setattr(dashboard.notifications, "DEFAULTS_DIR", defaults)
    customer, _ = make_customer()
    rendered = render.render_notification(customer, "order_closed", "en",
                                          {**ORDER, "lines": ["a", "b"]})
    assert "[a][b]" in rendered.html and rendered.source == "default"
    with pytest.raises(render.RenderError) as error:
        render.render_notification(customer, "order_closed", "it", {**ORDER, "lines": ["a"]})
    assert error.value.field == "data.lines"  # the Italian default did not declare it


def test_the_editor_checks_declarations(app):
    """A declared name is a known variable; an unknown kind or parts that disagree are errors
    with their part and line."""
    ok = {"subject": "s", "html": LINES_HTML, "text": ""}
    assert render.check_source(ok, frozenset(CATALOG["order_closed"]["variables"])) == []
    bad_kind = {"subject": "s", "html": "<p>x</p>\n{% accepts lines as dict %}", "text": ""}
    [error] = render.check_source(bad_kind, frozenset())
    assert error.part == "html" and error.line == 2
    assert "accepts takes 'list' or 'object', not 'dict'" in error.message
    clash = {"subject": "{% accepts lines as object %}s", "html": LINES_HTML, "text": ""}
    errors = render.check_source(clash, frozenset(CATALOG["order_closed"]["variables"]))
    assert any("accepted as a object in the subject but as a list in the html" in e.message
               for e in errors)


def test_the_editor_preview_renders_a_sample_list_and_refuses_an_undeclared_one(app):
    """Preview uses the same rules as sending, with the editor's sample data."""
    good = service.preview("order_closed", {"subject": "s", "html": LINES_HTML, "text": ""},
                           {**ORDER, "lines": [{"sku": "A", "qty": 2}]})
    assert good.ok and "A × 2" in good.html
    bad = service.preview("order_closed", {"subject": "s", "html": "<p>{{ total }}</p>",
                                           "text": ""}, {**ORDER, "total": [1, 2]})
    assert not bad.ok and bad.errors[0].field == "data.total"
