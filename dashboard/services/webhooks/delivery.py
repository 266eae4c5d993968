"""Webhook delivery: claim due events with a lease (like the sweep claims messages: on
PostgreSQL `FOR UPDATE SKIP LOCKED`), POST each signed, record the answer, retry failures
with backoff. At least once: an event is marked delivered only after a 2xx answer, so a
worker killed mid-delivery leaves its claim to expire and another worker sends it again
(the event id lets the receiver deduplicate). Events of one message go out one at a time,
in timeline order. An endpoint failing PAUSE_AFTER times in a row is paused with an alert."""
from __future__ import annotations

import http.client
import json
import logging
import os
import random
import socket
import ssl
import time
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import aliased

from ... import log_format, reasons
from ...extensions import db
from ...models import Customer, WebhookEndpoint, WebhookEvent, utcnow
from ..core import measures
from ..delivery import credentials
from . import outbox, signing

log = logging.getLogger(__name__)
# seconds before the n-th retry, with ±10 % jitter; the last one repeats
SCHEDULE = [10, 30, 60, 300, 900, 3600, 10800, 21600]
PAUSE_AFTER = 10  # failed attempts in a row (any event) before an endpoint is paused
BATCH = 20
USER_AGENT = "Postino-Webhooks/1"


def retry_delay(attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt."""
    seconds = SCHEDULE[min(max(attempts, 1), len(SCHEDULE)) - 1]
    return timedelta(seconds=seconds * random.uniform(0.9, 1.1))


def _lease() -> timedelta:
    return timedelta(seconds=max(1, int(current_app.config.get("POSTINO_LEASE_SECONDS", 300))))


def _batch_size() -> int:
    """How many events one claim takes: all of them must fit in the lease even when every
    endpoint makes us wait its whole timeout."""
    lease = _lease().total_seconds()
    timeout = float(current_app.config.get("POSTINO_WEBHOOK_TIMEOUT") or 10)
    return max(1, min(BATCH, int(lease // (2 * timeout + 1))))


def _due(now):
    """Events that may be sent now: pending and due, or claimed by a worker whose lease ran
    out (it died or lost the database)."""
    return or_(and_(WebhookEvent.status == "pending", WebhookEvent.next_attempt_at <= now),
               and_(WebhookEvent.status == "sending", WebhookEvent.lease_expires_at < now))


def claim(owner: str, limit: int = BATCH, now=None) -> list[int]:
    """Claim up to `limit` due events of active endpoints, each the earliest unsent one of
    its message; returns their ids."""
    now = now or utcnow()
    earlier = aliased(WebhookEvent)
    blocked = select(earlier.id).where(
        earlier.endpoint_id == WebhookEvent.endpoint_id,
        earlier.message_id == WebhookEvent.message_id,
        earlier.status.in_(("pending", "sending")),
        earlier.source_event_id < WebhookEvent.source_event_id).exists()
    query = (select(WebhookEvent.id)
             .join(WebhookEndpoint, WebhookEndpoint.id == WebhookEvent.endpoint_id)
             .where(_due(now), WebhookEndpoint.enabled.is_(True),
                    WebhookEndpoint.paused_at.is_(None), ~blocked)
             .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id).limit(limit))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=WebhookEvent)
    ids = list(db.session.scalars(query))
    if ids:
        db.session.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(ids), _due(now))
            .values(status="sending", lease_owner=owner, lease_expires_at=now + _lease())
            .execution_options(synchronize_session=False))
    db.session.commit()
    return list(db.session.scalars(select(WebhookEvent.id).where(
        WebhookEvent.id.in_(ids), WebhookEvent.lease_owner == owner,
        WebhookEvent.status == "sending").order_by(WebhookEvent.id))) if ids else []


_contexts: dict[str | None, ssl.SSLContext] = {}
MAX_ANSWER = 64 * 1024  # more than this is not read: the connection is dropped instead


def _ssl_context() -> ssl.SSLContext:
    """Certificates verified; POSTINO_WEBHOOK_CA_FILE adds CAs to the system's. Built once
    per process and CA file (loading the system's CAs costs milliseconds)."""
    cafile = current_app.config.get("POSTINO_WEBHOOK_CA_FILE")
    context = _contexts.get(cafile)
    if context is None:
        context = ssl.create_default_context()
        if cafile:
            context.load_verify_locations(cafile=cafile)
        _contexts[cafile] = context
    return context


class Connections:
    """Open connections to endpoints, kept for the rest of a pass (HTTP keep-alive)."""

    def __init__(self):
        self.open: dict[tuple, http.client.HTTPConnection] = {}

    def get(self, scheme: str, host: str, port: int, timeout: float):
        """(connection, reused) for this address."""
        key = (scheme, host, port)
        connection = self.open.get(key)
        if connection is not None:
            connection.timeout = timeout
            return connection, True
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                     context=_ssl_context())
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self.open[key] = connection
        return connection, False

    def drop(self, scheme: str, host: str, port: int) -> None:
        connection = self.open.pop((scheme, host, port), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self.open.values():
            connection.close()
        self.open.clear()


def post(url: str, body: bytes, headers: dict, timeout: float,
         connections: Connections | None = None) -> tuple[int | None, str | None]:
    """POST `body`; returns (HTTP status or None, error or None). Redirects are not followed.
    With `connections`, the connection stays open for the next event to that address."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http"
                                  and current_app.config.get("POSTINO_WEBHOOK_ALLOW_HTTP")):
        return None, "the address must start with https://"
    own = connections is None
    connections = connections or Connections()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        address = (scheme, parts.hostname, parts.port or (443 if scheme == "https" else 80))
    except ValueError as exc:
        return None, str(exc)[:500]
    try:
        for _try in range(2):
            connection, reused = connections.get(*address, timeout)
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                connections.drop(*address)
                if reused:
                    continue  # the endpoint had closed the kept connection: once more, fresh
                raise
            answer = response.read(MAX_ANSWER + 1)
            if len(answer) > MAX_ANSWER or response.will_close:
                connections.drop(*address)
            break
    except TimeoutError:
        connections.drop(*address)
        return None, f"no answer within {timeout:g} s"
    except ssl.SSLError as exc:
        connections.drop(*address)
        return None, f"TLS: {exc.reason or exc}"[:500]
    except (OSError, http.client.HTTPException, ValueError) as exc:
        connections.drop(*address)
        return None, (str(exc) or type(exc).__name__)[:500]
    finally:
        if own:
            connections.close()
    if 200 <= response.status < 300:
        return response.status, None
    text = answer[:500].decode("utf-8", "replace").strip()
    return response.status, f"HTTP {response.status} {response.reason}: {text}"[:500]


def secrets_of(endpoint: WebhookEndpoint, now=None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one for a day after a
    rotation."""
    now = now or utcnow()
    values = [credentials.decrypt(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_until \
            and endpoint.previous_secret_until > now:
        values.append(credentials.decrypt(endpoint.previous_secret_encrypted))
    return values


def deliver(event_id: int, owner: str, connections: Connections | None = None) -> str:
    """Send one claimed event and record the answer; returns delivered, retry, failed
    (a test event's only attempt) or lost (another worker holds it now)."""
    event = db.session.get(WebhookEvent, event_id)
    if event is None or event.lease_owner != owner or event.status != "sending":
        db.session.rollback()
        return "lost"
    endpoint = event.endpoint
    url, public_id, kind = endpoint.url, event.public_id, event.type
    body = event.payload.encode("utf-8")
    with log_format.context(customer=endpoint.customer.code, message_id=_message_of(event)):
        try:
            secrets_ = secrets_of(endpoint)
        except credentials.CredentialsError:
            secrets_ = None
        db.session.commit()  # no transaction stays open while the endpoint answers
        started = time.monotonic()
        if secrets_ is None:
            code, error = None, ("the signing secret cannot be decrypted with "
                                 "POSTINO_CREDENTIALS_KEY: rotate the secret")
        else:
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       signing.HEADER: signing.header(secrets_, body),
                       "Postino-Event-Id": public_id, "Postino-Event": kind}
            code, error = post(url, body, headers,
                               float(current_app.config.get("POSTINO_WEBHOOK_TIMEOUT") or 10),
                               connections)
        seconds = time.monotonic() - started
        result = "delivered" if error is None else ("error" if code else "unreachable")
        measures.webhook_attempt(result, seconds)
        if error is not None:
            log.warning("webhook %s (%s) to %s failed: %s", public_id, kind, url, error)
        return _record(event_id, owner, code, error, seconds)


def _message_of(event: WebhookEvent) -> str | None:
    """The public message id in an event's body (for log lines)."""
    try:
        return json.loads(event.payload).get("message_id")
    except ValueError:
        return None


def _record(event_id: int, owner: str, code: int | None, error: str | None,
            seconds: float) -> str:
    """Write one attempt's outcome, only while this worker still holds the event."""
    now = utcnow()
    event = db.session.get(WebhookEvent, event_id)
    db.session.refresh(event)
    if event.lease_owner != owner or event.status != "sending":
        log.warning("webhook %s: taken over by another worker before its answer was recorded",
                    event.public_id)
        db.session.rollback()
        return "lost"
    endpoint = event.endpoint
    event.attempts += 1
    event.last_status_code, event.last_error = code, error
    event.last_attempt_at, event.last_duration_ms = now, int(seconds * 1000)
    event.lease_owner = event.lease_expires_at = None
    if error is None:
        event.status, event.delivered_at, event.next_attempt_at = "delivered", now, None
        if event.type != "test":
            db.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id)
                               .values(failures=0, last_success_at=now))
        db.session.commit()
        return "delivered"
    if event.type == "test":
        event.status, event.next_attempt_at = "failed", None
        db.session.commit()
        return "failed"
    event.status, event.next_attempt_at = "pending", now + retry_delay(event.attempts)
    db.session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id)
                       .values(failures=WebhookEndpoint.failures + 1, last_failure_at=now))
    db.session.flush()
    db.session.refresh(endpoint)
    if endpoint.failures >= PAUSE_AFTER and endpoint.paused_at is None:
        pause(endpoint, error)
    db.session.commit()
    return "retry"


