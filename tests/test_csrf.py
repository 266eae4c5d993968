"""CSRF: every form and every htmx non-GET request needs the session's token."""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import HTTPException

from dashboard.extensions import db
from dashboard.models import User

from .conftest import PASSWORD


@pytest.fixture
def csrf_on(app):
    """Turn CSRF protection on, as in production (the test config turns it off)."""
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def body_token(html: str) -> str:
    """The token htmx sends: `hx-headers` on <body>."""
    match = re.search(r"<body[^>]*hx-headers='([^']*)'", html)
    assert match, "the <body> carries no hx-headers"
    return json.loads(match.group(1))["X-CSRFToken"]


def user_count() -> int:
    """How many staff users exist."""
    return db.session.scalar(select(func.count(User.id)))


def test_a_form_post_without_token_is_refused_and_changes_nothing(admin_client, csrf_on):
    """Creating a user without the token answers 400 and creates nobody."""
    before = user_count()
    response = admin_client.post("/users/", data={
        "email": "new@staff.example.com", "role": "support", "password": PASSWORD,
    })
    assert response.status_code == 400
    assert user_count() == before


def test_an_htmx_post_without_token_is_refused_and_changes_nothing(admin_client, make_user,
                                                                    csrf_on):
    """An htmx request without X-CSRFToken cannot deactivate anyone."""
    colleague = make_user("support")
    response = admin_client.post(f"/users/{colleague.id}", data={"active": "0"},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 400
    db.session.refresh(colleague)
    assert colleague.active is True


def test_a_wrong_token_is_refused(admin_client, make_user, csrf_on):
    """A made-up token is no better than none."""
    colleague = make_user("support")
    response = admin_client.post(f"/users/{colleague.id}", data={"active": "0"},
                                 headers={"HX-Request": "true", "X-CSRFToken": "forged"})
    assert response.status_code == 400
    db.session.refresh(colleague)
    assert colleague.active is True


def test_htmx_requests_are_accepted_with_the_token_from_the_body(admin_client, make_user,
                                                                  csrf_on):
    """The token in `hx-headers` on <body>, sent as X-CSRFToken, lets the change through."""
    colleague = make_user("support")
    token = body_token(admin_client.get("/users/").get_data(as_text=True))
    response = admin_client.post(f"/users/{colleague.id}", data={"active": "0"},
                                 headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    db.session.refresh(colleague)
    assert colleague.active is False


def test_a_form_with_its_hidden_token_is_accepted(admin_client, csrf_on):
    """The users form carries its own token field and goes through."""
    html = admin_client.get("/users/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)
    response = admin_client.post("/users/", data={
        "csrf_token": token, "email": "new@staff.example.com", "role": "support",
        "password": PASSWORD,
    })
    assert response.status_code == 302
    assert db.session.scalar(select(User).where(User.email == "new@staff.example.com"))


def test_another_sessions_token_is_refused(app, admin_client, make_user, login, csrf_on):
    """A token is bound to its session: one stolen from a page of another user does not work."""
    colleague = make_user("support")
    app.config["WTF_CSRF_ENABLED"] = False
    other = login(app.test_client(), make_user("admin"))
    app.config["WTF_CSRF_ENABLED"] = True
    token = body_token(other.get("/users/").get_data(as_text=True))
    response = admin_client.post(f"/users/{colleague.id}", data={"active": "0"},
                                 headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 400
    db.session.refresh(colleague)
    assert colleague.active is True


def test_the_login_form_needs_its_token(client, make_user, csrf_on):
    """Login CSRF: a foreign page cannot log a browser into someone else's account."""
    user = make_user("support")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_logging_out_needs_the_token(admin_client, csrf_on):
    """A foreign page cannot log staff out."""
    assert admin_client.post("/logout").status_code == 400
    assert admin_client.get("/").status_code == 200


def test_the_refusal_is_an_htmx_partial_for_htmx_requests(admin_client, make_user, csrf_on):
    """htmx gets the error fragment, not a whole page to swap into a row."""
    colleague = make_user("support")
    response = admin_client.post(f"/users/{colleague.id}", data={"active": "0"},
                                 headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert 'id="error"' in html
    assert "<html" not in html


def test_the_api_is_exempt_from_csrf(app, client, csrf_on):
    """API clients authenticate with a bearer key, never a cookie: no token, and 401 not 400."""
    try:
        app.url_map.bind("localhost").match("/api/v1/notifications", method="POST")
    except HTTPException:
        pytest.skip("the notifications API is not registered yet")
    response = client.post("/api/v1/notifications", json={})
    assert response.status_code == 401
