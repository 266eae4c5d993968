"""Database outages: API calls answer 503 with Retry-After (English JSON), pages a clear 503,
a stuck or frozen database fails a request fast, and a job run cut off by an outage or a
crash is marked abandoned instead of staying "running" for ever.

The PostgreSQL cases stop and freeze a private cluster of their own (tests/pg_cluster.py),
never the shared server."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from flask import current_app
from sqlalchemy import select, text

from dashboard import create_app
from dashboard.extensions import db
from dashboard.models import JobRun
from dashboard.notifications import CATALOG
from dashboard.services.accounts import customers, users
from dashboard.services.operations import jobs

from ..conftest import PASSWORD, Client
from ..pg_cluster import PrivateCluster, unavailable_reason

ROOT = Path(__file__).resolve().parents[2]
BODY = {"event": "order_closed", "to": "buyer@example.com",
        "data": CATALOG["order_closed"]["sample"]}
FAST = {"POSTINO_DB_CONNECT_TIMEOUT": 1, "POSTINO_DB_STATEMENT_TIMEOUT": 1,
        "POSTINO_DB_LOCK_TIMEOUT": 1, "POSTINO_JOB_HEARTBEAT_SECONDS": 0.3}


def timed(call, limit: float = 20.0):
    """Run `call` in a thread (in an app context of the current app); (result, seconds), or
    fail when it hangs past `limit`."""
    box: dict = {}
    app = current_app._get_current_object()

    def run():
        started = time.monotonic()
        try:
            with app.app_context():
                box["result"] = call()
                db.session.remove()
        except BaseException as error:  # reported in the test's own thread
            box["error"] = error
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting after {limit} s: the request hangs"
    if "error" in box:
        raise box["error"]
    return box["result"], box["seconds"]


def assert_api_unavailable(response) -> None:
    """The API's outage answer: 503, Retry-After, an English JSON error."""
    assert response.status_code == 503, response.get_data(as_text=True)[:500]
    assert response.headers["Retry-After"] == "30"
    error = response.get_json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["message"].startswith("the database is not answering: nothing was stored")


# -- any database: a crashed worker --------------------------------------------------------

CRASHING_WORKER = """
import sys, time
from dashboard import create_app
from dashboard.services.operations import jobs
app = create_app({"TESTING": True, "POSTINO_JOB_HEARTBEAT_SECONDS": 0.3})
with app.app_context():
    with jobs.recorded("purge") as run:
        print(run.id, flush=True)
        time.sleep(120)
"""


def test_a_killed_workers_running_job_is_marked_abandoned(app, admin_client, test_config):
    """kill -9 during a purge: its heartbeat stops, and the next job start marks the run
    abandoned; the Jobs page says so."""
    env = {**os.environ, "DATABASE_URL": test_config["SQLALCHEMY_DATABASE_URI"],
           "SECRET_KEY": test_config["SECRET_KEY"],
           "POSTINO_CREDENTIALS_KEY": test_config["POSTINO_CREDENTIALS_KEY"]}
    env.pop("FLASK_APP", None)
    worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = int(worker.stdout.readline())
        time.sleep(1)  # a few heartbeats
        db.session.expire_all()
        first_beat = db.session.get(JobRun, run_id).heartbeat_at
        assert first_beat > db.session.get(JobRun, run_id).started_at
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.stdout.close()
        worker.stderr.close()
    app.config["POSTINO_JOB_HEARTBEAT_SECONDS"] = 0.3
    try:
        db.session.expire_all()
        with jobs.recorded("sweep"):  # alive: not abandoned yet (within six heartbeats)
            pass
        assert db.session.get(JobRun, run_id).status == "running"
        time.sleep(2)
        with jobs.recorded("sweep"):
            pass
    finally:
        app.config["POSTINO_JOB_HEARTBEAT_SECONDS"] = 10
    run = db.session.get(JobRun, run_id)
    assert run.status == "abandoned" and run.finished_at is not None
    page = admin_client.get("/jobs/").get_data(as_text=True)
    assert "abandoned" in page and "its worker stopped" in page


# -- SQLite: a lock held by another connection ---------------------------------------------

def test_sqlite_a_request_waits_for_another_writers_lock_only_briefly(app, make_customer,
                                                                      api_post):
    """Another process holds the write lock: the API call gives up after
    POSTINO_DB_LOCK_TIMEOUT with a 503 (it used to wait 30 s, then answer 500); jobs keep
    waiting up to 30 s."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's busy timeout (PostgreSQL's lock_timeout is tested on a cluster)")
    _, key = make_customer()
    app.config["POSTINO_DB_LOCK_TIMEOUT"] = 1
    holder = sqlite3.connect(db.engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE setting SET key = key")
        response, seconds = timed(lambda: api_post(key, BODY))
        assert_api_unavailable(response)
        assert seconds < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        app.config["POSTINO_DB_LOCK_TIMEOUT"] = 5
    assert api_post(key, BODY).status_code == 202
    with db.engine.connect() as connection:  # outside a request: the job's patience
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


# -- PostgreSQL: a private cluster, stopped and frozen -------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """A private PostgreSQL cluster, started; removed after the module."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = PrivateCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def cluster_app(cluster, test_config):
    """An app of its own on the private cluster, migrated, with short database timeouts."""
    from flask_migrate import upgrade

    app = create_app({**test_config, "SQLALCHEMY_DATABASE_URI": cluster.url, **FAST})
    app.test_client_class = Client

    def slow():
        """A view whose statement outlives the request's statement_timeout (test only)."""
        db.session.execute(text("SELECT pg_sleep(3)"))
        return "done"

    slow._postino_public = True
    app.add_url_rule("/_slow", view_func=slow)
    with app.app_context():
        upgrade()
        customer, key = customers.create_customer("OUTAGE", "Outage S.r.l.")
        user = users.create_user("ops@staff.example.com", "admin", PASSWORD, language="it")
        app.extra = {"key": key, "email": user.email}
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def outage(cluster, cluster_app):
    """The cluster app's context; the cluster is running again (and thawed) afterwards."""
    with cluster_app.app_context():
        yield cluster_app
        try:
            db.session.remove()
        except Exception:  # its connection died with the cluster: the pool drops it
            pass
    cluster.thaw()
    try:
        cluster.postmaster_pid()
        alive = subprocess.run(["kill", "-0", str(cluster.postmaster_pid())]).returncode == 0
    except (OSError, ValueError):
        alive = False
    if not alive:
        cluster.start()


