"""A customer's webhook endpoint: set its address, rotate its signing secret (shown once,
stored encrypted with POSTINO_CREDENTIALS_KEY), resume it after a pause, send a test event,
remove it. Every change is audited, never with the secret."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, delete, func, select, update

from ...extensions import db
from ...models import Alert, Customer, User, WebhookEndpoint, WebhookEvent, utcnow
from .. import ServiceError
from ..core import audit
from ..delivery import credentials
from . import delivery, outbox, signing

PREVIOUS_SECRET_DAYS = 1
RECENT = 20


def for_customer(customer: Customer) -> WebhookEndpoint | None:
    """The customer's endpoint, if it has one."""
    return db.session.scalar(select(WebhookEndpoint).where(
        WebhookEndpoint.customer_id == customer.id))


def check_url(value: str | None) -> str:
    """An absolute https:// address with a host (http:// only where POSTINO_WEBHOOK_ALLOW_HTTP
    allows it, for local development)."""
    url = (value or "").strip()
    if not url:
        raise ServiceError(_l("Enter the address of the endpoint."), "url")
    if len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        raise ServiceError(_l("The address is too long or contains spaces."), "url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ServiceError(_l("This is not a valid address."), "url") from None
    allowed = ("https", "http") if current_app.config.get("POSTINO_WEBHOOK_ALLOW_HTTP") \
        else ("https",)
    if parts.scheme.lower() not in allowed:
        raise ServiceError(_l("The address must start with https://"), "url")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise ServiceError(_l("The address needs a host name, without a user name, password "
                              "or #fragment."), "url")
    return url


def configure(customer: Customer, url: str | None, actor: User | None) -> tuple[
        WebhookEndpoint, str | None]:
    """Set the endpoint's address; a new endpoint gets a secret, returned this once (None
    when only the address changed). Events recorded from now on are sent."""
    url = check_url(url)
    endpoint = for_customer(customer)
    secret = None
    if endpoint is None:
        secret = signing.new_secret()
        endpoint = WebhookEndpoint(customer_id=customer.id, url=url,
                                   secret_encrypted=credentials.encrypt(secret),
                                   cursor=outbox.start_cursor(), failures=0, enabled=True)
        db.session.add(endpoint)
        audit.record("webhook.create", actor, "customer", customer.code,
                     after={"url": url}, customer_id=customer.id)
    elif endpoint.url != url:
        audit.record("webhook.update", actor, "customer", customer.code,
                     before={"url": endpoint.url}, after={"url": url}, customer_id=customer.id)
        endpoint.url = url
    db.session.commit()
    return endpoint, secret


def rotate_secret(endpoint: WebhookEndpoint, actor: User | None) -> str:
    """A new signing secret, returned this once; the previous one still signs for a day, so
    the platform can switch without refusing events."""
    secret = signing.new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_until = utcnow() + timedelta(days=PREVIOUS_SECRET_DAYS)
    endpoint.secret_encrypted = credentials.encrypt(secret)
    audit.record("webhook.rotate_secret", actor, "customer", endpoint.customer.code,
                 customer_id=endpoint.customer_id)
    db.session.commit()
    return secret


def resume(endpoint: WebhookEndpoint, actor: User | None) -> int:
    """Send again to a paused endpoint: waiting events are due now; returns how many."""
    endpoint.paused_at = None
    endpoint.paused_reason = None
    endpoint.failures = 0
    waiting = db.session.execute(
        update(WebhookEvent).where(WebhookEvent.endpoint_id == endpoint.id,
                                   WebhookEvent.status == "pending")
        .values(next_attempt_at=utcnow())).rowcount
    audit.record("webhook.resume", actor, "customer", endpoint.customer.code,
                 customer_id=endpoint.customer_id)
    db.session.commit()
    _clear_alert(delivery.alert_cause(endpoint))
    return waiting


def remove(endpoint: WebhookEndpoint, actor: User | None) -> None:
    """Delete the endpoint and its outbox (events not yet sent are dropped with it)."""
    customer = endpoint.customer
    db.session.execute(delete(WebhookEvent).where(WebhookEvent.endpoint_id == endpoint.id))
    audit.record("webhook.delete", actor, "customer", customer.code,
                 before={"url": endpoint.url}, customer_id=customer.id)
    cause = delivery.alert_cause(endpoint)
    db.session.delete(endpoint)
    db.session.commit()
    _clear_alert(cause)


def _clear_alert(cause: str) -> None:
    """Close the endpoint's open alert now (the health check would within a minute): an
    update on the model, as webhooks never reach into operations."""
    db.session.execute(update(Alert).where(Alert.cause == cause, Alert.cleared_at.is_(None))
                       .values(cleared_at=utcnow()))
    db.session.commit()


def send_test(endpoint: WebhookEndpoint) -> WebhookEvent:
    """POST a `test` event now (also to a paused endpoint) and return it with its answer.
    A test is tried once: it neither retries nor counts towards a pause."""
    import uuid

    from ..core.process import worker_name

    now = utcnow()
    event_id = outbox.new_event_id()
    owner = f"{worker_name()}:test:{uuid.uuid4().hex[:8]}"
    event = WebhookEvent(public_id=event_id, endpoint_id=endpoint.id, type="test",
                         status="sending", lease_owner=owner,
                         lease_expires_at=now + timedelta(minutes=5), next_attempt_at=now,
                         created_at=now,
                         payload=outbox.body(event_id, "test", now, None, test=True))
    db.session.add(event)
    db.session.commit()
    row_id = event.id
    delivery.deliver(row_id, owner)
    db.session.expire_all()
    return db.session.get(WebhookEvent, row_id)


def recent(endpoint: WebhookEndpoint, limit: int = RECENT) -> list[WebhookEvent]:
    """The latest events, newest first (the customer page's "last deliveries")."""
    return db.session.scalars(select(WebhookEvent).where(
        WebhookEvent.endpoint_id == endpoint.id)
        .order_by(WebhookEvent.id.desc()).limit(limit)).all()


def counts(endpoint: WebhookEndpoint) -> dict:
    """Events waiting, and how many of them already failed at least once (read through the
    status index: delivered events, the many, are not counted)."""
    waiting, retrying = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((WebhookEvent.attempts > 0, 1),
                                                         else_=0)), 0))
        .where(WebhookEvent.status.in_(("pending", "sending")),
               WebhookEvent.endpoint_id == endpoint.id)).one()
    return {"waiting": waiting, "retrying": retrying}


