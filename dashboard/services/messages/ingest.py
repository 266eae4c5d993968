"""The API's POST /notifications as a service: strict JSON, text a database can store, the
Idempotency-Key window (a replay answers what the first request was answered, a parallel
request with the same key included), then intake. The blueprint reads the request (size,
Content-Type, the body's bytes, the key header) and turns an IngestError into its error body.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from ... import reasons
from ...extensions import db
from ...models import Customer, IdempotencyKey, Message, utcnow
from .. import ServiceError
from ..content.render import RenderError
from . import intake

IDEMPOTENCY_WINDOW = timedelta(hours=24)
FIELDS = {"event", "to", "reference", "language", "data", "attachments"}


class IngestError(ServiceError):
    """A request the API refuses: `status` is the HTTP status of the answer, `code` the
    error code of its body (None: the status's default code)."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 code: str | None = None):
        super().__init__(message, field)
        self.status = status
        self.code = code


@dataclass
class Answer:
    """What the API answers: the status and the JSON body."""

    status: int
    body: dict


def message_json(message: Message, with_events: bool = False) -> dict:
    """A message as the API shows it (with its timeline for GET)."""
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
                 # who was at fault (bounces.fault codes), on refusals and reports
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


def parse_json(raw: bytes):
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


def unstorable_text(payload) -> str | None:
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


def request_hash(payload: dict) -> str:
    """SHA-256 of the request's canonical JSON: the same request however it is spaced or
    ordered, and another hash for any other content."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _replay(previous: IdempotencyKey, hashed: str) -> Answer:
    """The first answer given for this key, if this is the same request; 422 otherwise."""
    # Keys stored before hashes were kept (request_hash NULL) cannot be compared: replayed.
    if previous.request_hash is not None and previous.request_hash != hashed:
        raise IngestError(422, "this Idempotency-Key was already used for another request "
                          "in the last 24 hours: send a new key for a new notification",
                          "Idempotency-Key", code="idempotency_key_reused")
    return Answer(previous.status_code, previous.response)


def notification(customer: Customer, raw: bytes, key: str | None) -> Answer:
    """Ingest one event sent as the JSON body `raw` (with the Idempotency-Key header, if
    any): one message per recipient, answered 202 with their statuses; IngestError when
    refused (nothing stored)."""
    try:
        payload = parse_json(raw)
    except ValueError:
        raise IngestError(400, "malformed JSON") from None
    if not isinstance(payload, dict):
        raise IngestError(422, "the body must be a JSON object", code="invalid")
    bad = unstorable_text(payload)
    if bad is not None:
        raise IngestError(422, "text must not contain NUL characters or lone surrogates", bad)

    hashed = None
    if key is not None:
        key = key.strip()
        if not key or len(key) > 200 or any(c in key for c in "\r\n\x00"):
            raise IngestError(422, "Idempotency-Key must be 1-200 characters",
                              "Idempotency-Key")
        hashed = request_hash(payload)
        previous = db.session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key,
            IdempotencyKey.created_at >= utcnow() - IDEMPOTENCY_WINDOW))
        if previous is not None:
            return _replay(previous, hashed)

    unknown = set(payload) - FIELDS
    if unknown:
        raise IngestError(422, f"unknown field {sorted(unknown)[0]}", sorted(unknown)[0])
    if "event" not in payload:
        raise IngestError(422, "'event' is required", "event")
    if "to" not in payload:
        raise IngestError(422, "'to' is required", "to")
    try:
        created = intake.enqueue(
            customer, payload.get("event"), payload.get("to"), payload.get("reference"),
            payload.get("language"), payload.get("data"), payload.get("attachments"),
            commit=False,
        )
    except intake.TooLarge as exc:
        db.session.rollback()
        raise IngestError(413, exc.message, exc.field) from None
    except RenderError as exc:
        db.session.rollback()
        code = exc.code or ("missing_variable" if (exc.field or "").startswith("data.")
                            else "template_error")
        raise IngestError(422, exc.message, exc.field or "data", code=code) from None
    except ServiceError as exc:
        db.session.rollback()
        raise IngestError(422, exc.message, exc.field) from None
    body = {"messages": [message_json(m) for m in created]}
    if key is not None:
        # An answer older than the window is forgotten: the key may start a new request.
        db.session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key))
        db.session.add(IdempotencyKey(customer_id=customer.id, key=key, status_code=202,
                                      response=body, request_hash=hashed))
    try:
        db.session.commit()
    except IntegrityError:  # the same key raced in from a parallel request
        db.session.rollback()
        previous = db.session.scalar(select(IdempotencyKey).where(
            IdempotencyKey.customer_id == customer.id, IdempotencyKey.key == key))
        if previous is None:
            raise
        return _replay(previous, hashed)
    return Answer(202, body)
