"""Bounce intake (issues 7 and 13). Not a test: it prints figures.

    python bench/bounces.py [--rounds 20] [--reports 0] [--database URL]

1. Classification (issue 13), no database: who is at fault for every labelled item of
   tests/bounces/corpus, in alternating rounds: a round of every bounce message (parse the
   report, find the recipients, classify each) then a round of every send-time reply
   (classify). Each round prints its mean cost per item; the end prints the median and the
   range per kind, and the load average before and after (the machine is shared: compare
   ratios, not absolute figures).
2. With --reports N, end to end (issue 7): N messages are stored, then N hard-bounce DSNs
   are posted over SMTP (one connection, the null sender) to the bounce listener running in
   this process; reports/s include the VERP check at RCPT, parsing, the report row, the
   timeline event, the status change and the suppression entry. Without --database a fresh
   SQLite file in a temporary folder is used; a PostgreSQL URL gets its schema dropped and
   re-created, so give it a database of its own.
"""
from __future__ import annotations

import argparse
import logging
import os
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/common.py: the script's own folder is on sys.path
from common import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FIXTURES = ROOT / "tests" / "bounces" / "fixtures"
CORPUS = ROOT / "tests" / "bounces" / "corpus"
ORDER_DATA = {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
              "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


def fill(name: str, verp: str, recipient: str, public_id: str) -> bytes:
    """A fixture report with CRLF line ends."""
    text = (FIXTURES / name).read_text().format(verp=verp, recipient=recipient,
                                                message_id=public_id)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _corpus() -> tuple[list[bytes], list[tuple[str, int | None, str]]]:
    """The labelled bounce messages (CRLF) and send-time replies (stage, code, text)."""
    from dashboard.services.bounces import fault

    messages = [p.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                for p in sorted((CORPUS / "eml").glob("*.eml"))]
    replies = []
    for line in (CORPUS / "replies.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            stage, reply, _klass, _reason = (cell.strip() for cell in line.split(" | "))
            replies.append((stage, fault.parse_code(reply), reply))
    return messages, replies


def _timed(work) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one call: on a shared machine the CPU time of this
    process is the steadier figure; the wall time includes waiting for a core."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def classification(rounds: int) -> None:
    """Alternating rounds: every report parsed and classified, every reply classified."""
    from dashboard.services.bounces import fault, parsing

    messages, replies = _corpus()

    def reports() -> None:
        for raw in messages:
            parsing.parse(raw)

    def answers() -> None:
        for stage, code, text in replies:
            fault.classify(code, None, text, stage=stage)

    reports()
    answers()  # warm up (compiled patterns, imports)
    load_before = os.getloadavg()
    costs: dict[str, list[tuple[float, float]]] = {"report": [], "reply": []}
    for number in range(1, rounds + 1):
        cpu, wall = _timed(reports)
        report = (cpu * 1000 / len(messages), wall * 1000 / len(messages))
        cpu, wall = _timed(answers)
        reply = (cpu * 1e6 / len(replies), wall * 1e6 / len(replies))
        costs["report"].append(report)
        costs["reply"].append(reply)
        print(f"round {number:3d}: report (parse + classify) {report[0]:6.3f} ms CPU "
              f"({report[1]:6.3f} wall)   send-time reply (classify) {reply[0]:6.1f} µs CPU "
              f"({reply[1]:6.1f} wall)")
    load_after = os.getloadavg()
    for kind, unit, count in (("report", "ms", len(messages)), ("reply", "µs", len(replies))):
        cpu = [c for c, _w in costs[kind]]
        wall = [w for _c, w in costs[kind]]
        print(f"{kind:6s} ({count} items/round): CPU median {statistics.median(cpu):.3f} {unit}"
              f" range {min(cpu):.3f} – {max(cpu):.3f}; wall median "
              f"{statistics.median(wall):.3f} range {min(wall):.3f} – {max(wall):.3f} {unit}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
          f"  after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
          f"  (nproc {os.cpu_count()})")


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
    from dashboard.services.accounts import customers
    from dashboard.services.content import render
    from dashboard.services.delivery import verp
    from dashboard.services.messages import intake

    app = _app(database)
    with app.app_context():
        customer, _key = customers.create_customer("BENCH", "Bench")
        rendered = render.render_notification(customer, "order_closed", "it", ORDER_DATA)
        stored = intake.store(customer, "order_closed",
                                [f"user{i}@example.org" for i in range(count)], "ORD-1", "it",
                                ORDER_DATA, rendered, [])
        reports = [(verp.address_for(m.public_id),
                    fill("postfix_hard.eml", verp.address_for(m.public_id), m.recipient,
                         m.public_id)) for m in stored]
    port = free_port()
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
    """Run the classification rounds, and the end-to-end intake when asked."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--reports", type=int, default=0,
                        help="also post N hard bounces to the listener (0: skip)")
    parser.add_argument("--database")
    args = parser.parse_args()
    classification(args.rounds)
    if args.reports:
        with tempfile.TemporaryDirectory() as tmp:
            end_to_end(args.reports, args.database or f"sqlite:///{tmp}/bench.sqlite3")


if __name__ == "__main__":
    main()