def alert_cause(endpoint: WebhookEndpoint) -> str:
    """The alert of a paused endpoint (one per customer)."""
    return f"webhook:{endpoint.customer_id}"


def pause(endpoint: WebhookEndpoint, error: str) -> None:
    """Stop sending to an endpoint that keeps failing. Its events stay in the outbox and new
    ones keep being added; the health check alerts the administrators (paused_alerts)."""
    endpoint.paused_at = utcnow()
    endpoint.paused_reason = error[:2000]
    log.warning("webhook of %s paused after %s failed deliveries in a row: %s",
                endpoint.customer.code, endpoint.failures, error)


def paused_alerts() -> list[tuple[str, Customer, str, str]]:
    """(cause, customer, alert text, reason) of every paused webhook, for the health check
    that raises their alerts (and clears the others')."""
    result = []
    for endpoint in db.session.scalars(select(WebhookEndpoint).where(
            WebhookEndpoint.paused_at.is_not(None)).order_by(WebhookEndpoint.id)):
        customer, error = endpoint.customer, (endpoint.paused_reason or "")[:300]
        result.append((alert_cause(endpoint), customer,
                       reasons.encode("webhook_paused_alert", name=customer.name,
                                      failures=endpoint.failures, error=error),
                       reasons.encode("webhook_paused", failures=endpoint.failures,
                                      error=error)))
    return result


