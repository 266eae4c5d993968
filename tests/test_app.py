"""The app factory and its configuration: secrets, cookies, security headers."""
from __future__ import annotations

import logging
import stat

import pytest
from flask import Flask

from dashboard import create_app

from .conftest import PASSWORD

SECRET_NAMES = ("SECRET_KEY", "POSTINO_CREDENTIALS_KEY")


@pytest.fixture
def fresh_env(tmp_path, monkeypatch):
    """A clean environment and an empty instance folder for apps built from scratch."""
    for name in ("DATABASE_URL", *SECRET_NAMES):
        monkeypatch.delenv(name, raising=False)
    instance = tmp_path / "instance"
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(instance))
    return instance


@pytest.mark.parametrize("missing", SECRET_NAMES)
def test_a_missing_secret_with_a_shared_database_stops_startup_naming_it(fresh_env, monkeypatch,
                                                                         missing):
    """With PostgreSQL every node must share the secrets, so a missing one is a loud error."""
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://postino@db.invalid/postino")
    for name in SECRET_NAMES:
        if name != missing:
            monkeypatch.setenv(name, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")
    with pytest.raises(RuntimeError, match=missing):
        create_app()
    assert not (fresh_env / "secret_key").exists()
    assert not (fresh_env / "credentials_key").exists()


def test_a_postgresql_url_given_as_config_also_needs_the_secrets(fresh_env):
    """Even when the URL comes from the config mapping, a shared database needs real secrets."""
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app({"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://postino@db.invalid/x"})


def test_the_embedded_default_generates_private_secrets_once(fresh_env, caplog):
    """On the SQLite default the secrets are generated into the instance folder, mode 0600."""
    with caplog.at_level(logging.WARNING, logger="dashboard.config"):
        app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert str(fresh_env) in app.config["SQLALCHEMY_DATABASE_URI"]
    for filename, name in (("secret_key", "SECRET_KEY"),
                           ("credentials_key", "POSTINO_CREDENTIALS_KEY")):
        path = fresh_env / filename
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == app.config[name]
        assert any(filename in record.getMessage() for record in caplog.records)
    again = create_app()
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    assert again.config["POSTINO_CREDENTIALS_KEY"] == app.config["POSTINO_CREDENTIALS_KEY"]


def test_secrets_from_the_environment_win_over_generated_ones(fresh_env, monkeypatch):
    """An operator's SECRET_KEY is used as is and nothing is written to the instance folder."""
    monkeypatch.setenv("SECRET_KEY", "from-the-environment-" + "x" * 32)
    app = create_app()
    assert app.config["SECRET_KEY"] == "from-the-environment-" + "x" * 32
    assert not (fresh_env / "secret_key").exists()


def test_a_short_secret_key_stops_startup_naming_it(fresh_env, monkeypatch):
    """A SECRET_KEY under 32 characters would sign sessions with a guessable key: refused."""
    monkeypatch.setenv("SECRET_KEY", "changeme")
    with pytest.raises(RuntimeError, match="SECRET_KEY is 8 characters long: use at least 32"):
        create_app()


A_FERNET_KEY = "8DGFriaCBub_D9a1SOncTGtbmH4nCV3mqQz1mWis6Q0="  # valid; fixed for test ids


@pytest.mark.parametrize("value", ["not-a-fernet-key", A_FERNET_KEY + ",oops", " , "],
                         ids=["not a key", "a bad second key", "only commas"])
def test_a_malformed_credentials_key_stops_startup_naming_it(fresh_env, monkeypatch, value):
    """A key that cannot encrypt fails at start, not the first time a password is saved."""
    monkeypatch.setenv("POSTINO_CREDENTIALS_KEY", value)
    with pytest.raises(RuntimeError, match="POSTINO_CREDENTIALS_KEY"):
        create_app()


def test_debug_and_tests_may_use_short_development_secrets(fresh_env, monkeypatch):
    """The checks guard deployments; a test or debug app may use a throwaway secret."""
    monkeypatch.setenv("SECRET_KEY", "dev")
    monkeypatch.setenv("POSTINO_CREDENTIALS_KEY", "dev")
    assert create_app({"TESTING": True}).config["SECRET_KEY"] == "dev"
    assert create_app({"DEBUG": True}).config["SECRET_KEY"] == "dev"


def test_the_sqlite_database_and_its_wal_files_are_private(fresh_env):
    """The database holds password hashes and mail: created 0600, and -wal/-shm follow it."""
    from sqlalchemy import text

    from dashboard.extensions import db

    app = create_app()
    with app.app_context():
        with db.engine.connect() as connection:
            connection.execute(text("CREATE TABLE probe (x INTEGER)"))
            connection.execute(text("INSERT INTO probe VALUES (1)"))
            connection.commit()
            for suffix in ("", "-wal", "-shm"):
                path = fresh_env / f"postino.sqlite3{suffix}"
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, suffix
        db.engine.dispose()


@pytest.mark.parametrize("name", ["MAIL_PORT", "POSTINO_DNS_TIMEOUT", "POSTINO_SWEEP_SECONDS"])
def test_a_malformed_number_in_the_environment_is_a_clear_error(fresh_env, monkeypatch, name):
    """A number like MAIL_PORT=abc fails at start, naming the variable, not at first use."""
    monkeypatch.setenv(name, "abc")
    with pytest.raises(RuntimeError, match=name):
        create_app()


def test_cookies_are_secure_when_the_public_url_is_https(fresh_env, monkeypatch):
    """A production app served over HTTPS marks its session and remember cookies Secure."""
    monkeypatch.setenv("POSTINO_PUBLIC_URL", "https://postino.example.com")
    app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True


def test_a_plain_http_public_url_keeps_cookies_usable_and_warns_at_start(fresh_env, monkeypatch,
                                                                         caplog):
    """Over plain http a Secure cookie would be dropped and login fail silently: not Secure,
    and the start log says it is unsafe."""
    monkeypatch.setenv("POSTINO_PUBLIC_URL", "http://postino.intranet:8000")
    with caplog.at_level(logging.WARNING, logger="dashboard"):
        app = create_app()
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["REMEMBER_COOKIE_SECURE"] is False
    assert any("POSTINO_PUBLIC_URL is http://postino.intranet:8000 (plain http)"
               in record.getMessage() for record in caplog.records)
    caplog.clear()
    monkeypatch.setenv("POSTINO_PUBLIC_URL", "http://localhost:5000")
    with caplog.at_level(logging.WARNING, logger="dashboard"):
        create_app()  # a development machine: nothing crosses a network
    assert not any("plain http" in record.getMessage() for record in caplog.records)


def test_an_explicit_cookie_setting_is_respected(fresh_env):
    """A deployment that serves plain HTTP (the demo) can turn Secure off explicitly."""
    app = create_app({"SESSION_COOKIE_SECURE": False})
    assert app.config["SESSION_COOKIE_SECURE"] is False


def test_the_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    """After login the session cookie cannot be read by scripts or sent cross-site."""
    user = make_user("support")
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_every_response_carries_the_security_headers(client):
    """Pages forbid framing, sniffing and foreign scripts."""
    response = client.get("/login")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp


def test_the_default_database_is_sqlite_with_wal_and_foreign_keys(fresh_env):
    """The embedded default turns on WAL and foreign keys for every connection."""
    from sqlalchemy import text

    from dashboard.extensions import db

    app = create_app()
    with app.app_context():
        with db.engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        db.engine.dispose()


def test_the_health_check_answers_without_login(client):
    """/healthz is public and says the database answers."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_the_favicon_is_served_to_anyone_and_linked_from_every_page(client):
    """Browsers ask /favicon.ico on every page: it answers an icon (no login, no 404)."""
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon"
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO header
    page = client.get("/login").get_data(as_text=True)
    assert 'rel="icon" href="/favicon.ico"' in page
    assert client.get("/static/favicon.svg").status_code == 200
