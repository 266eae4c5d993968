"""`flask demo`: the whole product in one process on demo data."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from dashboard.demo import DEMO_PASSWORD, DEMO_USERS, seed
from dashboard.extensions import db
from dashboard.models import ConfigurationIntervention, Customer, Message, User

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_demo_seed_has_every_role_mode_and_status(app):
    """Seeding makes staff of each role, customers in each mode and messages in many statuses."""
    assert seed(customer_smtp_port=2526) is True
    roles = set(db.session.scalars(select(User.role)))
    assert roles == {"admin", "support", "billing"}
    modes = set(db.session.scalars(select(Customer.sending_mode)))
    assert modes == {"standard", "custom_from", "customer_smtp"}
    statuses = dict(db.session.execute(
        select(Message.status, func.count()).group_by(Message.status)).all())
    assert sum(statuses.values()) >= 300
    for status in ("queued", "sent", "delivered", "opened", "deferred", "failed", "bounced",
                   "suppressed", "held"):
        assert statuses.get(status, 0) > 0, status
    pending = [i for i in db.session.scalars(select(ConfigurationIntervention))
               if i.minutes_pending]
    assert len(pending) == 1  # billing has a configuration change to complete
    assert seed(customer_smtp_port=2526) is False  # a second start keeps the data


def test_every_demo_order_email_shows_its_own_reference(app):
    """The number in a demo order's subject, body and link is the reference the Log shows."""
    assert seed(customer_smtp_port=2526, messages=60) is True
    orders = db.session.scalars(select(Message).where(Message.event == "order_closed")).all()
    assert len({m.reference for m in orders}) > 5
    for message in orders:
        assert message.data["order_number"] == message.reference
        assert message.reference in message.subject
        assert message.reference in message.html_body and message.reference in message.text_body
        assert "ORD-2026-00421" not in message.html_body + message.text_body


def test_demo_staff_have_no_language_of_their_own(app):
    """Demo logins follow the browser's language until they pick one in the header."""
    seed(customer_smtp_port=2526, messages=1)
    assert set(db.session.scalars(select(User.language))) == {None}


@pytest.mark.slow
def test_flask_demo_serves_the_dashboard_and_delivers_to_its_sink(tmp_path):
    """`flask demo` starts, prints its URL and logins, and its worker sends queued mail."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "SECRET_KEY": "demo-test-secret-key-of-32-characters-or-more", "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
           "POSTINO_SWEEP_SECONDS": "1", "FLASK_APP": "wsgi.py"}
    env.pop("TEST_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "flask", "demo", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Running on" in line or "Ctrl+C stops it" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in output, output
        for email, _role, _name in DEMO_USERS:
            assert email in output
        import http.cookiejar
        import urllib.request

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                page = opener.open(f"{base}/login", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page) or \
            re.search(r'name="csrf_token" value="([^"]+)"', page)
        data = {"email": DEMO_USERS[0][0], "password": DEMO_PASSWORD}
        if token:
            data["csrf_token"] = token.group(1)
        body = urllib.parse.urlencode(data).encode()
        home = opener.open(f"{base}/login", data=body, timeout=10)
        assert home.status == 200 and "/login" not in home.url
        deadline = time.monotonic() + 20
        inbox = ""
        while time.monotonic() < deadline:
            inbox = opener.open(f"{base}/demo/inbox", timeout=10).read().decode()
            if "bounces+" in inbox:
                break
            time.sleep(0.5)
        assert "bounces+" in inbox, "the demo worker delivered nothing to the sink"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
