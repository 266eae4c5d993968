"""Shared fixtures: one migrated database per run, a clean slate per test, logged-in clients.

The suite runs on SQLite by default; set TEST_DATABASE_URL (postgresql+psycopg://…) to run the
very same tests on PostgreSQL.
"""
from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from flask import g
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dashboard import create_app
from dashboard.extensions import db

PASSWORD = "correct horse battery"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (aiosmtpd's Controller refuses port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(tmp_dir: Path) -> str:
    """TEST_DATABASE_URL when set (PostgreSQL in CI), else a SQLite file for this run.

    Under pytest-xdist each worker gets a PostgreSQL database of its own (`<name>_gw0`, …,
    created on first use): the suite drops and recreates the schema, so two workers sharing
    one database would empty each other's tables.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_dir / 'test.sqlite3'}"
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and url.startswith("postgresql"):
        url = _worker_database(url, worker)
    return url


def _worker_database(url: str, worker: str) -> str:
    """The URL of this xdist worker's own copy of the test database, created if missing."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    engine = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                       {"n": name})
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _empty_postgresql(tables: list[str]) -> None:
    """DELETE with foreign-key triggers off, then restart the sequences.

    Ten times faster than TRUNCATE on a test's handful of rows (TRUNCATE swaps every table's
    files); a role that may not switch the triggers off falls back to TRUNCATE.
    """
    try:
        with db.session.begin_nested():
            db.session.execute(text("SET LOCAL session_replication_role = replica"))
    except DBAPIError:
        db.session.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                                + " RESTART IDENTITY CASCADE"))
        return
    for table in tables:
        db.session.execute(text(f'DELETE FROM "{table}"'))
    sequences = db.session.scalars(text(
        "SELECT sequence_name FROM information_schema.sequences "
        "WHERE sequence_schema = current_schema()")).all()
    for sequence in sequences:
        db.session.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))


def truncate_all() -> None:
    """Empty every table, fast, keeping the schema."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        _empty_postgresql(tables)
    else:
        # One connection throughout, the PRAGMAs outside the DELETEs' transaction (SQLite
        # ignores them inside one): no pooled connection is left with foreign keys off.
        db.session.commit()
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
            for table in tables:
                connection.exec_driver_sql(f'DELETE FROM "{table}"')
            connection.commit()
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
    db.session.commit()


@pytest.fixture(scope="session")
def test_config(tmp_path_factory) -> dict:
    """The configuration every test app starts from."""
    tmp = tmp_path_factory.mktemp("postino")
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url(tmp),
        "SECRET_KEY": "test-secret-key-of-at-least-32-characters",
        "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "WTF_CSRF_ENABLED": False,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": 1,  # nothing listens: tests that send start their own server
        "MAIL_TIMEOUT": 5,
        "POSTINO_BOUNCE_DOMAIN": "bounces.postino.example.com",
        "POSTINO_SENDER_NOTIFICATION": "Postino Notifiche <notification@postino.example.com>",
        "POSTINO_SENDER_REGISTRATION": "Postino <registration@postino.example.com>",
        "POSTINO_PUBLIC_URL": "http://postino.example.com",
        "SERVER_NAME": None,
    }


class Client(FlaskClient):
    """A test client that forgets the user cached in `g` by an earlier request.

    Tests hold one app context open, which Flask reuses for every request, so Flask-Login's
    per-request cache would otherwise leak one client's user into another client's request.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The suite reads English; tests of the Italian UI ask for it (header or user language).
        self.environ_base.setdefault("HTTP_ACCEPT_LANGUAGE", "en")

    def open(self, *args, **kwargs):
        g.pop("_login_user", None)
        g.pop("_flask_babel", None)  # and the locale Flask-Babel cached for that user
        return super().open(*args, **kwargs)


