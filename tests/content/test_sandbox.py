"""The rendering sandbox: no way out to Python, bounded time and size, errors with lines."""
from __future__ import annotations

import time

import pytest

from dashboard.services.content import render

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ data.update({'x': 1}) }}",
    "{{ '{0.__class__}'.format(data) }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_reaching_python_internals_is_refused_with_a_clear_message(source):
    """Attribute tricks and mutation are refused as 'not allowed', naming the part and line."""
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "{% accepts data as object %}s", "html": "\n" + source},
                             {"data": {}})
    assert "not allowed" in error.value.message
    assert error.value.part == "html" and error.value.line == 2


@pytest.mark.parametrize("source", [
    "{{ 'a' * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'x'|center(999999999) }}",
    "{{ ('a' * 1000000)|replace('a', 'bbbbbbbbbbbbbbbbbbbb') }}",
])
def test_outsized_strings_are_refused_before_they_are_built(source):
    """Repetition, powers and paddings that would eat memory are refused at once."""
    started = time.monotonic()
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "s", "html": source}, {})
    assert "not allowed" in error.value.message
    assert time.monotonic() - started < 1


def test_a_runaway_loop_is_interrupted(monkeypatch):
    """A loop with no calls inside is stopped by the watchdog near the time budget."""
    monkeypatch.setattr(render, "MAX_RENDER_SECONDS", 0.3)
    source = "{% set s = 'a' * 1000000 %}{% for i in s %}{% for j in s %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "s", "html": source}, {})
    assert "too long" in error.value.message
    assert time.monotonic() - started < 3
    assert render.render_source({"subject": "ok", "html": "{{ 1 + 1 }}", "text": "t"}, {})[1]
    time.sleep(1)  # a late interrupt would hit us here


def test_template_size_is_capped():
    """A part over 200 KB is refused before it is compiled."""
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "s", "html": "x" * (render.MAX_TEMPLATE_BYTES + 1)}, {})
    assert "200 KB" in error.value.message and error.value.part == "html"


def test_a_missing_variable_names_the_variable_and_its_line():
    """StrictUndefined: the error says which variable and on which line of which part."""
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "s", "html": "<p>\n{{ order_numbre }}\n</p>"}, {})
    assert error.value.field == "data.order_numbre"
    assert error.value.line == 2 and error.value.part == "html"


def test_a_syntax_error_carries_its_line():
    """A broken tag reports the line where Jinja stopped."""
    with pytest.raises(render.RenderError) as error:
        render.render_source({"subject": "s", "html": "ok\nok\n{% if x %}"}, {"x": 1})
    assert error.value.line == 3 and "syntax error" in error.value.message


def test_only_the_shared_layout_can_be_loaded():
    """An override may extend layout.html; any other name, or a path, is refused."""
    subject, html, _ = render.render_source(
        {"subject": "Hi", "html": '{% extends "layout.html" %}{% block content %}<p>x</p>'
                                  "{% endblock %}"}, {})
    assert "<h1" in html and "Hi" in html
    for name in ("../../../etc/passwd", "it.html", "/etc/hosts"):
        with pytest.raises(render.RenderError) as error:
            render.render_source({"subject": "s", "html": f'{{% include "{name}" %}}'}, {})
        assert "unknown template" in error.value.message


def test_a_subject_must_stay_on_one_line():
    """A newline smuggled in through data cannot split the Subject header."""
    with pytest.raises(render.RenderError):
        render.render_source({"subject": "{{ x }}", "html": "h"}, {"x": "a\nBcc: x@y.z"})


def test_check_source_lists_unknown_variables_with_their_lines():
    """Static check: every variable outside the catalog is reported with part and line."""
    problems = render.check_source(
        {"subject": "{{ order_number }}", "html": "<p>\n{{ totale }}</p>", "text": ""},
        frozenset({"order_number"}))
    assert [(p.part, p.line, p.field) for p in problems] == [("html", 2, "data.totale")]


def test_derived_text_keeps_links():
    """Without a text part, the plain text comes from the HTML with its links."""
    _, _, text = render.render_source(
        {"subject": "s", "html": '<p>Go <a href="https://x.example.com/a">there</a></p>'}, {})
    assert text == "Go there: https://x.example.com/a\n"


