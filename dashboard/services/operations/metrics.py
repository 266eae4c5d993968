"""Prometheus metrics for `GET /metrics`: what the database knows, read at scrape time, and
what only a process can measure (send latency, sweep duration, outcomes, webhook attempts).

The web processes and the workers are separate processes, so:
- counts and queue depths come from the database when Prometheus scrapes (DatabaseCollector):
  any web process answers the same, whichever worker did the work;
- measurements taken in a process (the instruments of `core/measures.py`) use prometheus-client's
  multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (in the environment of gunicorn and
  of `flask worker` alike, the same folder on one host, emptied before they start): each
  process writes its values to files there and a scrape of any web process adds them up.
  Without it, a process shows only its own measurements (fine for `flask demo`).
"""
from __future__ import annotations

import ipaddress

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..core.measures import PROCESS

CONTENT_TYPE = CONTENT_TYPE_LATEST


class DatabaseCollector:
    """Gauges and counters read from the database at scrape time (the same from every
    process): the queue by status, bounce reports by kind, the webhook backlog, the worker's
    last sweep. The queue and backlog counts read the status indexes, not the whole tables."""

    def describe(self):
        return []

    def collect(self):
        from sqlalchemy import func, select

        from ...extensions import db
        from ...models import PENDING_STATUSES, BounceReport, JobRun, Message, WebhookEvent, utcnow

        queue = GaugeMetricFamily("postino_queue_messages", "Messages that can still leave, "
                                  "by status (queued, deferred, sending, held)",
                                  labels=["status"])
        found = dict(db.session.execute(
            select(Message.status, func.count()).where(Message.status.in_(PENDING_STATUSES))
            .group_by(Message.status)).all())
        for status in PENDING_STATUSES:
            queue.add_metric([status], found.get(status, 0))
        yield queue

        due = GaugeMetricFamily("postino_queue_due", "Queued or deferred messages due now")
        due.add_metric([], db.session.scalar(
            select(func.count()).select_from(Message).where(
                Message.status.in_(("queued", "deferred")),
                Message.next_attempt_at <= utcnow())) or 0)
        yield due

        reports = CounterMetricFamily("postino_bounce_reports", "Bounce reports, delivery "
                                      "reports and complaints received, by kind",
                                      labels=["kind"])
        for kind, count in db.session.execute(
                select(BounceReport.kind, func.count()).group_by(BounceReport.kind)):
            reports.add_metric([kind], count)
        yield reports

        webhooks = GaugeMetricFamily("postino_webhook_backlog", "Webhook events waiting to "
                                     "be delivered (pending) or being delivered (sending)",
                                     labels=["status"])
        found = dict(db.session.execute(
            select(WebhookEvent.status, func.count())
            .where(WebhookEvent.status.in_(("pending", "sending")))
            .group_by(WebhookEvent.status)).all())
        for status in ("pending", "sending"):
            webhooks.add_metric([status], found.get(status, 0))
        yield webhooks

        last = db.session.scalar(  # the worker's heartbeat, as services.jobs reads it
            select(JobRun.finished_at).where(JobRun.job == "sweep",
                                             JobRun.finished_at.is_not(None))
            .order_by(JobRun.started_at.desc()).limit(1))
        heartbeat = GaugeMetricFamily("postino_worker_last_sweep_timestamp_seconds",
                                      "When a worker last finished a sweep (Unix time; 0: never)")
        heartbeat.add_metric([], last.timestamp() if last else 0)
        yield heartbeat
        db.session.rollback()


class _ThisProcess:
    """The measurements of this process, when there is no multiprocess folder."""

    def collect(self):
        yield from PROCESS.collect()


def exposition(multiproc_dir: str | None) -> bytes:
    """The text format of every metric: the database's, and the processes' measurements."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    if multiproc_dir:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=multiproc_dir)
    else:
        registry.register(_ThisProcess())
    return generate_latest(registry)


def allowed(remote_addr: str | None, authorization: str | None, allow: str,
            token: str | None) -> bool:
    """May this client read the metrics? With the token (`Authorization: Bearer …`), or from
    an address in the allow list (addresses or CIDRs, comma-separated)."""
    import hmac

    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
            return True
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return False
    for item in (allow or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False