def pytest_collection_modifyitems(config, items):
    """Tests marked `pg` need PostgreSQL: on SQLite they are skipped, saying why."""
    if (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgresql"):
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL=postgresql+psycopg://…")
    for item in items:
        if item.get_closest_marker("pg") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """Scrypt with a small work factor: the same code path at a fraction of the CPU per login."""
    from werkzeug.security import generate_password_hash

    import dashboard.models
    import dashboard.services.accounts.users

    def cheap(password: str, method: str = "scrypt", salt_length: int = 16) -> str:
        if method == "scrypt":
            method = "scrypt:1024:8:1"
        return generate_password_hash(password, method=method, salt_length=salt_length)

    patch = pytest.MonkeyPatch()
    for module in (dashboard.models, dashboard.services.accounts.users):
        patch.setattr(module, "generate_password_hash", cheap)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def _app(test_config):
    """One application and one migrated schema for the whole run."""
    app = create_app(test_config)
    app.test_client_class = Client
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(_app):
    """The app inside an application context, with empty tables after the test."""
    with _app.app_context():
        yield _app
        db.session.rollback()
        truncate_all()
        db.session.remove()
    for key in ("WTF_CSRF_ENABLED",):
        _app.config[key] = False


@pytest.fixture
def client(app):
    """An anonymous test client."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """The Flask CLI runner."""
    return app.test_cli_runner()


@pytest.fixture
def make_user(app):
    """Factory: make_user(role="support", email=None) -> User with the test PASSWORD."""
    from dashboard.services.accounts import users

    counter = {"n": 0}

    def _make(role: str = "support", email: str | None = None, **kwargs):
        counter["n"] += 1
        email = email or f"{role}{counter['n']}@staff.example.com"
        return users.create_user(email, role, kwargs.pop("password", PASSWORD), **kwargs)

    return _make


@pytest.fixture
def login():
    """login(client, user): log a test client in through the real form."""

    def _login(test_client, user, password: str = PASSWORD):
        response = test_client.post("/login", data={"email": user.email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return test_client

    return _login


@pytest.fixture
def admin(make_user):
    """An admin user."""
    return make_user("admin")


@pytest.fixture
def admin_client(app, admin, login):
    """A client logged in as an admin."""
    return login(app.test_client(), admin)


@pytest.fixture
def support_client(app, make_user, login):
    """A client logged in as support."""
    return login(app.test_client(), make_user("support"))


@pytest.fixture
def billing_client(app, make_user, login):
    """A client logged in as billing."""
    return login(app.test_client(), make_user("billing"))


@pytest.fixture
def make_customer(app):
    """Factory: make_customer(code=None, name=None, **fields) -> (Customer, api_key)."""
    from dashboard.services.accounts import customers

    counter = {"n": 0}

    def _make(code: str | None = None, name: str | None = None, **fields):
        counter["n"] += 1
        code = code or f"CUST{counter['n']}"
        customer, key = customers.create_customer(code, name or f"Customer {counter['n']}")
        for field, value in fields.items():
            setattr(customer, field, value)
        db.session.commit()
        return customer, key

    return _make


@pytest.fixture
def live_server(_app):
    """The app served over real HTTP on a free port, for the browser tests."""
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, _app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def smtp_sink():
    """A plain SMTP sink on 127.0.0.1 that records what it receives."""
    from .smtp_servers import start_server

    sink = start_server()
    yield sink
    sink.stop()


@pytest.fixture
def relay(app, smtp_sink):
    """Point our relay (MAIL_*) at the sink for this test."""
    saved = {k: app.config[k] for k in ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
                                         "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD")}
    app.config.update(MAIL_SERVER=smtp_sink.host, MAIL_PORT=smtp_sink.port, MAIL_USE_TLS=False,
                      MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None)
    yield smtp_sink
    app.config.update(saved)


@pytest.fixture
def api_post(client):
    """api_post(key, body, **headers) -> response of POST /api/v1/notifications."""

    def _post(key: str, body, **headers):
        headers = {"Authorization": f"Bearer {key}", **headers}
        if isinstance(body, (dict, list)) or body is None:
            return client.post("/api/v1/notifications", json=body, headers=headers)
        return client.post("/api/v1/notifications", data=body, headers=headers)

    return _post
