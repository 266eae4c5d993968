"""The role matrix, walked from `app.url_map`, so every view added later is covered too."""
from __future__ import annotations

import uuid
from importlib.util import find_spec

import pytest
from werkzeug.routing import AnyConverter, FloatConverter, IntegerConverter, Rule, UUIDConverter

from dashboard import create_app
from dashboard.auth import public, roles, view_access
from dashboard.models import ROLES

from .conftest import PASSWORD

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
FALLBACK_VALUES = ("x", "1", "a1b2c3d4e5f6a1b2c3d4e5f6", "x.gif", "2024-01-01")


def candidate_values(converter) -> tuple:
    """Dummy values a URL argument of this converter may take, best first."""
    if isinstance(converter, IntegerConverter):
        return (1,)
    if isinstance(converter, FloatConverter):
        return (1.0,)
    if isinstance(converter, UUIDConverter):
        return (uuid.UUID(int=1),)
    if isinstance(converter, AnyConverter):
        return tuple(sorted(converter.items))
    return FALLBACK_VALUES


def dummy_path(app, rule: Rule, method: str) -> str:
    """A concrete path for `rule` built from dummy values, checked to route back to it."""
    adapter = app.url_map.bind("localhost")
    names = sorted(rule.arguments - set(rule.defaults or {}))
    options = [candidate_values(rule._converters[name]) for name in names]
    for attempt in range(max((len(o) for o in options), default=1)):
        values = {name: opts[min(attempt, len(opts) - 1)] for name, opts in zip(names, options, strict=True)}
        built = rule.build(values, append_unknown=False)
        if built is None:
            continue
        path = built[1]
        try:
            endpoint, _ = adapter.match(path, method=method)
        except Exception:  # a routing miss: try the next dummy value
            continue
        if endpoint == rule.endpoint:
            return path
    raise AssertionError(f"cannot build a URL for {rule.rule} ({rule.endpoint})")


def view_rules(app):
    """Every (rule, method, kind, allowed roles) of the app, static files aside."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        kind, allowed = view_access(app.view_functions[rule.endpoint])
        for method in METHODS:
            if method in rule.methods:
                yield rule, method, kind, allowed


def required_roles(allowed: frozenset) -> list[str]:
    """What the 403 page names: the roles besides admin, or admin alone."""
    return sorted(allowed - {"admin"}) or ["admin"]


@pytest.fixture
def role_cookies(app, make_user, login):
    """A logged-in session cookie per role (users speak English), reusable by fresh clients."""
    cookies = {}
    for role in ROLES:
        client = login(app.test_client(), make_user(role, language="en"))
        cookies[role] = client.get_cookie("session").value
    return cookies


def request_as(app, cookie: str | None, method: str, path: str, **kwargs):
    """One request from a fresh client carrying `cookie` (so a logout cannot leak into the next)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    if cookie is not None:
        client.set_cookie("session", cookie, domain="localhost")
    return client.open(path, method=method, buffered=True, **kwargs)


def test_the_url_map_has_staff_pages_to_check(app):
    """The walk below is not vacuous: it sees the staff pages and their roles."""
    kinds = {kind for _, _, kind, _ in view_rules(app)}
    assert {"public", "roles"} <= kinds
    endpoints = {rule.endpoint for rule, *_ in view_rules(app)}
    assert {"home.index", "users.index", "auth.login", "log.index"} <= endpoints


def test_every_view_declares_who_may_use_it(app):
    """No endpoint is unmarked: each is @public, @api_view or @roles(...)."""
    unmarked = sorted({rule.endpoint for rule, _, kind, _ in view_rules(app) if kind == "none"})
    assert unmarked == []


def test_anonymous_visitors_are_sent_to_login_from_every_staff_view(app):
    """Without a session every roles-view redirects to the login form."""
    wrong = []
    for rule, method, kind, _ in view_rules(app):
        if kind != "roles":
            continue
        path = dummy_path(app, rule, method)
        response = request_as(app, None, method, path)
        location = response.headers.get("Location", "")
        if response.status_code != 302 or not location.startswith("/login"):
            wrong.append(f"{method} {path}: {response.status_code} {location}")
    assert wrong == []


