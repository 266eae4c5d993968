"""Staff login: logging in and out, no account enumeration, throttling, safe redirects."""
from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

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


def age_attempts(seconds: float) -> None:
    """Move every recorded attempt `seconds` into the past (as if time had passed)."""
    for attempt in db.session.scalars(select(LoginAttempt)):
        attempt.at -= timedelta(seconds=seconds)
    db.session.commit()


def test_after_five_failures_the_next_attempt_waits_even_with_the_right_password(en_client,
                                                                                 make_user):
    """The sixth attempt within 2 s of the fifth failure is refused (429, Retry-After) without
    looking at the password; once the wait is over the owner gets in."""
    user = make_user("support")
    for _ in range(5):
        assert post_login(en_client, user.email, WRONG).status_code == 401
    response = post_login(en_client, user.email, PASSWORD)
    assert response.status_code == 429
    assert login_error(response) == "Too many failed attempts. Try again in 2 seconds."
    assert response.headers["Retry-After"] == "2"
    assert en_client.get("/").status_code == 302
    age_attempts(3)
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


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
    age_attempts(16 * 60)
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


def test_the_account_throttle_is_per_account(en_client, make_user):
    """Someone hammering one account does not lock out a colleague."""
    victim, colleague = make_user("support"), make_user("support")
    for _ in range(5):
        post_login(en_client, victim.email, WRONG)
    assert post_login(en_client, colleague.email, PASSWORD).status_code == 302


def failures(email: str, count: int, last_seconds_ago: float, spacing: float = 1.0,
             ips=None) -> None:
    """Record `count` failed attempts on an account, the latest `last_seconds_ago` ago."""
    now = utcnow()
    for n in range(count):
        db.session.add(LoginAttempt(
            email=email, success=False, ip=(ips or [None])[n % len(ips or [None])],
            at=now - timedelta(seconds=last_seconds_ago + (count - 1 - n) * spacing)))
    db.session.commit()


def test_each_further_failure_doubles_the_wait(en_client, make_user):
    """Six failures: 4 s after the last one; seven: 8 s (less the seconds a slow run took)."""
    user = make_user("support")
    started = time.monotonic()
    failures(user.email, 6, last_seconds_ago=1)
    response = post_login(en_client, user.email, PASSWORD)
    late = math.ceil(time.monotonic() - started)
    assert response.status_code == 429
    assert 3 - late <= int(response.headers["Retry-After"]) <= 3
    started = time.monotonic()
    failures(user.email, 1, last_seconds_ago=1)
    response = post_login(en_client, user.email, PASSWORD)
    late = math.ceil(time.monotonic() - started)
    assert 7 - late <= int(response.headers["Retry-After"]) <= 7


def test_the_account_owner_waits_at_most_a_minute_however_many_failures(en_client, make_user):
    """Thirty wrong passwords from thirty addresses do not lock the owner out: a minute after
    the last one, the right password works (it used to take 15 minutes)."""
    user = make_user("support")
    ips = [f"198.51.100.{n}" for n in range(30)]
    failures(user.email, 30, last_seconds_ago=50, spacing=10, ips=ips)
    response = post_login(en_client, user.email, PASSWORD)
    assert response.status_code == 429 and 9 <= int(response.headers["Retry-After"]) <= 11
    age_attempts(11)
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


def test_one_address_trying_many_accounts_is_slowed(app, make_user):
    """Ten failures on ten accounts from one address: the eleventh attempt from there waits,
    whatever the account (even a right password); other addresses are not slowed."""
    attacker = app.test_client()
    attacker.environ_base.update(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR="203.0.113.66")
    for n in range(10):
        assert post_login(attacker, f"guess{n}@staff.example.com", WRONG).status_code == 401
    user = make_user("support")
    refused = post_login(attacker, user.email, PASSWORD)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    elsewhere = app.test_client()
    elsewhere.environ_base.update(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR="192.0.2.10")
    assert post_login(elsewhere, user.email, PASSWORD).status_code == 302


def test_an_address_keeps_being_slowed_up_to_15_minutes(app, make_user):
    """Forty failures from one address keep it waiting long after the accounts' own waits
    ended; its own successful login does not reset the count (an attacker's account)."""
    attacker = app.test_client()
    attacker.environ_base.update(HTTP_ACCEPT_LANGUAGE="en", REMOTE_ADDR="203.0.113.66")
    now = utcnow()
    for n in range(40):
        db.session.add(LoginAttempt(email=f"guess{n}@staff.example.com", ip="203.0.113.66",
                                    success=False, at=now - timedelta(seconds=300 - n)))
    db.session.commit()
    own = make_user("support")
    response = post_login(attacker, own.email, PASSWORD)
    assert response.status_code == 429
    assert 500 <= int(response.headers["Retry-After"]) <= 15 * 60


