"""Several worker processes on one PostgreSQL queue: with claims sized to their lanes they
finish together, and a rate limit shared through the database holds across all of them."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.core import settings

from .test_concurrency import _delivered, _enqueue_bulk, _worker_env

pytestmark = [pytest.mark.pg, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

# One worker: waits for the go file, then sweeps (once, or every 0.5 s until the deadline);
# prints when it started and ended (time.time(), comparable across processes).
_WORKER = """
import os, sys, time
from dashboard import create_app
from dashboard.services.delivery.sweep import sweep

go, seconds = sys.argv[1], float(sys.argv[2])
app = create_app()
with app.app_context():
    while not os.path.exists(go):
        time.sleep(0.01)
    started = time.time()
    sent = sweep().sent
    while time.time() < started + seconds:
        time.sleep(0.5)
        sent += sweep().sent
    print(f"start={started} end={time.time()} sent={sent}")
"""


@pytest.fixture(autouse=True)
def _postgresql_only(app):
    """Real row locks and several processes: PostgreSQL only."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL): SQLite has one writer")


def _workers(app, sink, count: int, go: Path, seconds: float = 0) -> list[subprocess.Popen]:
    env = _worker_env(app, sink)
    return [subprocess.Popen([sys.executable, "-c", _WORKER, str(go), str(seconds)], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(count)]


def _results(workers) -> list[dict]:
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=400)
        assert worker.returncode == 0, err.decode()[-2000:]
        line = out.decode().strip().splitlines()[-1]
        results.append({k: float(v) for k, v in (part.split("=") for part in line.split())})
    return results


def _latency(sink, seconds: float) -> list[float]:
    """Answer each message `seconds` late, as a relay further away does; returns the list
    of arrival times (time.time())."""
    arrivals = []
    original = sink.handler.handle_DATA

    async def late(server, session, envelope):
        await asyncio.sleep(seconds)
        arrivals.append(time.time())
        return await original(server, session, envelope)

    sink.handler.handle_DATA = late
    return arrivals


def test_four_workers_on_one_queue_finish_together(app, smtp_server, make_customer, tmp_path):
    """1,600 messages, four workers with 8 lanes each, a relay answering 20 ms late: every
    message goes once, each worker sends a share, and the last worker ends within 10 % of
    the run after the first (claims of 32, not 200, so none is left with a long tail)."""
    sink = smtp_server(pipelining=True)
    _latency(sink, 0.02)
    customer, _ = make_customer()
    public_ids = _enqueue_bulk(customer, 1600)
    go = tmp_path / "go"
    workers = _workers(app, sink, 4, go)
    time.sleep(3)  # let them import and connect; then all start at once
    go.touch()
    results = _results(workers)
    assert sum(r["sent"] for r in results) == 1600
    assert all(r["sent"] > 0 for r in results), results
    delivered = _delivered(sink)
    assert set(delivered) == set(public_ids) and max(delivered.values()) == 1
    start = min(r["start"] for r in results)
    ends = sorted(r["end"] for r in results)
    assert ends[-1] - ends[0] <= 0.10 * (ends[-1] - start), (results, ends[-1] - start)


def test_a_rate_limit_shared_by_three_workers_holds_over_two_minutes(
        app, smtp_server, make_customer, tmp_path):
    """30 a minute on our relay, three workers sweeping every 0.5 s for two minutes over a
    queue of 100: no 60 s window at the relay ever holds more than 30 messages, and the
    queue drains at no less than 90 % of the allowed rate (60 in the first 120 s)."""
    settings.put("relay_rate_limits", {"minute": 30})
    sink = smtp_server(pipelining=True)
    arrivals = _latency(sink, 0.0)
    customer, _ = make_customer()
    _enqueue_bulk(customer, 100)
    go = tmp_path / "go"
    workers = _workers(app, sink, 3, go, seconds=125)
    time.sleep(3)
    go.touch()
    results = _results(workers)
    times = sorted(arrivals)
    assert sum(r["sent"] for r in results) == len(times)
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert busiest <= 30, busiest
    in_two_minutes = sum(1 for t in times if t < times[0] + 120)
    assert in_two_minutes >= 0.9 * 60, (in_two_minutes, [round(t - times[0], 1) for t in times])
    db.session.expire_all()
    queued = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.status == "queued"))
    assert queued == 100 - len(times)
    assert os.path.exists(go)
