"""Benchmark: the delivery log's searches at 1,000,000 messages (issue 6).

    python bench/search.py                       # seeds a temp SQLite file, then times
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/postino_h5_bench python bench/search.py
    python bench/search.py --reuse               # time again without re-seeding

Seeds with bench/seed.py (bulk inserts), then times, through the very service the page
uses (services.messages.log_search.parse + run), the searches support makes: exact reference,
reference prefix, exact address, address prefix, customer+status+date range, message id,
first page and a later keyset page. Each is repeated with varying values; p50/p95 in ms.
Then the Log page itself is rendered server-side (Flask test client, logged in as support)
for the same searches. Finally each search's SQL is EXPLAINed (EXPLAIN ANALYZE on
PostgreSQL, which shows the server's own execution time) and full scans are flagged.
Wall-clock figures include waiting for a busy CPU; the CPU time of the benchmark process is
printed beside them (on PostgreSQL it leaves out the server's work: see EXPLAIN ANALYZE).
The PostgreSQL database is emptied (schema dropped) unless --reuse: give it a throwaway one.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seed import default_url, fresh_schema, make_app, seed_messages  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402

GOAL_SEARCH_MS = 50
GOAL_PAGE_MS = 150


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank)."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def samples(rounds: int, rng: random.Random) -> dict[str, list[dict]]:
    """For each search kind, `rounds` URL-argument dicts built from real seeded rows."""
    from dashboard.extensions import db
    from dashboard.models import Message, utcnow
    from dashboard.services.messages import log_search

    today = utcnow().date()
    week_ago = utcnow() - timedelta(days=6)
    low, high = db.session.execute(select(func.min(Message.id), func.max(Message.id))).one()
    recent_low = db.session.scalar(select(func.min(Message.id))
                                   .where(Message.created_at >= week_ago))
    picked = []
    while len(picked) < rounds * 3:
        message = db.session.get(Message, rng.randint(recent_low, high))
        if message is not None:
            picked.append(message)
    orders = [m for m in picked if (m.reference or "").startswith("ORD-")]
    anywhere = [db.session.get(Message, rng.randint(low, high)) for _ in range(rounds)]
    by_customer = [m.customer_id for m in picked]
    result = {
        "exact reference": [{"q": m.reference} for m in orders[:rounds]],
        "reference prefix": [{"q": m.reference[:-2]} for m in orders[:rounds]],
        "exact address": [{"q": m.recipient} for m in picked[:rounds]],
        "address prefix": [{"q": m.recipient.split("@")[0][:8]} for m in picked[:rounds]],
        "customer+status+dates": [
            {"customer": str(c), "status": "failed",
             "from": (today - timedelta(days=14)).isoformat(),
             "to": (today - timedelta(days=7)).isoformat()} for c in by_customer[:rounds]],
        "message id": [{"q": m.public_id} for m in anywhere if m is not None][:rounds],
        "first page": [{} for _ in range(rounds)],
    }
    # a later keyset page: walk 20 pages back from the newest, then page from there
    search, _ = log_search.parse({})
    cursors = []
    for _ in range(20 + rounds):
        page = log_search.run(search)
        cursors.append(page.older)
        search, _ = log_search.parse({"before": page.older})
    result["later keyset page"] = [{"before": c} for c in cursors[20:20 + rounds]]
    return result


def time_searches(kinds: dict[str, list[dict]]) -> dict[str, tuple[float, float, float]]:
    """p50, p95 and mean ms of log_search.parse + run for each kind."""
    from dashboard.extensions import db
    from dashboard.services.messages import log_search

    figures = {}
    for kind, arg_list in kinds.items():
        timings, cpu, plans, counts = [], [], set(), []
        for args in arg_list:
            started, cpu_started = time.perf_counter(), time.process_time()
            search, errors = log_search.parse(args)
            assert not errors, errors
            page = log_search.run(search)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            plans.add(page.plan)
            counts.append(page.count if not page.count_capped else 1001)
            db.session.rollback()
        figures[kind] = (percentile(timings, 50), percentile(timings, 95),
                         percentile(cpu, 50), percentile(cpu, 95), sorted(plans),
                         statistics.median(counts))
    return figures


def time_pages(app, kinds: dict[str, list[dict]]) -> dict[str, tuple[float, float]]:
    """p50 and p95 ms of GET /log/?… (the full page) as a logged-in support user."""
    from dashboard.extensions import db
    from dashboard.models import User
    from dashboard.services.accounts import users

    if db.session.scalar(select(User).where(User.email == "bench-support@example.com")) is None:
        users.create_user("bench-support@example.com", "support", "bench password 123",
                          language="en")
    client = app.test_client()
    response = client.post("/login", data={"email": "bench-support@example.com",
                                           "password": "bench password 123"})
    assert response.status_code == 302, response.status_code
    figures = {}
    for kind, arg_list in kinds.items():
        timings, cpu = [], []
        for args in arg_list:
            url = "/log/?" + urlencode(args)
            started, cpu_started = time.perf_counter(), time.process_time()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        figures[kind] = (percentile(timings, 50), percentile(timings, 95),
                         percentile(cpu, 50), percentile(cpu, 95))
    return figures


def explain(kinds: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Each search's statements with their plans; lines with a full scan are marked."""
    from dashboard.extensions import db
    from dashboard.services.messages import log_search

    engine = db.engine
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and " message" in statement:
            captured.append((statement, parameters))

    reports = {}
    for kind, arg_list in kinds.items():
        captured.clear()
        event.listen(engine, "before_cursor_execute", capture)
        try:
            search, _ = log_search.parse(arg_list[0])
            log_search.run(search)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        lines = []
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            for statement, parameters in captured:
                if "FROM customer" in statement:
                    continue
                if engine.dialect.name == "postgresql":
                    cursor.execute("EXPLAIN (ANALYZE) " + statement, parameters)
                    plan = [row[0] for row in cursor.fetchall()]
                    full = [p for p in plan if "Seq Scan on message" in p]
                else:
                    cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                    plan = [row[-1] for row in cursor.fetchall()]
                    full = [p for p in plan if p.startswith("SCAN message")
                            and "INDEX" not in p]
                first = " ".join(statement.split())[:90]
                lines.append(("FULL SCAN! " if full else "ok         ") + first + " …")
                lines.extend("    " + p for p in plan)
        finally:
            raw.close()
        reports[kind] = lines
    return reports