def _api(app, method: str = "post"):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {app.extra['key']}"}
    if method == "post":
        return client.post("/api/v1/notifications", json=BODY, headers=headers)
    return client.get("/api/v1/notifications/nope", headers=headers)


@pytest.mark.pg
@pytest.mark.slow
def test_a_stopped_database_gets_503_with_retry_after_then_recovers(cluster, outage):
    """pg_ctl stop -m immediate: API calls answer 503 + Retry-After in English JSON (not a
    500 in Italian), pages a 503 page without a traceback, /healthz 503; once the database
    is back the next calls work, the pool's dead connections replaced."""
    app = outage
    assert timed(lambda: _api(app))[0].status_code == 202  # live connections in the pool
    staff = app.test_client()
    staff.environ_base["HTTP_ACCEPT_LANGUAGE"] = "it"
    assert timed(lambda: staff.post("/login", data={
        "email": app.extra["email"], "password": PASSWORD}))[0].status_code == 302
    cluster.stop()

    response, seconds = timed(lambda: _api(app))
    assert_api_unavailable(response)
    assert seconds < 5
    assert_api_unavailable(timed(lambda: _api(app, "get"))[0])
    page, _ = timed(lambda: staff.get("/log/"))
    body = page.get_data(as_text=True)
    assert page.status_code == 503 and page.headers["Retry-After"] == "30"
    assert "Il database non risponde" in body and "Traceback" not in body
    fragment, _ = timed(lambda: staff.get("/log/", headers={"HX-Request": "true"}))
    assert fragment.status_code == 503 and "<html" not in fragment.get_data(as_text=True)
    assert timed(lambda: app.test_client().get("/healthz"))[0].status_code == 503

    cluster.start()
    assert timed(lambda: _api(app))[0].status_code == 202
    assert timed(lambda: staff.get("/log/"))[0].status_code == 200


@pytest.mark.pg
@pytest.mark.slow
def test_a_frozen_database_fails_api_calls_fast_instead_of_hanging(cluster, outage):
    """SIGSTOP on the server: its own timeouts cannot fire, so pooled and new connections
    are given up on after the configured limits (here 1 s): 503 in seconds, and normal
    service once it is thawed."""
    app = outage
    assert timed(lambda: _api(app))[0].status_code == 202
    cluster.freeze()
    try:
        response, seconds = timed(lambda: _api(app))  # a pooled connection: the watchdog
        assert_api_unavailable(response)
        assert seconds < 8
        db.engine.dispose()  # an empty pool: connect_timeout
        response, seconds = timed(lambda: _api(app))
        assert_api_unavailable(response)
        assert seconds < 5
    finally:
        cluster.thaw()
    assert timed(lambda: _api(app))[0].status_code == 202


@pytest.mark.pg
@pytest.mark.slow
def test_a_slow_statement_in_a_request_is_cut_by_statement_timeout(outage):
    """A statement that outlives POSTINO_DB_STATEMENT_TIMEOUT in a web request is cancelled
    by the server (503), while the same statement outside a request (a job) is not."""
    app = outage
    response, seconds = timed(lambda: app.test_client().get("/_slow"))
    assert response.status_code == 503 and seconds < 3
    started = time.monotonic()
    db.session.execute(text("SELECT pg_sleep(1.5)"))  # a job's statement: no limit
    assert time.monotonic() - started >= 1.5
    db.session.rollback()


@pytest.mark.pg
@pytest.mark.slow
def test_a_job_cut_off_by_an_outage_is_abandoned_not_running_for_ever(cluster, outage):
    """The database stops under a running job: its end cannot be recorded, its heartbeat
    stops, and once the database is back the next job start marks it abandoned."""
    app = outage
    started = threading.Event()
    box: dict = {}

    def job():
        with app.app_context():
            try:
                with jobs.recorded("purge") as run:
                    box["id"] = run.id
                    started.set()
                    while True:  # a job doing database work until the database goes away
                        db.session.execute(text("SELECT 1"))
                        db.session.commit()
                        time.sleep(0.05)
            except Exception as error:
                box["error"] = error
            finally:
                db.session.remove()

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    assert started.wait(10)
    cluster.stop()
    thread.join(20)
    assert not thread.is_alive() and "error" in box
    cluster.start()
    db.session.remove()
    assert db.session.get(JobRun, box["id"]).status == "running"  # nobody could record more
    time.sleep(2)  # more than six missed heartbeats of 0.3 s
    with jobs.recorded("sweep"):
        pass
    run = db.session.get(JobRun, box["id"])
    assert run.status == "abandoned"
    assert db.session.scalar(select(JobRun.status).where(JobRun.job == "sweep")) == "ok"
