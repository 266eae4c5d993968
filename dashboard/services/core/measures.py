"""What only a process can measure, for /metrics: send latency and outcomes, sweep duration,
webhook attempts (prometheus-client instruments in one registry).

Delivery and webhooks record here; `operations/metrics` exposes it with what the database
knows. With PROMETHEUS_MULTIPROC_DIR set (gunicorn and `flask worker` alike, one folder per
host, emptied before they start) each process writes its values to files there and a scrape
of any web process adds them up; without it a process shows only its own.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram

PROCESS = CollectorRegistry(auto_describe=True)

SEND_SECONDS = Histogram(
    "postino_send_seconds", "Time to hand one message to its SMTP server (connect to answer)",
    ["transport", "outcome"], registry=PROCESS,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
SEND_OUTCOMES = Counter(
    "postino_send_outcomes", "Send attempts by what the answer did to the message",
    ["outcome", "transport", "fault_class"], registry=PROCESS)
SWEEP_SECONDS = Histogram(
    "postino_sweep_seconds", "Duration of one sweep of the due queue", registry=PROCESS,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900))
WEBHOOK_ATTEMPTS = Counter(
    "postino_webhook_attempts", "Webhook delivery attempts by result", ["result"],
    registry=PROCESS)
WEBHOOK_SECONDS = Histogram(
    "postino_webhook_seconds", "Time of one webhook delivery attempt", registry=PROCESS,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def transport_kind(name: str) -> str:
    """`relay` or `customer_smtp`, from a transport's name (a bounded label, not the code)."""
    return "relay" if name == "relay" else "customer_smtp"


def observe_send(transport_name: str, status: str, seconds: float) -> None:
    """One message handed to a server (or not): its latency, by transport kind and status."""
    SEND_SECONDS.labels(transport_kind(transport_name), status).observe(seconds)


def count_outcome(sending_mode: str, status: str, fault_class: str | None) -> None:
    """One send-time answer: sent, deferred or failed, by transport kind and who is at fault."""
    kind = "customer_smtp" if sending_mode == "customer_smtp" else "relay"
    SEND_OUTCOMES.labels(status, kind, fault_class or "none").inc()


@contextmanager
def timed_sweep():
    """Time one sweep."""
    started = time.monotonic()
    try:
        yield
    finally:
        SWEEP_SECONDS.observe(time.monotonic() - started)


def webhook_attempt(result: str, seconds: float) -> None:
    """One webhook POST: delivered, failed (error answer) or timeout/unreachable."""
    WEBHOOK_ATTEMPTS.labels(result).inc()
    WEBHOOK_SECONDS.observe(seconds)
