"""Bounce intake (issue 7). Not a test: it prints figures.

    python bench/bounces.py [--reports 1000] [--rounds 300] [--database URL]

1. Parsing alone (no database): time per report for each fixture format in
   tests/bounces/fixtures (standard DSNs read by the standard library, the others through
   flufl.bounce), and for junk.
2. End to end: N messages are stored, then N hard-bounce DSNs are posted over SMTP (one
   connection, the null sender) to the bounce listener running in this process; reports/s
   include the VERP check at RCPT, parsing, the report row, the timeline event, the status
   change and the suppression entry. Without --database a fresh SQLite file in a temporary
   folder is used; a PostgreSQL URL gets its schema dropped and re-created, so give it a
   database of its own.
"""
from __future__ import annotations

import argparse
import logging
import smtplib
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "bounces" / "fixtures"
ORDER_DATA = {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
              "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(name: str, verp: str, recipient: str, public_id: str) -> bytes:
    """A fixture report with CRLF line ends."""
    text = (FIXTURES / name).read_text().format(verp=verp, recipient=recipient,
                                                message_id=public_id)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def parsing(rounds: int) -> None:
    """Per-format parse times."""
    from dashboard.services import bounces

    samples_all = []
    cases = [(p.name, fill(p.name, "bounces+x.y@b.example", "mario.rossi@example.org", "x"))
             for p in sorted(FIXTURES.glob("*.eml"))]
    cases.append(("junk", b"From: x\r\n\r\nnot a report at all\r\n" * 20))
    for name, raw in cases:
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            bounces.parse(raw)
            samples.append((time.perf_counter() - started) * 1000)
        samples_all += samples
        samples.sort()
        print(f"parse {name:<26} p50 {statistics.median(samples):6.2f} ms  "
              f"p95 {samples[int(len(samples) * 0.95) - 1]:6.2f} ms")
    print(f"parse, all formats: {1000 / statistics.mean(samples_all):8.0f} reports/s (one thread)")


def _app(database: str):
    from cryptography.fernet import Fernet
    from flask_migrate import upgrade
    from sqlalchemy import text

    from dashboard import create_app
    from dashboard.extensions import db

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": database, "SECRET_KEY": "bench-secret-key-of-at-least-32-characters",
        "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "POSTINO_BOUNCE_DOMAIN": "bounces.postino.example.com",
        "POSTINO_SENDER_NOTIFICATION": "Postino <notification@postino.example.com>",
        "POSTINO_SENDER_REGISTRATION": "Postino <registration@postino.example.com>",
    })
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()
    logging.disable(logging.WARNING)
    return app


def end_to_end(count: int, database: str) -> None:
    """N hard-bounce DSNs over SMTP into the listener."""
    from dashboard import bounce_listener
    from dashboard.extensions import db
    from dashboard.models import BounceReport, Suppression
    from dashboard.services import customers, messages, verp

    app = _app(database)
    with app.app_context():
        customer, _key = customers.create_customer("BENCH", "Bench")
        rendered = messages.render.render_notification(customer, "order_closed", "it",
                                                       ORDER_DATA)
        stored = messages.store(customer, "order_closed",
                                [f"user{i}@example.org" for i in range(count)], "ORD-1", "it",
                                ORDER_DATA, rendered, [])
        reports = [(verp.address_for(m.public_id),
                    fill("postfix_hard.eml", verp.address_for(m.public_id), m.recipient,
                         m.public_id)) for m in stored]
    port = _free_port()
    controller = bounce_listener.start(app, "127.0.0.1", port)
    try:
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            smtp.ehlo("bench.example")
            for rcpt, raw in reports:
                smtp.sendmail("<>", [rcpt], raw)
        elapsed = time.perf_counter() - started
    finally:
        controller.stop()
    with app.app_context():
        got = db.session.scalar(db.select(db.func.count(BounceReport.id)))
        entries = db.session.scalar(db.select(db.func.count(Suppression.id)))
        dialect = db.engine.dialect.name
    print(f"listener end to end ({dialect}): {count} DSNs in {elapsed:.2f} s = "
          f"{count / elapsed:.0f} reports/s ({got} reports, {entries} suppressions)")


def main() -> None:
    """Run both measurements."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--database")
    args = parser.parse_args()
    parsing(args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end(args.reports, args.database or f"sqlite:///{tmp}/bench.sqlite3")


if __name__ == "__main__":
    main()
