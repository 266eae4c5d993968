"""The customer-facing HTTP API (JSON, Bearer API key). Bad input stores nothing."""
from __future__ import annotations

import hashlib
import json
import math
from datetime import timedelta

from flask import Blueprint, g, jsonify, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import reasons
from ..auth import api_view
from ..errors import api_error
from ..extensions import csrf, db
from ..models import IdempotencyKey, utcnow
from ..openapi import documented
from ..services import ServiceError, customers, messages
from ..services.messages import TooLarge
from ..services.render import RenderError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
MAX_BODY = 10 * 1024 * 1024
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@bp.before_request
def _authenticate():
    """Every API call needs `Authorization: Bearer <customer API key>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    customer = customers.customer_for_key(raw.strip()) if scheme.lower() == "bearer" else None
    if customer is None:
        return api_error(401, "missing or unknown API key")
    g.customer = customer
    return None


def _message_json(message, with_events: bool = False) -> dict:
    body = {"id": message.public_id, "to": message.recipient, "status": message.status}
    if with_events:
        body.update({
            "event": message.event,
            "reference": message.reference,
            "attempts": message.attempts,
            "created_at": message.created_at.isoformat(),
            "events": [
                {"at": e.at.isoformat(), "type": e.type, "smtp_code": e.smtp_code,
                 "smtp_text": e.smtp_text, "detail": reasons.english(e.detail) or None,
                 # who was at fault (services.fault codes), on refusals and reports
                 "fault_class": (e.data or {}).get("fault_class"),
                 "fault_reason": (e.data or {}).get("fault_reason")}
                for e in message.events
            ],
        })
    return body


def _reject_constant(name: str):
    """NaN and Infinity are not JSON, and PostgreSQL refuses to store them."""
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refusing overflow to infinity (1e999)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _parse_json(raw: bytes):
    """Strict JSON: UTF-8, finite numbers only, nesting bounded by the parser."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                          parse_float=_finite_float)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _unstorable(text: str) -> bool:
    """True for text no database column takes: NUL characters or lone surrogates."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable_text(payload) -> str | None:
    """The field holding the first string a database cannot store (NUL, lone surrogate)."""
    stack = [(payload, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _unstorable(value):
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                if _unstorable(key):
                    return path or "body"
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


def _request_hash(payload: dict) -> str:
    """SHA-256 of the request's canonical JSON: the same request however it is spaced or
    ordered, and another hash for any other content."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _replay(previous: IdempotencyKey, request_hash: str):
    """The first answer given for this key, if this is the same request; 422 otherwise."""
    # Keys stored before hashes were kept (request_hash NULL) cannot be compared: replayed.
    if previous.request_hash is not None and previous.request_hash != request_hash:
        return api_error(422, "this Idempotency-Key was already used for another request "
                         "in the last 24 hours: send a new key for a new notification",
                         "Idempotency-Key", code="idempotency_key_reused")
    return jsonify(previous.response), previous.status_code


_UNAUTHORIZED = (401, ("Missing or unknown API key.", "Error"))
_UNAVAILABLE = (503, ("The database is not answering: nothing was stored, retry later "
                      "(Retry-After).", "Error"))


@bp.route("/notifications", methods=["POST"])
@api_view
@documented(
    "Send a notification",
    dict([(202, ("Accepted: one message per recipient, with its status (queued, held or "
                 "suppressed). A repeated Idempotency-Key replays this answer.",
                 "NotificationCreated")),
          (400, ("Malformed JSON.", "Error")), _UNAUTHORIZED,
          (413, ("The body, or the attachments, are too large.", "Error")),
          (415, ("Not JSON (send Content-Type: application/json).", "Error")),
          (422, ("An invalid field (`field` names it): unknown event, bad address, CR/LF, too "
                 "many recipients, a missing template variable (`data.<name>`), an "
                 "Idempotency-Key reused for another request…", "Error")), _UNAVAILABLE]),
    description="Renders the event's template for each recipient and queues the emails. "
                "With an `Idempotency-Key`, the same request within 24 hours is answered "
                "with the first answer and stores nothing more.",
    request_schema="NotificationRequest",
    parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                 "description": "1-200 characters; the same request with the same key is "
                                "stored once.",
                 "schema": {"type": "string", "minLength": 1, "maxLength": 200}}])
def create_notification():
    """Ingest an event: one message per recipient, answered 202 with their statuses."""
    customer = g.customer
    if request.content_length is not None and request.content_length > MAX_BODY:
        return api_error(413, "the body is larger than 10 MB")
    if not request.is_json:
        return api_error(415, "send JSON with Content-Type: application/json")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        return api_error(413, "the body is larger than 10 MB")
    try:
        payload = _parse_json(raw)
    except ValueError:
        return api_error(400, "malformed JSON")
    if not isinstance(payload, dict):
        return api_error(422, "the body must be a JSON object", code="invalid")
    bad = _unstorable_text(payload)
    if bad is not None:
        return api_error(422, "text must not contain NUL characters or lone surrogates", bad)

    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = key.strip()
        if not key or len(key) > 200 or any(c in key for c in "\r\n\x00"):
            return api_error(422, "Idempotency-Key must be 1-200 characters", "Idempotency-Key")
        request_hash = _request_hash(payload)
        previous = db.session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key,
            IdempotencyKey.created_at >= utcnow() - IDEMPOTENCY_WINDOW))
        if previous is not None:
            return _replay(previous, request_hash)

    unknown = set(payload) - {"event", "to", "reference", "language", "data", "attachments"}
    if unknown:
        return api_error(422, f"unknown field {sorted(unknown)[0]}", sorted(unknown)[0])
    if "event" not in payload:
        return api_error(422, "'event' is required", "event")
    if "to" not in payload:
        return api_error(422, "'to' is required", "to")
    try:
        created = messages.enqueue(
            customer, payload.get("event"), payload.get("to"), payload.get("reference"),
            payload.get("language"), payload.get("data"), payload.get("attachments"),
            commit=False,
        )
    except TooLarge as exc:
        db.session.rollback()
        return api_error(413, exc.message, exc.field)
    except RenderError as exc:
        db.session.rollback()
        code = exc.code or ("missing_variable" if (exc.field or "").startswith("data.")
                            else "template_error")
        return api_error(422, exc.message, exc.field or "data", code=code)
    except ServiceError as exc:
        db.session.rollback()
        return api_error(422, exc.message, exc.field)
    body = {"messages": [_message_json(m) for m in created]}
    if key is not None:
        # An answer older than the window is forgotten: the key may start a new request.
        db.session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key))
        db.session.add(IdempotencyKey(customer_id=customer.id, key=key, status_code=202,
                                      response=body, request_hash=request_hash))
    try:
        db.session.commit()
    except IntegrityError:  # the same key raced in from a parallel request
        db.session.rollback()
        previous = db.session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key))
        if previous is None:
            raise
        return _replay(previous, request_hash)
    return jsonify(body), 202


@bp.route("/notifications/<public_id>", methods=["GET"])
@api_view
@documented(
    "Read a notification's status and timeline",
    dict([(200, ("The message, its status and every step of its timeline.", "Notification")),
          _UNAUTHORIZED, (404, ("No such message among this customer's.", "Error")),
          _UNAVAILABLE]))
def get_notification(public_id: str):
    """Status and timeline of one of the caller's own messages."""
    message = messages.get_for_customer(g.customer, public_id[:64])
    if message is None:
        return api_error(404, "no such notification")
    return jsonify(_message_json(message, with_events=True))
