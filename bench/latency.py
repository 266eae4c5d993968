"""Sending throughput against a relay N ms away (issue 16). Not a test: it prints figures.

    python bench/latency.py [--delay-ms 20] [--rounds 5] [--messages 400] [--no-pipelining]
                            [--database URL] [--contenders bare1,bare8,w1l1,w1l8,w4l8,post_office]

A sink in its own process (aiosmtpd) delays every reply by --delay-ms, as the network does
for a relay that is not on this machine: each reply leaves the sink that long after its
command arrived, in order, while the sink goes on reading (so pipelined commands cost one
delay, not one each). It advertises PIPELINING unless --no-pipelining.

Contenders, all sending the same rendered notification to the same sink:
  bare1        one smtplib connection, sendmail() in a loop
  bare8        as many smtplib connections in parallel as --parallel (default 8), one thread each
  w1l1, w1l8   Postino: one worker process (`sweep()`), relay lanes 1 / 8
  w4l1, w4l8   Postino: four worker processes on one queue (PostgreSQL only: SQLite has one
               writer), relay lanes 1 / 8
  post_office  django-post_office 3.x with its defaults (5 threads, batches of 100), installed
               by this script into bench/.venv-post-office (not a Postino dependency)

Every round runs every contender once, in turn, on fresh messages (queued before its timer
starts): a box shared with other work then slows all of them alike. Single-connection
contenders (bare1, w1l1, w4l1 per worker) get --messages / 8 per round so a round stays short;
rates are per second, so the ratios do not depend on it. Each round prints each rate and its
ratio to bare1; the end prints the median and the range of every ratio over the rounds, and
the load average before and after every round.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/common.py: the script's own folder is on sys.path
from common import free_port, quiet_logging, relay_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV = ROOT / "bench" / ".venv-post-office"
ALL = ("bare1", "bare8", "w1l1", "w1l8", "w4l1", "w4l8", "post_office")
SINGLE = ("bare1", "w1l1", "w4l1")  # one connection each: fewer messages per round


# -- the sink ---------------------------------------------------------------------------
def _sink(port: int, delay: float, pipelining: bool, ready, counter) -> None:
    """The sink process: every reply leaves `delay` seconds after it was produced."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP

    class LatencySMTP(SMTP):
        """Replies are written `delay` late, in order; the server keeps reading meanwhile."""

        _last_due = 0.0

        async def push(self, status):
            data = (status.encode("utf-8") if isinstance(status, str) else status) + b"\r\n"
            loop = asyncio.get_running_loop()
            due = max(loop.time() + delay, self._last_due + 1e-6)
            self._last_due = due
            if status[:3] in ("221", b"221"):  # the server closes right after: wait here
                await asyncio.sleep(due - loop.time())
                self._write(data)
                return
            loop.call_at(due, self._write, data)

        def _write(self, data: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            if pipelining:
                responses = responses[:-1] + ["250-PIPELINING"] + responses[-1:]
            return responses

        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 2.0.0 Ok"

    class LatencyController(Controller):
        def factory(self):
            return LatencySMTP(self.handler, **self.SMTP_kwargs)

    controller = LatencyController(Handler(), hostname="127.0.0.1", port=port,
                                   data_size_limit=20 * 1024 * 1024)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# -- Postino ----------------------------------------------------------------------------
# the workers are processes of their own: they all need the same key
CREDENTIALS_KEY = "Lp5GzzdtmkcMpu-PBwpmXdHJa61mwwF_8sc0_6_ESxc="


def _config(database: str, port: int) -> dict:
    return {**relay_config(database, port, CREDENTIALS_KEY),
            "POSTINO_BOUNCE_DOMAIN": "bounces.bench.example",
            "POSTINO_SENDER_NOTIFICATION": "Postino <notification@bench.example>",
            "POSTINO_SENDER_REGISTRATION": "Postino <registration@bench.example>"}


def _worker(database: str, port: int, connection) -> None:
    """A Postino worker process: sweeps the queue each time it is told to, reports back."""
    sys.path.insert(0, str(ROOT))
    from dashboard import create_app
    from dashboard.services.delivery.sweep import sweep

    app = create_app(_config(database, port))
    quiet_logging()
    connection.send("ready")
    while connection.recv() == "sweep":
        with app.app_context():
            started = time.perf_counter()
            result = sweep()
            connection.send((time.perf_counter() - started, result.sent, result.deferred))


class Postino:
    """The queue (filled in bulk, outside the timings) and its worker processes."""

    def __init__(self, database: str, port: int, workers: int):
        from flask_migrate import upgrade
        from sqlalchemy import text

        from dashboard import create_app
        from dashboard.extensions import db

        self.app = create_app(_config(database, port))
        quiet_logging()
        with self.app.app_context():
            if db.engine.dialect.name == "postgresql":
                db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
                db.session.commit()
            upgrade()
            quiet_logging()
            from dashboard.services.accounts import customers

            customer, _ = customers.create_customer("BENCH", "Bench customer")
            self.customer_id = customer.id
            self.dialect = db.engine.dialect.name
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(workers):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(database, port, child), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if not pipe.poll(120) or pipe.recv() != "ready":  # a worker that died says nothing
                self.close()
                sys.exit(f"a Postino worker process did not start (exit code {process.exitcode})")

    def content(self) -> dict:
        """The rendered notification (for post_office) and its built bytes (for smtplib)."""
        import email.policy

        from sqlalchemy import select

        from dashboard.extensions import db
        from dashboard.models import Message
        from dashboard.services.delivery import compose

        with self.app.app_context():
            self.enqueue(1)
            message = db.session.scalars(select(Message)).one()
            data = compose.build(message).as_bytes(policy=email.policy.SMTP)
            built = {"from": message.from_header, "subject": message.subject,
                     "html": message.html_body, "text": message.text_body,
                     "envelope_from": message.envelope_from, "bytes": data}
            db.session.delete(message)
            db.session.commit()
        return built

    def enqueue(self, count: int) -> None:
        """Queue `count` rendered order_closed messages in bulk inserts."""
        from sqlalchemy import insert

        from dashboard.extensions import db
        from dashboard.models import Customer, Message, new_public_id, utcnow
        from dashboard.notifications import CATALOG
        from dashboard.services.content import render
        from dashboard.services.delivery import modes, verp

        with self.app.app_context():
            customer = db.session.get(Customer, self.customer_id)
            rendered = render.render_notification(customer, "order_closed", "it",
                                                  CATALOG["order_closed"]["sample"])
            from_header = modes.from_header(customer, "order_closed")
            domain = verp.bounce_domain()
            now = utcnow()
            rows = []
            for index in range(count):
                public_id = new_public_id()
                rows.append({
                    "public_id": public_id, "customer_id": customer.id,
                    "event": "order_closed", "language": "it",
                    "recipient": f"buyer{index}@example.com", "from_header": from_header,
                    "envelope_from": verp.address_for(public_id, domain),
                    "message_id_header": f"<{public_id}@{domain}>",
                    "subject": rendered.subject, "html_body": rendered.html,
                    "text_body": rendered.text, "transport": "standard",
                    "template_source": rendered.source, "status": "queued", "attempts": 0,
                    "next_attempt_at": now, "created_at": now, "updated_at": now,
                    "open_count": 0})
            for start in range(0, count, 500):
                db.session.execute(insert(Message), rows[start:start + 500])
            db.session.commit()

    def set_lanes(self, lanes: int) -> bool:
        """Relay lanes for the next sweeps; False when this Postino has no lanes setting."""
        from dashboard.services.core import settings

        with self.app.app_context():
            if "relay_lanes" not in settings.DEFAULTS:
                return lanes == 1
            settings.put("relay_lanes", lanes)
        return True

    def sweep(self, workers: int) -> tuple[float, int]:
        """Every one of `workers` processes sweeps until the queue is empty; wall, sent."""
        started = time.perf_counter()
        for pipe in self.pipes[:workers]:
            pipe.send("sweep")
        answers = []
        for pipe in self.pipes[:workers]:
            if not pipe.poll(600):
                raise RuntimeError("a Postino worker did not finish its sweep in 10 minutes")
            answers.append(pipe.recv())
        elapsed = time.perf_counter() - started
        assert sum(a[2] for a in answers) == 0, f"deferred messages: {answers}"
        return elapsed, sum(a[1] for a in answers)

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            if process.is_alive():
                pipe.send("stop")
            process.join(5)
            if process.is_alive():
                process.terminate()


# -- bare smtplib -----------------------------------------------------------------------
def _bare(port: int, envelope_from: str, data: bytes, count: int, connections: int) -> float:
    """`count` messages over `connections` smtplib connections, one thread each; seconds."""
    def one(share: int) -> None:
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
        smtp.ehlo()
        for index in range(share):
            smtp.sendmail(envelope_from, [f"buyer{index}@example.com"], data)
        smtp.quit()

    shares = [count // connections + (1 if i < count % connections else 0)
              for i in range(connections)]
    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


# -- django-post_office -----------------------------------------------------------------
def _post_office_python() -> Path:
    """The venv's python, creating the venv and installing django-post_office if needed."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import post_office"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "django-post_office"],
                       check=True)
    return python


class PostOffice:
    """The driver process (bench/post_office_driver.py) in the post_office venv."""

    def __init__(self, port: int, content: dict, workdir: Path):
        python = _post_office_python()
        content_file = workdir / "content.json"
        content_file.write_text(json.dumps({k: v for k, v in content.items() if k != "bytes"}))
        self.process = subprocess.Popen(
            [str(python), str(ROOT / "bench" / "post_office_driver.py"), str(port),
             str(workdir), str(content_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"
        version = subprocess.run([str(python), "-c", "import importlib.metadata as m; print("
                                  "m.version('django-post_office'), m.version('django'))"],
                                 capture_output=True, text=True).stdout.split()
        self.version = f"django-post_office {version[0]}, Django {version[1]}"

    def ask(self, command: str) -> str:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask("quit")
        self.process.wait(10)


# -- the run ----------------------------------------------------------------------------
def _load() -> float:
    return os.getloadavg()[0]


def _summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):6.2f}  range {min(values):6.2f} - "
            f"{max(values):6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=400,
                        help="per contender and round (single-connection ones: an eighth)")
    parser.add_argument("--parallel", type=int, default=8, help="connections of bare8")
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"),
                        help="a PostgreSQL URL (its schema is dropped) or nothing for SQLite")
    parser.add_argument("--contenders", default=None,
                        help=f"comma-separated, from {','.join(ALL)} (default: all that apply)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="postino-latency-"))
    database = args.database or f"sqlite:///{tmp}/bench.sqlite3"
    postgresql = database.startswith("postgresql")
    wanted = args.contenders.split(",") if args.contenders else [
        c for c in ALL if postgresql or not c.startswith("w4")]
    unknown = set(wanted) - set(ALL)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    if not postgresql and any(c.startswith("w4") for c in wanted):
        parser.error("w4* need PostgreSQL (--database postgresql+psycopg://…)")

    port = free_port()
    ready, counter = multiprocessing.Event(), multiprocessing.Value("i", 0)
    sink = multiprocessing.Process(target=_sink, args=(
        port, args.delay_ms / 1000, not args.no_pipelining, ready, counter), daemon=True)
    sink.start()
    ready.wait(10)
    workers = 4 if any(c.startswith("w4") for c in wanted) else 1
    postino = post_office = None
    try:
        postino = Postino(database, port, workers)
        content = postino.content()
        if "post_office" in wanted:
            post_office = PostOffice(port, content, tmp)
        for name in wanted:
            if name.endswith("l8") and not postino.set_lanes(8):
                sys.exit(f"{name}: this Postino has no lanes setting")
        print(f"sink            {args.delay_ms:g} ms per reply, PIPELINING "
              f"{'off' if args.no_pipelining else 'advertised'}")
        print(f"database        {postino.dialect}"
              + (f"  (post_office: SQLite, {post_office.version})" if post_office else ""))
        print(f"machine         {os.cpu_count()} CPUs, load {_load():.1f} at start")
        print(f"contenders      {', '.join(wanted)}; {args.messages} messages per round "
              f"({args.messages // 8} for single connections)")
        rates: dict[str, list[float]] = {name: [] for name in wanted}
        loads = []
        for index in range(args.rounds):
            load_before = _load()
            line = []
            for name in wanted:
                count = max(10, args.messages // 8) if name in SINGLE else args.messages
                if name.startswith("w4") and name in SINGLE:
                    count *= 4
                received = counter.value
                if name == "bare1":
                    elapsed = _bare(port, content["envelope_from"], content["bytes"], count, 1)
                elif name == "bare8":
                    elapsed = _bare(port, content["envelope_from"], content["bytes"], count,
                                    args.parallel)
                elif name == "post_office":
                    assert post_office.ask(f"enqueue {count}") == "ok"
                    elapsed_text, sent = post_office.ask("send").split()
                    elapsed = float(elapsed_text)
                    assert int(sent) == count, (sent, count)
                else:
                    postino.enqueue(count)
                    assert postino.set_lanes(8 if name.endswith("l8") else 1)
                    elapsed, sent = postino.sweep(4 if name.startswith("w4") else 1)
                    assert sent == count, (name, sent, count)
                time.sleep(0.2)  # the sink counts the last message after its reply left
                assert counter.value - received == count, (name, counter.value - received)
                rates[name].append(count / elapsed)
                line.append(f"{name} {count / elapsed:7.1f}/s")
            load_after = _load()
            loads.append((load_before, load_after))
            base = rates[wanted[0]][-1]
            ratios = "  ".join(f"{name}/{wanted[0]} {rates[name][-1] / base:5.2f}"
                               for name in wanted[1:])
            print(f"round {index + 1:2d}  load {load_before:4.1f} -> {load_after:4.1f}  "
                  + "  ".join(line))
            print(f"          {ratios}")
        print()
        print(f"rates (msg/s) and ratios over {args.rounds} rounds, each ratio taken within "
              f"its round:")
        base_name = wanted[0]
        for name in wanted:
            print(f"  {name:12s} rate   {_summary(rates[name])}")
        pairs = [(name, base_name) for name in wanted[1:]]
        for a, b in (("w1l8", "post_office"), ("w4l8", "w1l8"), ("w4l1", "w1l1"),
                     ("w1l8", "bare8")):
            if a in wanted and b in wanted and (a, b) not in pairs:
                pairs.append((a, b))
        for a, b in pairs:
            ratios = [x / y for x, y in zip(rates[a], rates[b], strict=True)]
            print(f"  {a + '/' + b:24s} {_summary(ratios)}")
        print(f"load average    before rounds {min(x for x, _ in loads):.1f}-"
              f"{max(x for x, _ in loads):.1f}, after {min(y for _, y in loads):.1f}-"
              f"{max(y for _, y in loads):.1f} (1-minute, {os.cpu_count()} CPUs)")
    finally:
        if post_office is not None:
            post_office.close()
        if postino is not None:
            postino.close()
        sink.terminate()
        sink.join(5)


if __name__ == "__main__":
    main()