def test_attempts_refused_by_the_throttle_do_not_lengthen_the_wait(en_client, make_user):
    """Hammering during the wait is refused without a password check and not counted: nine
    failures owe 32 s, and 32 s later the owner gets in (twenty more counted would owe 60)."""
    user = make_user("support")
    failures(user.email, 9, last_seconds_ago=0)
    for _ in range(20):
        assert post_login(en_client, user.email, WRONG).status_code == 429
    rows = db.session.scalars(select(LoginAttempt).where(LoginAttempt.throttled.is_(True))).all()
    assert len(rows) == 20 and not any(row.success for row in rows)
    age_attempts(33)
    assert post_login(en_client, user.email, PASSWORD).status_code == 302


def test_two_concurrent_attempts_cannot_both_slip_under_the_limit(app, make_user):
    """Four failures leave one free attempt: two attempts racing for it, each checking a
    real (slow) scrypt hash, get one answer 401 and one 429, never two password checks."""
    import threading

    from werkzeug.security import generate_password_hash

    user = make_user("support")
    user.password_hash = generate_password_hash(PASSWORD, method="scrypt:32768:8:1")
    db.session.commit()
    email = user.email  # read here: the threads must not touch this thread's session
    failures(email, 4, last_seconds_ago=1)
    barrier = threading.Barrier(2)
    statuses = []

    def attempt():
        with app.app_context():  # each thread: its own session and database connection
            client = app.test_client()
            barrier.wait()
            statuses.append(post_login(client, email, WRONG).status_code)
            db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [401, 429]


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
    import dashboard.services.accounts.users

    checks = []

    def counting(real):
        def check(stored, password):
            checks.append(stored)
            return real(stored, password)
        return check

    for module in (dashboard.models, dashboard.services.accounts.users):
        monkeypatch.setattr(module, "check_password_hash", counting(module.check_password_hash))
    inactive = make_user("support")
    inactive.active = False
    db.session.commit()
    post_login(en_client, "nobody@staff.example.com", WRONG)
    post_login(en_client, inactive.email, PASSWORD)
    assert len(checks) == 2


@pytest.fixture
def secure_cookies(app):
    """The app as deployed behind HTTPS: its cookies are Secure."""
    app.config["SESSION_COOKIE_SECURE"] = True
    yield
    app.config["SESSION_COOKIE_SECURE"] = False


def test_the_login_page_says_a_secure_cookie_cannot_work_over_plain_http(app, secure_cookies):
    """On an internal host over http the browser drops the Secure cookie: the page says so."""
    page = app.test_client().get("/login", base_url="http://postino.intranet")
    text = page.get_data(as_text=True)
    assert 'id="plain-http"' in text and "your browser will not keep the login" in text
    assert "Open http://postino.example.com instead" not in text  # the public URL is http
    assert "https://postino.intranet/login" in text


def test_the_login_page_warns_that_plain_http_is_unencrypted(app):
    """Without Secure cookies login works over http, but the page says it is not encrypted."""
    page = app.test_client().get("/login", base_url="http://postino.intranet")
    assert "This connection is not encrypted (plain HTTP)" in page.get_data(as_text=True)


@pytest.mark.parametrize("base_url", ["https://postino.intranet", "http://localhost:5000",
                                      "http://127.0.0.1:5000"])
def test_https_and_localhost_log_in_without_a_warning(app, secure_cookies, base_url):
    """Browsers keep Secure cookies over HTTPS and on localhost: nothing to warn about."""
    page = app.test_client().get("/login", base_url=base_url)
    assert 'id="plain-http"' not in page.get_data(as_text=True)


def test_forwarded_headers_count_only_behind_configured_proxies(app, test_config,
                                                                secure_cookies):
    """X-Forwarded-Proto/-For are believed only with POSTINO_TRUSTED_PROXIES set: anyone could
    send them otherwise."""
    from dashboard import create_app

    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    direct = app.test_client().get("/login", base_url="http://postino.intranet",
                                   headers=headers)
    assert 'id="plain-http"' in direct.get_data(as_text=True)
    proxied = create_app({**test_config, "POSTINO_TRUSTED_PROXIES": 1,
                          "SESSION_COOKIE_SECURE": True})
    with proxied.app_context():
        page = proxied.test_client().get("/login", base_url="http://postino.intranet",
                                         headers=headers)
        assert 'id="plain-http"' not in page.get_data(as_text=True)
        proxied.test_client().post("/login", data={"email": "x@staff.example.com",
                                                   "password": WRONG}, headers=headers)
        db.session.remove()
        db.engine.dispose()
    ips = db.session.scalars(select(LoginAttempt.ip)).all()
    assert ips == ["203.0.113.7"]
