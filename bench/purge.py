"""Benchmark: retention purge of 1,000,000 expired messages (+ their events) while log
searches run in another process. Prints the purge time and the searches' latencies.

    python bench/purge.py                                   # SQLite file in /tmp
    python bench/purge.py --database postgresql+psycopg://postgres@127.0.0.1/postino_h7_bench

Seeding is set-based SQL (recursive CTE / generate_series), so it takes minutes, not hours.
The PostgreSQL database is emptied (schema dropped) first: give it a throwaway database.
The seeded data is kept as a pristine copy (`<file>.seed` for SQLite, database `<name>_seed`
on PostgreSQL, which needs the CREATEDB right); `--reuse` starts from that copy instead of
seeding again, so a change to the purge can be measured several times on the same data.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import inspect, text  # noqa: E402

CONFIG = {"TESTING": True, "SECRET_KEY": "bench", "POSTINO_CREDENTIALS_KEY": None}


def make_app(url: str):
    """An app on the benchmark database."""
    from dashboard import create_app

    config = dict(CONFIG, SQLALCHEMY_DATABASE_URI=url,
                  POSTINO_CREDENTIALS_KEY=os.environ.get("BENCH_FERNET_KEY"))
    return create_app(config)


def fresh_schema(app, url: str) -> None:
    """Drop everything and migrate from empty."""
    from flask_migrate import upgrade

    from dashboard.extensions import db

    path = _sqlite_path(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def _admin(url: str):
    """An AUTOCOMMIT engine on the server's `postgres` database (CREATE/DROP DATABASE)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def restore(url: str) -> bool:
    """Put the pristine seeded copy in place; False when there is none yet."""
    from sqlalchemy.engine import make_url

    path = _sqlite_path(url)
    if path is not None:
        seed_copy = Path(str(path) + ".seed")
        if not seed_copy.exists():
            return False
        for suffix in ("-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        shutil.copyfile(seed_copy, path)
        return True
    name = make_url(url).database
    engine = _admin(url)
    with engine.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                            {"n": f"{name}_seed"}).scalar():
            return False
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{name}_seed"'))
    engine.dispose()
    return True


def keep_seed(app, url: str) -> None:
    """Copy the freshly seeded database aside for later `--reuse` runs."""
    from sqlalchemy.engine import make_url

    from dashboard.extensions import db

    with app.app_context():
        db.engine.dispose()
    path = _sqlite_path(url)
    if path is not None:
        with app.app_context():
            with db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            db.engine.dispose()
        shutil.copyfile(path, str(path) + ".seed")
        return
    name = make_url(url).database
    engine = _admin(url)
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}_seed" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}_seed" TEMPLATE "{name}"'))
    engine.dispose()


