"""Log lines: JSON for log shippers when asked, human-readable by default, no aiosmtpd chatter."""
from __future__ import annotations

import json
import logging
import os
import smtplib
import subprocess
import sys
from pathlib import Path

from dashboard import log_format

ROOT = Path(__file__).resolve().parents[2]
_LOG = """
import logging
from dashboard import create_app, log_format
app = create_app()
log = logging.getLogger("dashboard.services.sweep")
log.warning("deferred %s", "abc123", extra={"message_id": "abc123"})
with log_format.context(customer="ACME"):
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("boom")
"""


def _run(tmp_path, **env) -> list[str]:
    from cryptography.fernet import Fernet

    environment = {k: v for k, v in os.environ.items() if k != "POSTINO_LOG_FORMAT"}
    environment.update({"PYTHONPATH": str(ROOT),
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'logs.sqlite3'}",
                        "SECRET_KEY": "a-secret-key-of-at-least-32-characters-here",
                        "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(), **env})
    done = subprocess.run([sys.executable, "-c", _LOG], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_json_logs_are_one_object_per_line(tmp_path):
    """POSTINO_LOG_FORMAT=json: time, level, logger, message, the message id and customer
    when known, the traceback inside the object (never a bare line)."""
    lines = _run(tmp_path, POSTINO_LOG_FORMAT="json")
    records = [json.loads(line) for line in lines]  # every line is JSON
    deferred = next(r for r in records if r["message"] == "deferred abc123")
    assert deferred["level"] == "WARNING" and deferred["logger"] == "dashboard.services.sweep"
    assert deferred["message_id"] == "abc123" and deferred["time"].endswith("Z")
    boom = next(r for r in records if r["message"] == "boom")
    assert boom["customer"] == "ACME" and "ZeroDivisionError" in boom["exception"]


def test_the_default_stays_human_readable(tmp_path):
    """Without the variable, lines read as before: time, level, logger: message."""
    lines = _run(tmp_path)
    assert any(line.endswith("WARNING dashboard.services.sweep: deferred abc123")
               for line in lines)
    assert not lines[0].startswith("{")


def test_aiosmtpd_connection_chatter_is_not_shown(app, smtp_sink, caplog):
    """mail.log's INFO lines (one per connection and command) stay below the default level."""
    caplog.set_level(logging.INFO)
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        smtp.noop()
    assert not [r for r in caplog.records if r.name == "mail.log"]
    assert logging.getLogger("mail.log").getEffectiveLevel() == logging.WARNING


def test_aiosmtpd_own_deprecation_warning_on_every_login_is_not_shown(app, caplog):
    """aiosmtpd warns "Session.login_data is deprecated" from its own AUTH code on every login
    (the demo relay and the test servers log in): dropped; other mail.log warnings stay."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from ..conftest import free_port

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *args: AuthResult(success=True))
    controller.start()
    try:
        caplog.set_level(logging.WARNING)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
            smtp.login("user", "password")
    finally:
        controller.stop()
    assert not [r for r in caplog.records if "login_data" in r.getMessage()]
    logging.getLogger("mail.log").warning("a real problem")
    assert [r.getMessage() for r in caplog.records if r.name == "mail.log"] == ["a real problem"]


def test_the_formatter_names_what_it_knows():
    """A record with extras gets message_id and customer; without, none of them."""
    formatter = log_format.JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    assert json.loads(formatter.format(record)) | {"time": ""} == {
        "time": "", "level": "INFO", "logger": "x", "message": "hi there"}
    record.customer = "ACME"
    assert json.loads(formatter.format(record))["customer"] == "ACME"