def main() -> None:
    """Seed (unless --reuse), then time every search and the page, then explain."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--database", default=default_url())
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database")
    parser.add_argument("--no-explain", action="store_true")
    args = parser.parse_args()

    app = make_app(args.database)
    if not args.reuse:
        fresh_schema(app, args.database)
        seed_messages(app, args.messages)
    rng = random.Random(66)
    with app.app_context():
        from dashboard.extensions import db
        from dashboard.models import Message

        total = db.session.scalar(select(func.count()).select_from(Message))
        print(f"database: {db.engine.dialect.name} ({db.engine.url.render_as_string()}), "
              f"{total:,} messages")
        kinds = samples(args.rounds, rng)
        time_searches(kinds)  # warm the caches once, as a running server would be
        figures = time_searches(kinds)
        print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"search service (log_search.parse + run), {args.rounds} rounds each, ms "
              "(wall clock, and CPU time of this process):")
        print(f"{'search':24} {'p50':>7} {'p95':>7} {'cpu p50':>8} {'cpu p95':>8}  "
              "plan      median count")
        for kind, (p50, p95, c50, c95, plans, count) in figures.items():
            flag = "" if p95 <= GOAL_SEARCH_MS else f"  (wall p95 > {GOAL_SEARCH_MS} ms)"
            print(f"{kind:24} {p50:7.1f} {p95:7.1f} {c50:8.1f} {c95:8.1f}  "
                  f"{'/'.join(plans):9} {count:>6}{flag}")
        pages = time_pages(app, kinds)
        print(f"\nLog page GET (full page, server-side), {args.rounds} rounds each, ms:")
        print(f"{'search':24} {'p50':>7} {'p95':>7} {'cpu p50':>8} {'cpu p95':>8}")
        for kind, (p50, p95, c50, c95) in pages.items():
            flag = "" if p95 <= GOAL_PAGE_MS else f"  (wall p95 > {GOAL_PAGE_MS} ms)"
            print(f"{kind:24} {p50:7.1f} {p95:7.1f} {c50:8.1f} {c95:8.1f}{flag}")
        print(f"load average {os.getloadavg()[0]:.1f}")
        if not args.no_explain:
            print("\nplans:")
            for kind, lines in explain(kinds).items():
                print(f"[{kind}]")
                for line in lines:
                    print("  " + line)


if __name__ == "__main__":
    main()
