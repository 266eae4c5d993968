"""Sweep throughput against a bare smtplib loop (issue 3). Not a test: it prints figures.

    python bench/sweep.py [--messages 10000] [--database URL] [--profile FILE] [--dkim]

Starts an aiosmtpd sink in its own process (so it does not share our GIL), enqueues the
messages through the service layer (one pre-rendered template), times `sweep()` draining
them and a bare smtplib loop sending the same rendered messages over one reused connection
to the same sink, and prints both rates and their ratio. The two alternate in `--rounds`
slices (a slice swept, then as many sent bare) so that both see the same machine. Without --database a
fresh SQLite file in a temporary folder is used; a PostgreSQL URL gets its schema dropped
and re-created, so give it a database of its own.

--dkim (issue 17) sends as a custom_from customer with a DKIM key (RSA 2048; --ed25519 adds
the second signature) and each round sweeps a slice signed, then a slice unsigned (the key's
signing switched off), then the bare loop: it prints both ratios, and the signing cost per
message (`dkim_keys.sign_bytes` alone, timed on the round's messages: median and range of
the per-round medians).
"""
from __future__ import annotations

import argparse
import cProfile
import email.policy
import multiprocessing
import os
import pstats
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/common.py: the script's own folder is on sys.path
from common import free_port, quiet_logging, relay_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _sink(port: int, ready, counter) -> None:
    """The sink process: accept everything, count messages, keep nothing."""
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 2.0.0 Ok"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port,
                            data_size_limit=20 * 1024 * 1024)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def _app(database: str, port: int):
    from cryptography.fernet import Fernet
    from flask_migrate import upgrade
    from sqlalchemy import text

    from dashboard import create_app
    from dashboard.extensions import db

    app = create_app(relay_config(database, port, Fernet.generate_key().decode()))
    quiet_logging()
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            db.session.commit()
        upgrade()
    quiet_logging()
    return app


def _enqueue(count: int, dkim: bool = False, ed25519: bool = False):
    """Store `count` messages; with `dkim`, From a custom_from customer with a DKIM key
    (forced on: no DNS here), which is returned."""
    from dashboard.notifications import CATALOG
    from dashboard.services.accounts import customers
    from dashboard.services.content import render
    from dashboard.services.delivery import dkim_keys
    from dashboard.services.messages import intake

    customer, _ = customers.create_customer("BENCH", "Bench customer")
    key = None
    if dkim:
        customer.sending_mode = "custom_from"
        customer.from_address = "ordini@bench.example"
        key = dkim_keys.generate(customer, ed25519=ed25519)
        dkim_keys.set_forced(key, True)
    rendered = render.render_notification(customer, "order_closed", "it",
                                          CATALOG["order_closed"]["sample"])
    data = CATALOG["order_closed"]["sample"]
    for start in range(0, count, 500):
        recipients = [f"buyer{i}@example.com" for i in range(start, min(count, start + 500))]
        intake.store(customer, "order_closed", recipients, "ORD-BENCH", "it", data, rendered,
                       [])
    return key