def test_a_data_key_named_like_a_render_argument_is_just_data():
    """Keys such as "self" in the data do not break rendering (data is passed as a mapping)."""
    subject, html, _text = render.render_source(
        {"subject": "Ciao {{ name }}", "html": "<p>{{ name }}</p>"},
        {"self": "x", "name": "Giulia"},
    )
    assert subject == "Ciao Giulia" and "Giulia" in html


MEMORY_BOMBS = {
    "doubling with ~": "{% set ns = namespace(s='a' * 1000000) %}{% for i in range(9) %}"
                       "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling with +": "{% set ns = namespace(s=['a' * 100000]) %}{% for i in range(20) %}"
                       "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|join|length }}",
    "printing in a loop": "{% set x = 'a' * 1000000 %}{% for i in range(300) %}{{ x }}"
                          "{% endfor %}",
    "a set block": "{% set x = 'a' * 1000000 %}{% set big %}{% for i in range(300) %}{{ x }}"
                   "{% endfor %}{% endset %}{{ big|length }}",
    "a macro": "{% macro m() %}{{ 'a' * 1000000 }}{% endmacro %}{% for i in range(300) %}"
               "{{ m() }}{% endfor %}",
    "the join filter": "{{ range(300)|join('a' * 1000000)|length }}",
    "str.join": "{{ ('a' * 1000000).join(['b'] * 300)|length }}",
    "a printed tuple": "{% set x = 'a' * 1000000 %}{{ (x, x, x) }}",
    "indent": "{{ ('a\\n' * 500000)|indent(9999, true)|length }}",
    "expandtabs": "{{ ('\\t' * 1000000).expandtabs(1000)|length }}",
    "tojson of a nested list": "{% set x = ['a' * 600000] %}{{ [x, x, x, x]|tojson|length }}",
}


@pytest.mark.parametrize("source", MEMORY_BOMBS.values(), ids=MEMORY_BOMBS.keys())
def test_growing_text_is_stopped_at_the_size_cap_before_it_eats_memory(source):
    """Loops are bounded in time, and now output and intermediate strings in size: each
    attempt stops with 'too large' within a few megabytes (a 512 MB string was built)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(render.RenderError) as error:
            render.render_source({"subject": "s", "html": source}, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "too large" in error.value.message
    assert error.value.part == "html"
    assert peak < 32 * 1024 * 1024, f"{peak / 1e6:.0f} MB"


def test_templates_under_the_cap_still_use_the_same_tools():
    """Loops, joins, concatenation, filters with the environment (wordwrap) keep working."""
    source = ("{% set ns = namespace(s='') %}{% for i in range(200) %}{% set ns.s = ns.s ~ i %}"
              "{% endfor %}{{ ns.s|length }}|{{ range(5)|join(',') }}|{{ 'ab cd'|wordwrap(2) }}"
              "|{{ ('x' + 'y') * 3 }}|{{ 'a\\nb'|indent(2, true) }}")
    html = render.render_source({"subject": "s", "html": source}, {})[1]
    assert "490|0,1,2,3,4|ab\ncd|xyxyxy|  a\n  b" in html


def test_the_api_refuses_data_that_would_render_too_large(app, make_customer, api_post, admin):
    """A saved template that repeats a variable renders fine with the sample, but a huge value
    would make a huge email: 422 template_error saying so, nothing stored."""
    from sqlalchemy import func, select

    from dashboard.extensions import db
    from dashboard.models import Message
    from dashboard.notifications import CATALOG
    from dashboard.services.content import templates

    customer, key = make_customer()
    templates.save(customer, "order_closed", "it", {
        "subject": "Ordine {{ order_number }}",
        "html": "{% for i in range(1000) %}<p>{{ customer_name }}</p>{% endfor %}"}, admin)
    data = {**CATALOG["order_closed"]["sample"], "customer_name": "Bar " * 1000}
    response = api_post(key, {"event": "order_closed", "to": "a@example.com", "data": data})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "template_error"
    assert "too large" in response.json["error"]["message"]
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_the_editor_preview_says_a_template_is_too_large(admin_client, make_customer):
    """The preview shows the size error like any other, with its part."""
    customer, _ = make_customer()
    body = admin_client.post(
        f"/templates/{customer.code}/order_closed/it/preview", headers={"HX-Request": "true"},
        data={"subject": "s", "html": MEMORY_BOMBS["doubling with ~"], "text": "",
              "sample": ""}).get_data(as_text=True)
    assert "too large to render" in body and "2,000,000 characters" in body
