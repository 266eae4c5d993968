"""Staff login: logging in and out, no account enumeration, throttling, safe redirects."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from dashboard.extensions import db
from dashboard.models import LoginAttempt, User, utcnow

from .conftest import PASSWORD

WRONG = "not the password"


@pytest.fixture
def en_client(app):
    """An anonymous client whose browser asks for English."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def post_login(client, email, password, **extra):
    """Submit the login form."""
    return client.post("/login", data={"email": email, "password": password, **extra})


def login_error(response) -> str:
    """The error paragraph of the login page."""
    html = response.get_data(as_text=True)
    start = html.index('role="alert">') + len('role="alert">')
    return html[start:html.index("</p>", start)]


def remember_cookie(response) -> str | None:
    """The remember-me cookie set by a response (a deletion with an empty value does not count)."""
    for cookie in response.headers.getlist("Set-Cookie"):
        if cookie.startswith("remember_token=") and not cookie.startswith("remember_token=;"):
            return cookie
    return None


def test_staff_log_in_with_email_and_password_and_land_on_home(en_client, make_user):
    """The right password opens a session and redirects Home."""
    user = make_user("support")
    response = post_login(en_client, user.email, PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = en_client.get("/")
    assert home.status_code == 200
    assert user.email in home.get_data(as_text=True)
    assert db.session.get(User, user.id).last_login_at is not None


def test_the_email_is_matched_case_insensitively(en_client, make_user):
    """Staff may type their address with capitals."""
    make_user("support", email="Mario.Rossi@staff.example.com")
    assert post_login(en_client, "  MARIO.ROSSI@staff.example.com ", PASSWORD).status_code == 302


def test_logging_out_ends_the_session(en_client, make_user, login):
    """After logout, pages send the visitor back to the login form."""
    login(en_client, make_user("billing"))
    response = en_client.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    after = en_client.get("/")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/login")


def test_logout_is_not_possible_with_a_plain_link(en_client, make_user, login):
    """GET /logout is refused, so an image or link elsewhere cannot log staff out."""
    login(en_client, make_user("billing"))
    assert en_client.get("/logout").status_code == 405
    assert en_client.get("/").status_code == 200


def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(en_client, make_user):
    """The message never reveals whether an account exists."""
    user = make_user("support")
    wrong_password = post_login(en_client, user.email, WRONG)
    unknown = post_login(en_client, "nobody@staff.example.com", WRONG)
    assert wrong_password.status_code == unknown.status_code == 401
    assert login_error(wrong_password) == login_error(unknown) == "Wrong email or password."


def test_a_deactivated_user_cannot_log_in(en_client, make_user):
    """Deactivation refuses even the right password, with the same neutral message."""
    user = make_user("support")
    user.active = False
    db.session.commit()
    response = post_login(en_client, user.email, PASSWORD)
    assert response.status_code == 401
    assert login_error(response) == "Wrong email or password."


def test_a_deactivated_user_loses_an_open_session(en_client, make_user, login):
    """Deactivating someone who is logged in ends their access at the next request."""
    user = make_user("support")
    login(en_client, user)
    user.active = False
    db.session.commit()
    response = en_client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_an_empty_form_asks_for_email_and_password(en_client):
    """Submitting nothing answers 422 with a message, not a crash."""
    response = en_client.post("/login", data={})
    assert response.status_code == 422
    assert login_error(response) == "Enter your email and password."


def test_five_failures_lock_the_account_even_for_the_right_password(en_client, make_user):
    """After 5 failures in 15 minutes further attempts are refused with 429 and a clear message."""
    user = make_user("support")
    for _ in range(5):
        assert post_login(en_client, user.email, WRONG).status_code == 401
    response = post_login(en_client, user.email, PASSWORD)
    assert response.status_code == 429
    assert login_error(response) == "Too many failed attempts. Try again in 15 minutes."
    assert en_client.get("/").status_code == 302


def test_four_failures_do_not_lock(en_client, make_user):
    """The fifth attempt may still be the right one."""
    user = make_user("support")
    for _ in range(4):
        post_login(en_client, user.email, WRONG)
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


def test_unknown_accounts_are_throttled_the_same_way(en_client):
    """Throttling does not reveal which addresses exist either."""
    for _ in range(5):
        post_login(en_client, "nobody@staff.example.com", WRONG)
    response = post_login(en_client, "nobody@staff.example.com", WRONG)
    assert response.status_code == 429


def test_throttling_counts_the_address_whatever_its_case(en_client, make_user):
    """Changing capitals does not buy more attempts."""
    user = make_user("support")
    for attempt in range(5):
        address = user.email.upper() if attempt % 2 else user.email
        post_login(en_client, address, WRONG)
    assert post_login(en_client, user.email.upper(), PASSWORD).status_code == 429


def test_the_lock_ends_when_the_failures_are_older_than_15_minutes(en_client, make_user):
    """Failures outside the window no longer count."""
    user = make_user("support")
    for _ in range(5):
        post_login(en_client, user.email, WRONG)
    db.session.execute(update(LoginAttempt).values(at=utcnow() - timedelta(minutes=16)))
    db.session.commit()
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


def test_the_throttle_is_per_address(en_client, make_user):
    """Someone hammering one account does not lock out a colleague."""
    victim, colleague = make_user("support"), make_user("support")
    for _ in range(5):
        post_login(en_client, victim.email, WRONG)
    assert post_login(en_client, colleague.email, PASSWORD).status_code == 302


def test_every_attempt_is_recorded(en_client, make_user):
    """Attempts are kept with their outcome (the throttle counts them)."""
    user = make_user("support")
    post_login(en_client, user.email, WRONG)
    post_login(en_client, user.email, PASSWORD)
    outcomes = db.session.scalars(
        select(LoginAttempt.success).where(LoginAttempt.email == user.email)
        .order_by(LoginAttempt.id)
    ).all()
    assert outcomes == [False, True]


def test_after_login_a_local_next_page_is_followed(en_client, make_user):
    """Staff sent to the login form from a page go back to it."""
    user = make_user("admin")
    response = en_client.post("/login?next=/users/?page=2",
                              data={"email": user.email, "password": PASSWORD})
    assert response.headers["Location"] == "/users/?page=2"


@pytest.mark.parametrize("target", [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "/\t/evil.example/",
    "javascript:alert(1)",
    "evil.example",
])
def test_after_login_a_foreign_next_is_ignored(en_client, make_user, target):
    """`next` never leads off the site: anything but a local path goes Home."""
    user = make_user("support")
    response = en_client.post("/login", query_string={"next": target},
                              data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_anonymous_visitors_are_sent_to_login_with_the_page_as_next(en_client):
    """A protected page redirects to the login form, remembering where to come back."""
    response = en_client.get("/users/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fusers%2F"


@pytest.mark.parametrize("request_kind, expected_next", [
    # a plain page: itself, with its search
    ({"path": "/log/?q=ORD-7&status=failed"}, "/log/?q=ORD-7&status=failed"),
    # an htmx search refining the page it came from: the search just typed
    ({"path": "/log/?q=ORD-77", "headers": {
        "HX-Request": "true", "HX-Current-URL": "http://localhost/log/?q=ORD-7"}},
     "/log/?q=ORD-77"),
    # any other htmx request (the banners' poll, a lift form): the page on screen
    ({"path": "/banners", "headers": {
        "HX-Request": "true", "HX-Current-URL": "http://localhost/suppressions/?q=rossi"}},
     "/suppressions/?q=rossi"),
    # a form posted after the session expired: the page it was posted from, not the POST url
    ({"path": "/language", "method": "POST", "headers": {
        "Referer": "http://localhost/log/?q=ORD-7"}}, "/log/?q=ORD-7"),
    # …and never another site
    ({"path": "/language", "method": "POST", "headers": {"Referer": "https://evil.example/x"}},
     None),
])
def test_an_expired_session_returns_to_the_search_after_login(en_client, make_user,
                                                              request_kind, expected_next):
    """Logging in again lands on the search the user was looking at."""
    from urllib.parse import parse_qs, urlsplit

    response = en_client.open(request_kind["path"], method=request_kind.get("method", "GET"),
                              headers=request_kind.get("headers", {}))
    location = response.headers.get("HX-Redirect") or response.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert urlsplit(location).path == "/login"
    assert query.get("next", [None])[0] == expected_next
    user = make_user("admin")
    after = en_client.post(location, data={"email": user.email, "password": PASSWORD})
    assert after.headers["Location"] == (expected_next or "/")


def test_a_form_posted_after_the_session_expired_asks_to_log_in_again(app, en_client):
    """With CSRF on, the stale form's token no longer matches: instead of "Form expired",
    the login form, then back to the page the form was on."""
    app.config["WTF_CSRF_ENABLED"] = True
    response = en_client.post("/suppressions/1/lift", data={"reason": "x"},
                              headers={"HX-Request": "true",
                                       "HX-Current-URL": "http://localhost/suppressions/?q=a"})
    assert response.headers["HX-Redirect"] == "/login?next=%2Fsuppressions%2F%3Fq%3Da"


def test_remember_me_is_off_by_default(en_client, make_user):
    """Without ticking the box no long-lived cookie is set, and the box is unticked."""
    page = en_client.get("/login").get_data(as_text=True)
    checkbox = page[page.index('name="remember"') - 200:page.index('name="remember"') + 100]
    assert "checked" not in checkbox
    user = make_user("support")
    response = post_login(en_client, user.email, PASSWORD)
    assert remember_cookie(response) is None


def test_remember_me_sets_a_long_lived_httponly_cookie_when_ticked(en_client, make_user):
    """Ticking the box is the only way to stay logged in across browser restarts."""
    user = make_user("support")
    response = post_login(en_client, user.email, PASSWORD, remember="y")
    cookie = remember_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_a_logged_in_user_visiting_the_login_page_goes_home(en_client, make_user, login):
    """The login form is not shown again to someone already in."""
    login(en_client, make_user("support"))
    response = en_client.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_an_unknown_account_costs_a_password_check_too(en_client, make_user, monkeypatch):
    """Unknown and deactivated accounts pay for a hash check, so timing reveals nothing."""
    import dashboard.models
    import dashboard.services.users

    checks = []

    def counting(real):
        def check(stored, password):
            checks.append(stored)
            return real(stored, password)
        return check

    for module in (dashboard.models, dashboard.services.users):
        monkeypatch.setattr(module, "check_password_hash", counting(module.check_password_hash))
    inactive = make_user("support")
    inactive.active = False
    db.session.commit()
    post_login(en_client, "nobody@staff.example.com", WRONG)
    post_login(en_client, inactive.email, PASSWORD)
    assert len(checks) == 2
