"""Time the Home aggregates at 1M messages, per period (p50/p95), on SQLite or PostgreSQL.

    python bench/overview.py [--messages 1000000] [--database URL] [--repeat 40] [--reuse]

Seeds a fresh database with bench/seed.py (unless --reuse), then times, per period:
the first visit (closed days counted into the rollup), the following visits (service call:
live count of the last two days + rollup), and the whole htmx answer of GET /?period=…
(query, template and SVG); the CPU column is this process's own time (on SQLite, the
query work itself), which stays meaningful on a busy machine. For comparison it also times counting the 30 days straight from
`message`, which is what the rollup avoids. DATABASE_URL (or --database) picks the database.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seed import fresh_schema, make_app, seed_messages  # noqa: E402


def default_url() -> str:
    """DATABASE_URL, else a SQLite file of this benchmark's own in the temp folder."""
    return os.environ.get("DATABASE_URL") or \
        f"sqlite:///{Path(tempfile.gettempdir()) / 'postino-bench-overview.sqlite3'}"


def timed(fn, repeat: int) -> dict:
    """Run fn `repeat` times; wall p50/p95/max and this process's CPU p50, in milliseconds."""
    samples, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(round(0.95 * len(samples))) - 1)]
    return {"p50": statistics.median(samples), "p95": p95, "max": samples[-1],
            "cpu": statistics.median(cpu)}


def line(name: str, figures: dict) -> str:
    return (f"{name:<38} p50 {figures['p50']:8.1f} ms   p95 {figures['p95']:8.1f} ms   "
            f"max {figures['max']:8.1f} ms   cpu p50 {figures['cpu']:7.1f} ms")


def main() -> None:
    """Seed (or reuse) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--database", default=default_url())
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    args = parser.parse_args()

    app = make_app(args.database)
    if not args.reuse:
        fresh_schema(app, args.database)
        seed_messages(app, args.messages)

    from sqlalchemy import delete, func, select, text

    from dashboard.extensions import db
    from dashboard.models import Message, MessageRollup, utcnow
    from dashboard.services.accounts import users
    from dashboard.services.operations import overview

    with app.app_context():
        dialect = db.engine.dialect.name
        for table in (MessageRollup.__table__,):  # a --reuse'd database may predate them
            table.create(db.engine, checkfirst=True)
            for index in table.indexes:
                index.create(db.engine, checkfirst=True)
        if dialect == "postgresql":
            # what autovacuum does soon after a bulk load: without it the visibility map is
            # empty and no index-only scan is possible
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM (ANALYZE) message"))
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        count = db.session.scalar(select(func.count(Message.id)))
        print(f"database: {dialect}, {count:,} messages")
        db.session.execute(delete(MessageRollup))
        db.session.commit()
        for period in ("24h", "7d", "30d"):
            started = time.perf_counter()
            overview.overview(period)
            print(f"{'first visit ' + period + ' (fills rollup)':<38} "
                  f"{(time.perf_counter() - started) * 1000:8.1f} ms")
        for period in ("24h", "7d", "30d"):
            print(line(f"service overview({period})",
                       timed(lambda p=period: overview.overview(p), args.repeat)))
        since = overview._midnight(utcnow()) - overview.timedelta(days=29)
        print(line("30d counted straight from message",
                   timed(lambda: overview.count_live(since, "day"), max(3, args.repeat // 8))))
        from dashboard.models import User

        user = db.session.scalar(select(User).where(User.email == "bench-admin@example.com"))
        if user is None:
            user = users.create_user("bench-admin@example.com", "admin", "bench password 123")
            db.session.commit()
        client = app.test_client()
        client.post("/login", data={"email": user.email, "password": "bench password 123"})
        for period in ("24h", "7d", "30d"):
            def request(p=period):
                response = client.get(f"/?period={p}", headers={"HX-Request": "true"})
                assert response.status_code == 200, response.status_code
            print(line(f"GET /?period={period} (htmx partial)", timed(request, args.repeat)))


if __name__ == "__main__":
    main()
