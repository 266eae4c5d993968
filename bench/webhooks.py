"""Benchmark: webhook delivery and the /metrics scrape on a local SQLite file.

    python bench/webhooks.py [--events 500] [--messages 100000]

1. N messages of one customer get a `sent` step each; one pass of the webhook job reads
   them into the outbox and POSTs them, signed, to a local HTTPS receiver (a thread in this
   process, trusted through POSTINO_WEBHOOK_CA_FILE). Prints the outbox read and the
   deliveries per second (one TLS connection per event).
2. M more messages in the database; prints the median time of GET /metrics (the database
   counts are read at scrape time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()

    from flask_migrate import upgrade
    from sqlalchemy import insert

    from dashboard import create_app
    from dashboard.extensions import db
    from dashboard.models import Message, MessageEvent, utcnow
    from dashboard.services.accounts import customers
    from dashboard.services.webhooks import delivery, endpoints, outbox
    from tests.webhooks import receiver as receiver_module

    tmp = Path(tempfile.mkdtemp(prefix="postino-bench-webhooks-"))
    receiver = receiver_module.start(tmp)
    app = create_app({"TESTING": True, "SECRET_KEY": "bench" * 8,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'bench.sqlite3'}",
                      "POSTINO_CREDENTIALS_KEY": Fernet.generate_key().decode(),
                      "POSTINO_WEBHOOK_CA_FILE": receiver.ca_file})
    with app.app_context():
        upgrade()
        customer, _key = customers.create_customer("BENCH", "Bench")
        endpoints.configure(customer, receiver.url, None)
        now = utcnow()

        def seed(count: int, customer_id: int, with_events: bool) -> None:
            for start in range(0, count, 5000):
                size = min(5000, count - start)
                ids = db.session.execute(insert(Message).returning(Message.id), [
                    {"public_id": f"b{customer_id}x{start + i:08d}", "customer_id": customer_id,
                     "event": "order_closed", "recipient": f"r{start + i}@example.com",
                     "subject": "s", "status": "sent", "attempts": 1, "created_at": now,
                     "updated_at": now} for i in range(size)]).scalars().all()
                if with_events:
                    db.session.execute(insert(MessageEvent), [
                        {"message_id": i, "type": "sent", "at": now} for i in ids])
                db.session.commit()

        seed(args.events, customer.id, True)
        started = time.perf_counter()
        produced = outbox.produce()
        read = time.perf_counter() - started
        started = time.perf_counter()
        counts = delivery.run(max_seconds=600, produce=False)
        sent = time.perf_counter() - started
        print(f"outbox: {produced} events read in {read * 1000:.0f} ms")
        print(f"delivery: {counts['delivered']} events in {sent:.2f} s = "
              f"{counts['delivered'] / sent:.0f}/s (received {len(receiver.received)})")

        other, _key = customers.create_customer("OTHER", "Other")
        seed(args.messages, other.id, False)
        client = app.test_client()
        times = []
        for _ in range(9):
            started = time.perf_counter()
            assert client.get("/metrics").status_code == 200
            times.append(time.perf_counter() - started)
        print(f"GET /metrics with {args.messages + args.events} messages: median "
              f"{statistics.median(times) * 1000:.0f} ms (range {min(times) * 1000:.0f}-"
              f"{max(times) * 1000:.0f} ms)")
    receiver.stop()


if __name__ == "__main__":
    main()