def _signing_cost(batch, keys) -> tuple[float, float]:
    """Median seconds per message of `dkim_keys.sign_bytes` over these built messages, and
    of the bare RSA private-key operation alone (what OpenSSL costs on this machine now)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from dashboard.services.delivery import dkim_keys

    times, rsa_times = [], []
    rsa = next(k.private for k in keys if k.algorithm == b"rsa-sha256")
    for data in batch:
        t0 = time.perf_counter()
        dkim_keys.sign_bytes(data, keys)
        t1 = time.perf_counter()
        rsa.sign(data[:64], padding.PKCS1v15(), hashes.SHA256())
        times.append(t1 - t0)
        rsa_times.append(time.perf_counter() - t1)
    return statistics.median(times), statistics.median(rsa_times)


def _bare_loop(port: int, envelopes: list[tuple[str, str, bytes]]) -> float:
    """Send pre-built messages over one reused smtplib connection; returns seconds."""
    started = time.perf_counter()
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.ehlo()
    for sender, recipient, data in envelopes:
        smtp.sendmail(sender, [recipient], data)
    smtp.quit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--database", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternate sweep and bare loop this many times (1: one each)")
    parser.add_argument("--profile", help="write a cProfile of the sweep here")
    parser.add_argument("--lanes", type=int, default=None,
                        help="relay lanes for the sweep (default: the setting's default)")
    parser.add_argument("--dkim", action="store_true",
                        help="custom_from with a DKIM key: sweep signed and unsigned slices")
    parser.add_argument("--ed25519", action="store_true",
                        help="with --dkim: an Ed25519 signature alongside the RSA one")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="postino-bench-")
    database = args.database or f"sqlite:///{tmp}/bench.sqlite3"
    port = free_port()
    ready, counter = multiprocessing.Event(), multiprocessing.Value("i", 0)
    sink = multiprocessing.Process(target=_sink, args=(port, ready, counter), daemon=True)
    sink.start()
    ready.wait(10)
    try:
        app = _app(database, port)
        with app.app_context():
            from sqlalchemy import func, select

            from dashboard.extensions import db
            from dashboard.models import DkimKey, Message
            from dashboard.services.delivery import compose, dkim_keys
            from dashboard.services.delivery.sweep import sweep

            if args.lanes is not None:
                from dashboard.services.core import settings

                settings.put("relay_lanes", args.lanes)
            # --dkim: twice the messages, a signed and an unsigned slice per round
            stored = args.messages * (2 if args.dkim else 1)
            t0 = time.perf_counter()
            key = _enqueue(stored, args.dkim, args.ed25519)
            enqueue_s = time.perf_counter() - t0
            # the bare loop sends exactly these bytes (built before any is sent)
            envelopes = [(m.envelope_from, m.recipient,
                          compose.build(m).as_bytes(policy=email.policy.SMTP))
                         for m in db.session.scalars(select(Message).order_by(Message.id)
                                                     .limit(args.messages))]
            signing_keys = (dkim_keys.signing_keys(key.customer_id, key.domain)
                            if key is not None else [])
            key_id = key.id if key is not None else None
            db.session.remove()

            # Rounds alternate the two (sweep a slice, then the bare loop on as many
            # messages) so that both see the same machine: these boxes are noisy.
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            rounds = max(1, min(args.rounds, args.messages))
            sweep_s = sweep_cpu = bare_s = bare_cpu = 0.0
            plain_s = plain_cpu = 0.0
            ratios, plain_ratios, sign_costs, rsa_costs, done = [], [], [], [], 0
            for index in range(rounds):
                size = args.messages * (index + 1) // rounds - done
                if key_id is not None:
                    dkim_keys.set_forced(db.session.get(DkimKey, key_id), True)
                t0, c0 = time.perf_counter(), time.process_time()
                if profiler:
                    profiler.enable()
                result = sweep(max_messages=size)
                if profiler:
                    profiler.disable()
                s_wall, s_cpu = time.perf_counter() - t0, time.process_time() - c0
                assert result.sent == size, (result, size)
                if key_id is not None:
                    # the same sweep with the key's signing off, on as many messages
                    dkim_keys.set_forced(db.session.get(DkimKey, key_id), False)
                    t0, c0 = time.perf_counter(), time.process_time()
                    result = sweep(max_messages=size)
                    p_wall, p_cpu = time.perf_counter() - t0, time.process_time() - c0
                    assert result.sent == size, (result, size)
                    plain_s, plain_cpu = plain_s + p_wall, plain_cpu + p_cpu
                    batch = [data for _sender, _rcpt, data in envelopes[done:done + size]]
                    cost, rsa_cost = _signing_cost(batch[:500], signing_keys)
                    sign_costs.append(cost)
                    rsa_costs.append(rsa_cost)
                received = counter.value
                c0 = time.process_time()
                b_wall = _bare_loop(port, envelopes[done:done + size])
                b_cpu = time.process_time() - c0
                assert counter.value == received + size
                sweep_s, sweep_cpu = sweep_s + s_wall, sweep_cpu + s_cpu
                bare_s, bare_cpu = bare_s + b_wall, bare_cpu + b_cpu
                ratios.append(b_wall / s_wall)
                if key_id is not None:
                    plain_ratios.append(b_wall / p_wall)
                done += size
            sent = db.session.scalar(select(func.count()).select_from(Message)
                                     .where(Message.status == "sent"))
            assert sent == stored, sent
            dialect = db.engine.dialect.name
    finally:
        sink.terminate()
        sink.join(5)

    sweep_rate = args.messages / sweep_s
    bare_rate = args.messages / bare_s
    print(f"database        {dialect} ({database.split('@')[-1]})")
    print(f"messages        {args.messages}, relay lanes {args.lanes or 'default'}")
    print(f"enqueue         {enqueue_s:8.2f} s  ({args.messages / enqueue_s:8.0f} msg/s, "
          f"service layer, not the goal)")
    print(f"sweep           {sweep_s:8.2f} s  ({sweep_rate:8.0f} msg/s)  "
          f"CPU {sweep_cpu * 1e6 / args.messages:6.0f} us/msg")
    print(f"bare smtplib    {bare_s:8.2f} s  ({bare_rate:8.0f} msg/s)  "
          f"CPU {bare_cpu * 1e6 / args.messages:6.0f} us/msg")
    print(f"ratio           {sweep_rate / bare_rate:8.2f}  (goal >= 0.60; per round: median "
          f"{statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f}, "
          f"{len(ratios)} rounds)" + ("  <- signed" if args.dkim else ""))
    if args.dkim:
        plain_rate = args.messages / plain_s
        kinds = "RSA 2048 + Ed25519" if args.ed25519 else "RSA 2048"
        print(f"sweep unsigned  {plain_s:8.2f} s  ({plain_rate:8.0f} msg/s)  "
              f"CPU {plain_cpu * 1e6 / args.messages:6.0f} us/msg")
        print(f"ratio unsigned  {plain_rate / bare_rate:8.2f}  (per round: median "
              f"{statistics.median(plain_ratios):.2f}, min {min(plain_ratios):.2f}, "
              f"max {max(plain_ratios):.2f})")
        print(f"signing cost    {statistics.median(sign_costs) * 1e3:8.3f} ms/msg  ({kinds}, "
              f"sign_bytes alone; per-round medians {min(sign_costs) * 1e3:.3f}-"
              f"{max(sign_costs) * 1e3:.3f} ms; goal <= 1 ms with RSA 2048)")
        print(f"RSA op alone    {statistics.median(rsa_costs) * 1e3:8.3f} ms/msg  (the OpenSSL "
              f"private-key operation alone, same rounds: {min(rsa_costs) * 1e3:.3f}-"
              f"{max(rsa_costs) * 1e3:.3f} ms); sweep CPU "
              f"{(sweep_cpu - plain_cpu) * 1e6 / args.messages:+.0f} us/msg signed vs unsigned")
    print(f"load average    {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
          f"(1-minute, {os.cpu_count()} CPUs)")
    if profiler:
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