def test_anonymous_htmx_requests_send_the_whole_tab_to_login(app):
    """A fragment request after the session ended redirects the tab (HX-Redirect), never
    swapping the login page into a fragment; `next` is the page the user was on."""
    wrong = []
    for rule, method, kind, _ in view_rules(app):
        if kind != "roles":
            continue
        path = dummy_path(app, rule, method)
        response = request_as(app, None, method, path, headers={
            "HX-Request": "true", "HX-Current-URL": "http://localhost/log/?q=ORD-1"})
        target = response.headers.get("HX-Redirect", "")
        if response.status_code >= 300 or target != "/login?next=%2Flog%2F%3Fq%3DORD-1":
            wrong.append(f"{method} {path}: {response.status_code} {target}")
    assert wrong == []


def test_a_role_not_allowed_gets_403_naming_the_required_role(app, role_cookies):
    """Every roles-view refuses the other roles with a 403 page that says which role is needed."""
    wrong = []
    for rule, method, kind, allowed in view_rules(app):
        if kind != "roles":
            continue
        path = dummy_path(app, rule, method)
        expected = "Required role: " + ", ".join(required_roles(allowed)) + "."
        for role in sorted(set(ROLES) - allowed):
            response = request_as(app, role_cookies[role], method, path)
            html = response.get_data(as_text=True)
            if response.status_code != 403 or expected not in html:
                wrong.append(f"{role} {method} {path}: {response.status_code}")
    assert wrong == []


def test_allowed_roles_are_let_in_everywhere(app, role_cookies):
    """Every role a view allows gets past the check (no 403) and the view does not crash."""
    wrong = []
    for rule, method, kind, allowed in view_rules(app):
        if kind != "roles":
            continue
        path = dummy_path(app, rule, method)
        for role in sorted(allowed):
            response = request_as(app, role_cookies[role], method, path)
            if response.status_code == 403 or response.status_code >= 500:
                wrong.append(f"{role} {method} {path}: {response.status_code}")
    assert wrong == []


def test_public_views_answer_without_login(app):
    """@public views never redirect to the login form."""
    wrong = []
    for rule, method, kind, _ in view_rules(app):
        if kind != "public":
            continue
        path = dummy_path(app, rule, method)
        response = request_as(app, None, method, path)
        if response.headers.get("Location", "").startswith("/login?"):
            wrong.append(f"{method} {path}")
    assert wrong == []


def test_the_403_page_speaks_the_users_language(app, make_user, login):
    """An Italian user reads which role is needed in Italian."""
    client = login(app.test_client(), make_user("billing", language="it"))
    response = client.get("/log/")
    assert response.status_code == 403
    assert "Ruolo richiesto: assistenza." in response.get_data(as_text=True)


def test_htmx_requests_get_the_403_as_a_partial(app, make_user, login):
    """A refused htmx request gets the error fragment to swap, not a whole page."""
    client = login(app.test_client(), make_user("billing", language="en"))
    response = client.get("/users/", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Required role: admin." in html
    assert "<html" not in html


def test_a_view_without_a_mark_is_refused_even_to_admins(test_config, make_user, login):
    """Deny by default: a forgotten decorator closes the page instead of opening it."""
    fresh = create_app(test_config)

    @fresh.route("/forgotten")
    def forgotten():
        return "secret"

    @fresh.route("/open")
    @public
    def opened():
        return "open"

    @fresh.route("/admins")
    @roles("admin")
    def admins():
        return "admins"

    admin = make_user("admin")
    client = fresh.test_client()
    assert client.get("/forgotten").status_code == 302
    assert client.get("/open").status_code == 200
    client.post("/login", data={"email": admin.email, "password": PASSWORD})
    assert client.get("/forgotten").status_code == 403
    assert client.get("/admins").status_code == 200


def test_roles_rejects_a_misspelt_role():
    """@roles("suport") fails at import time instead of silently locking a page."""
    with pytest.raises(ValueError, match="suport"):
        roles("suport")


@pytest.mark.skipif(find_spec("dashboard.blueprints.demo") is None,
                    reason="the demo blueprint is not built yet")
def test_every_demo_view_declares_who_may_use_it(test_config):
    """The views that exist only in demo mode are marked too."""
    demo = create_app({**test_config, "POSTINO_DEMO": True})
    unmarked = sorted({rule.endpoint for rule, _, kind, _ in view_rules(demo) if kind == "none"})
    assert unmarked == []