def worker_name() -> str:
    """host:pid:random, the owner of this pass's claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run(max_seconds: float = 60.0, produce: bool = True) -> dict:
    """One pass: fill the outbox, then deliver due events until none is left or the time is
    up. Returns counts for the job run."""
    counts = {"produced": outbox.produce() if produce else 0,
              "delivered": 0, "retry": 0, "failed": 0, "lost": 0}
    owner = worker_name()
    deadline = time.monotonic() + max_seconds
    connections = Connections()
    try:
        while time.monotonic() < deadline:
            ids = claim(owner, _batch_size())
            if not ids:
                break
            for event_id in ids:
                if time.monotonic() >= deadline:
                    # left claimed: released for the next pass right away
                    db.session.execute(update(WebhookEvent).where(
                        WebhookEvent.id == event_id, WebhookEvent.lease_owner == owner)
                        .values(status="pending", lease_owner=None, lease_expires_at=None))
                    db.session.commit()
                    continue
                counts[deliver(event_id, owner, connections)] += 1
    finally:
        connections.close()
    return counts


def purge_delivered(older_than_days: int = 30) -> int:
    """Drop delivered events (and failed tests) older than the retention: the outbox stays
    small; events still waiting are kept."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    deleted = db.session.execute(delete(WebhookEvent).where(
        WebhookEvent.status.in_(("delivered", "failed")),
        WebhookEvent.created_at < cutoff)).rowcount
    db.session.commit()
    return deleted