def rotate_encryption() -> tuple[int, list[str]]:
    """Re-encrypt every stored signing secret with the first credentials key (flask
    rotate-credentials); returns how many, and the customers whose secret cannot be read."""
    count, broken = 0, []
    for endpoint in db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)):
        try:
            endpoint.secret_encrypted = credentials.rotate(endpoint.secret_encrypted)
            count += 1
            if endpoint.previous_secret_encrypted:
                endpoint.previous_secret_encrypted = credentials.rotate(
                    endpoint.previous_secret_encrypted)
                count += 1
        except credentials.CredentialsError:
            broken.append(endpoint.customer.code)
    return count, broken


def page_context(customer: Customer, **extra) -> dict:
    """What the customer page's webhook section shows (never a secret unless one was just
    made and is passed in `extra`)."""
    endpoint = for_customer(customer)
    context = {
        "webhook": endpoint,
        "webhook_events": recent(endpoint) if endpoint else [],
        "webhook_counts": counts(endpoint) if endpoint else {},
        "webhook_secret": None,
        "webhook_message": None,
        "webhook_errors": {},
        "webhook_url": endpoint.url if endpoint else "",
        "webhook_test": None,
        "webhook_header": signing.HEADER,
        "webhook_tolerance": signing.TOLERANCE_SECONDS // 60,
    }
    context.update(extra)
    return context
