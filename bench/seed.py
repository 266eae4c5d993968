"""Seed a large, realistic message table fast (bulk inserts), for the benchmarks.

    python bench/seed.py [--messages 1000000] [--database URL]

`seed_messages(app, n)` is reusable: 200 customers (a few big, many small) over 30 days,
references like ORD-2026-000123 (numbered per customer), ACT-…, DOC-…, USR-…, addresses of
agents at the customer's domain and of buyers at common providers, realistic statuses and
sending modes. Bodies and timeline events are left out: the log's searches never read them.
The message indexes are dropped during the load and rebuilt after (the usual bulk-load way);
PostgreSQL gets COPY, SQLite a single-transaction executemany.
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.schema import CreateIndex, DropIndex  # noqa: E402

FIRST = ["giulia", "marco", "luca", "francesca", "alessandro", "chiara", "matteo", "sara",
         "andrea", "elena", "davide", "valentina", "simone", "martina", "federico", "laura",
         "paolo", "anna", "stefano", "silvia", "roberto", "giorgia", "fabio", "elisa"]
LAST = ["rossi", "bianchi", "ferrari", "russo", "romano", "colombo", "ricci", "marino",
        "greco", "bruno", "gallo", "conti", "deluca", "mancini", "costa", "giordano",
        "rizzo", "lombardi", "moretti", "barbieri", "fontana", "santoro", "mariani", "rinaldi"]
PROVIDERS = ["gmail.com", "libero.it", "outlook.it", "yahoo.it", "hotmail.it", "alice.it",
             "tiscali.it", "virgilio.it", "icloud.com", "fastwebnet.it"]
EVENTS = [("order_closed", 45), ("activity_closed", 20), ("document_sent", 15),
          ("password_reset", 10), ("user_invitation", 8), ("processing_blocked", 2)]
STATUSES = [("sent", 62), ("delivered", 17), ("opened", 8), ("failed", 2), ("bounced", 1),
            ("deferred", 2), ("suppressed", 2), ("held", 2), ("queued", 4)]
PREFIX = {"order_closed": "ORD", "activity_closed": "ACT", "document_sent": "DOC",
          "user_invitation": "USR"}
SUBJECT = {"order_closed": "Ordine {ref} chiuso", "activity_closed": "Attività chiusa: {ref}",
           "document_sent": "Ti è stato inviato un documento: {ref}",
           "password_reset": "Reimposta la tua password",
           "user_invitation": "Sei stato invitato su {company}",
           "processing_blocked": "Elaborazioni bloccate: {company}"}
COLUMNS = ("public_id", "customer_id", "event", "reference", "reference_norm", "language",
           "recipient", "from_header", "subject", "transport", "template_source", "status",
           "status_reason", "attempts", "last_smtp_code", "created_at", "updated_at",
           "sent_at", "open_count")


def make_app(url: str):
    """An app on the benchmark database."""
    from cryptography.fernet import Fernet

    from dashboard import create_app

    return create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url,
                       "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
                       "WTF_CSRF_ENABLED": False,
                       "POSTINO_BOUNCE_DOMAIN": "bounces.postino.example.com",
                       "POSTINO_SENDER_NOTIFICATION": "Postino <notification@postino.example.com>",
                       "POSTINO_SENDER_REGISTRATION": "Postino <registration@postino.example.com>"})


def default_url() -> str:
    """DATABASE_URL, else a SQLite file in the temp folder."""
    return os.environ.get("DATABASE_URL") or \
        f"sqlite:///{Path(tempfile.gettempdir()) / 'postino-bench-search.sqlite3'}"


def fresh_schema(app, url: str) -> None:
    """Drop everything and migrate from empty (give PostgreSQL a throwaway database)."""
    from flask_migrate import upgrade

    from dashboard.extensions import db

    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url[len("sqlite:///"):] + suffix).unlink(missing_ok=True)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()


def _weighted(pairs):
    names = [p[0] for p in pairs]
    weights = [p[1] for p in pairs]
    return names, weights


def make_customers(count: int, rng: random.Random) -> list[dict]:
    """Customers with a Zipf-like size, a domain, a sending mode and a staff address pool."""
    from dashboard.extensions import db
    from dashboard.models import Customer

    customers = []
    for i in range(1, count + 1):
        code = f"C{i:04d}"
        mode = rng.choices(["standard", "custom_from", "customer_smtp"], [80, 15, 5])[0]
        customer = Customer(code=code, name=f"Cliente {i} S.r.l.", sending_mode=mode,
                            from_address=f"notifiche@cliente{i}.it" if mode != "standard"
                            else None)
        db.session.add(customer)
        customers.append(customer)
    db.session.commit()
    result = []
    for i, customer in enumerate(customers, start=1):
        staff = [f"{rng.choice(FIRST)}.{rng.choice(LAST)}{'' if k < 40 else k}@cliente{i}.it"
                 for k in range(rng.randint(8, 60))]
        result.append({"id": customer.id, "code": customer.code, "mode": customer.sending_mode,
                       "weight": 1.0 / (i ** 0.8), "staff": staff, "company": customer.name,
                       "seq": {p: 0 for p in PREFIX.values()}})
    return result


def generate_rows(n: int, customers: list[dict], days: int, rng: random.Random,
                  now: datetime):
    """n message rows as tuples (COLUMNS order), oldest first, spread over `days`."""
    from dashboard.models import normalise_reference

    event_names, event_weights = _weighted(EVENTS)
    status_names, status_weights = _weighted(STATUSES)
    weights = [c["weight"] for c in customers]
    start = now - timedelta(days=days)
    span = days * 86400.0
    # Ordered times: evenly spread plus jitter, so rows are appended in time order.
    step = span / n
    chosen_customers = rng.choices(customers, weights, k=n)
    chosen_events = rng.choices(event_names, event_weights, k=n)
    chosen_statuses = rng.choices(status_names, status_weights, k=n)
    i = 0
    while i < n:
        customer = chosen_customers[i]
        event = chosen_events[i]
        prefix = PREFIX.get(event)
        reference = None
        if prefix:
            customer["seq"][prefix] += 1
            reference = f"{prefix}-2026-{customer['seq'][prefix]:06d}"
        # an order goes to the agent and often to the buyer too: 1-2 messages
        recipients = [rng.choice(customer["staff"])]
        if event in ("order_closed", "document_sent") and rng.random() < 0.5:
            recipients.append(f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randint(1, 999)}"
                              f"@{rng.choice(PROVIDERS)}")
        at = start + timedelta(seconds=i * step + rng.random() * step)
        for recipient in recipients:
            if i >= n:
                break
            status = chosen_statuses[i]
            subject = SUBJECT[event].format(ref=reference or "", company=customer["company"])
            reason = {"held": "sending is off for customer " + customer["code"],
                      "suppressed": "recipient on the suppression list (hard_bounce)",
                      "failed": "550 5.1.1 user unknown",
                      "deferred": "451 4.7.1 try again later"}.get(status)
            sent = at + timedelta(seconds=2) if status in (
                "sent", "delivered", "opened", "bounced") else None
            yield (secrets.token_hex(12), customer["id"], event, reference,
                   normalise_reference(reference), "it", recipient.lower(),
                   "Postino Notifiche <notification@postino.example.com>", subject,
                   customer["mode"], "default", status, reason,
                   0 if status in ("queued", "held", "suppressed") else 1,
                   {"failed": 550, "deferred": 451}.get(status, 250 if sent else None),
                   at, at, sent, 1 if status == "opened" else 0)
            i += 1


def _sqlite_time(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite storage format (always with microseconds, naive UTC)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _message_indexes():
    from dashboard.models import Message

    return list(Message.__table__.indexes)


def seed_messages(app, n: int = 1_000_000, customers: int = 200, days: int = 30,
                  seed: int = 6, batch: int = 50_000, verbose: bool = True) -> dict:
    """Insert n messages (and the customers) into the app's empty database; returns facts."""
    from dashboard.extensions import db

    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    cpu_started = time.process_time()
    with app.app_context():
        dialect = db.engine.dialect.name
        pool = make_customers(customers, rng)
        indexes = _message_indexes()
        with db.engine.begin() as connection:
            for index in indexes:
                connection.execute(DropIndex(index, if_exists=True))
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            rows = generate_rows(n, pool, days, rng, now)
            if dialect == "postgresql":
                with cursor.copy(f"COPY message ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cursor.execute("PRAGMA synchronous=OFF")
                placeholders = ", ".join("?" for _ in COLUMNS)
                sql = f"INSERT INTO message ({', '.join(COLUMNS)}) VALUES ({placeholders})"
                chunk = []
                for row in rows:
                    row = list(row)
                    row[15] = row[16] = _sqlite_time(row[15])
                    row[17] = _sqlite_time(row[17])
                    chunk.append(row)
                    if len(chunk) >= batch:
                        cursor.executemany(sql, chunk)
                        chunk = []
                if chunk:
                    cursor.executemany(sql, chunk)
            raw.commit()
        finally:
            raw.close()
        loaded = time.perf_counter() - started
        with db.engine.begin() as connection:
            for index in indexes:
                connection.execute(CreateIndex(index))
        if dialect == "postgresql":  # what autovacuum would do: statistics, visibility map
            with db.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE message"))
        total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    facts = {"messages": n, "customers": customers, "days": days, "load_seconds": loaded,
             "seconds": total, "cpu_seconds": cpu, "dialect": dialect}
    if verbose:
        print(f"seeded {n:,} messages for {customers} customers over {days} days "
              f"in {total:.1f} s wall (load {loaded:.1f} s, indexes {total - loaded:.1f} s; "
              f"this process used {cpu:.1f} s of CPU) on {dialect}; "
              f"load average {os.getloadavg()[0]:.1f}")
    return facts


def main() -> None:
    """Seed a fresh database from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--database", default=default_url())
    args = parser.parse_args()
    app = make_app(args.database)
    fresh_schema(app, args.database)
    seed_messages(app, args.messages, args.customers)


if __name__ == "__main__":
    main()