def seed(app, expired: int, recent: int, events: int) -> dict:
    """Expired (40-70 days old) and recent (0-7 days) sent messages, each with `events` events,
    plus a few old pending messages that must survive."""
    from dashboard.extensions import db

    with app.app_context():
        db.session.execute(text(
            "INSERT INTO customer (code, name, default_language, sending_mode, smtp_verify_tls, "
            "smtp_timeout, sending_enabled, paused, auth_failures, open_tracking, created_at, "
            "updated_at) VALUES ('BENCH', 'Bench', 'it', 'standard', true, 30, true, false, 0, "
            "true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        customer_id = db.session.execute(text("SELECT id FROM customer")).scalar()
        columns = {c["name"] for c in inspect(db.engine).get_columns("message")}
        norm = "reference_norm" in columns
        pg = db.engine.dialect.name == "postgresql"
        started = time.perf_counter()
        for count, oldest_days, span_days, status in (
                (expired, 70, 30, "sent"), (recent, 7, 7, "sent"), (200, 90, 1, "held")):
            if pg:
                rows = f"generate_series(1, {count}) AS s(n)"
                created = (f"(now() - interval '{oldest_days} days' + "
                           f"(n * interval '1 second' * {span_days * 86400} / {count}))")
                public_id = "substr(md5(random()::text || n::text), 1, 24)"
                ref = "'ORD-' || n::text"
                recipient = "'user' || (n % 50000)::text || '@example.com'"
            else:
                rows = (f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                        f"WHERE n < {count}) SELECT n FROM s)")
                created = (f"(strftime('%Y-%m-%d %H:%M:%S', 'now', '-{oldest_days} days', "
                           f"'+' || (n * {span_days * 86400} / {count}) || ' seconds') "
                           f"|| '.000000')")
                public_id = "lower(hex(randomblob(12)))"
                ref = "'ORD-' || n"
                recipient = "'user' || (n % 50000) || '@example.com'"
            prefix = "R" if oldest_days == 7 else ("H" if status == "held" else "E")
            ref = f"'{prefix}' || {ref}"
            db.session.execute(text(
                "INSERT INTO message (public_id, customer_id, event, reference, "
                + ("reference_norm, " if norm else "") +
                "language, recipient, subject, status, attempts, open_count, created_at, "
                "updated_at, last_smtp_code) SELECT " + public_id + ", " + str(customer_id)
                + ", 'order_closed', " + ref + ", " + (f"upper({ref}), " if norm else "")
                + "'it', " + recipient + ", 'Ordine chiuso', '" + status + "', 1, 0, "
                + created + ", " + created + ", 250 FROM " + rows))
            db.session.commit()
        for index in range(events):
            db.session.execute(text(
                "INSERT INTO message_event (message_id, at, type, smtp_code) SELECT id, "
                f"created_at, '{('queued', 'sent', 'delivered', 'opened')[index % 4]}', 250 "
                "FROM message"))
            db.session.commit()
        if pg:
            db.session.execute(text("ANALYZE"))
            db.session.commit()
        totals = {
            "messages": db.session.execute(text("SELECT count(*) FROM message")).scalar(),
            "events": db.session.execute(text("SELECT count(*) FROM message_event")).scalar(),
            "seed_seconds": round(time.perf_counter() - started, 1),
        }
        return totals


def searcher(url: str, stop, results, ready) -> None:
    """Another process: log-like searches (recipient, reference) until told to stop."""
    app = make_app(url)
    from dashboard.extensions import db

    try:
        from dashboard.services.messages import log_search
    except ImportError:  # before the log search exists: the indexed lookups it makes
        log_search = None
    latencies: list[tuple[float, float]] = []
    with app.app_context(), app.test_request_context():
        while not stop.is_set():
            n = random.randint(1, 50000)
            term = (f"user{n}@example.com" if random.random() < 0.5
                    else f"RORD-{random.randint(1, 100000)}")
            started = time.perf_counter()
            if log_search is not None:
                search, _errors = log_search.parse({"q": term})
                log_search.run(search)
            else:
                column = "recipient" if "@" in term else "reference"
                db.session.execute(text(
                    f"SELECT id, public_id, status, created_at FROM message WHERE {column} = :t "
                    "ORDER BY created_at DESC LIMIT 50"), {"t": term}).all()
            db.session.rollback()
            latencies.append((time.time(), (time.perf_counter() - started) * 1000))
            ready.set()
            time.sleep(0.02)
    results.put(latencies)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="sqlite:////tmp/postino_bench_purge.sqlite3")
    parser.add_argument("--messages", type=int, default=1_000_000, help="expired messages")
    parser.add_argument("--recent", type=int, default=100_000, help="messages kept")
    parser.add_argument("--events", type=int, default=2, help="events per message")
    parser.add_argument("--reuse", action="store_true",
                        help="start from the copy kept by an earlier run (same sizes)")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_FERNET_KEY", Fernet.generate_key().decode())

    kind = args.database.split(":")[0]
    if args.reuse and restore(args.database):
        app = make_app(args.database)
        print(f"restored the seeded copy ({kind})")
    else:
        app = make_app(args.database)
        fresh_schema(app, args.database)
        totals = seed(app, args.messages, args.recent, args.events)
        print(f"seeded {totals['messages']:,} messages and {totals['events']:,} events "
              f"in {totals['seed_seconds']} s ({kind})")
        keep_seed(app, args.database)

    ctx = mp.get_context("spawn")
    stop, ready, results = ctx.Event(), ctx.Event(), ctx.Queue()
    worker = ctx.Process(target=searcher, args=(args.database, stop, results, ready))
    worker.start()
    ready.wait(120)
    time.sleep(2)  # a baseline of searches before the purge
    from dashboard.extensions import db
    from dashboard.services.operations import purge

    with app.app_context():
        window = time.time()
        started = time.perf_counter()
        result = purge.run_job()
        elapsed = time.perf_counter() - started
        window = (window, time.time())
        left = db.session.execute(text("SELECT count(*) FROM message")).scalar()
    stop.set()
    timed = results.get(timeout=60)
    before = [ms for at, ms in timed if at < window[0]]
    latencies = [ms for at, ms in timed if window[0] <= at <= window[1]]
    worker.join(30)
    print(f"purge: {result.line()} batches={result.batches}")
    print(f"purge time: {elapsed:.1f} s ({result.messages / elapsed:,.0f} messages/s, "
          f"{(result.messages + result.events) / elapsed:,.0f} rows/s); messages left: {left:,}")
    if before:
        print(f"searches before the purge: n={len(before)} p95={percentile(before, 95):.1f} ms")
    print(f"searches during the purge: n={len(latencies)} "
          f"p50={statistics.median(latencies):.1f} ms p95={percentile(latencies, 95):.1f} ms "
          f"p99={percentile(latencies, 99):.1f} ms max={max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
