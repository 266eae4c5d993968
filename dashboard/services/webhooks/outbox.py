"""The webhook outbox: events are read from what Postino already records (each message's
timeline, message_event) into webhook_event rows, one per endpoint, so sending mail never
waits for, nor changes because of, a webhook.

Each endpoint keeps a cursor over message_event ids. Ids are handed out when a row is
inserted, not when it is committed, so a row may become visible after a higher id: the
cursor therefore stays behind every row younger than SETTLE, and those rows are read again
on the next pass (the unique (endpoint, source event) pair makes that harmless).
"""
from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ... import reasons
from ...extensions import db
from ...models import Message, MessageEvent, WebhookEndpoint, WebhookEvent, utcnow

# timeline step -> webhook event
TYPES = {
    "sent": "sent",
    "delivered": "delivered",
    "bounce": "bounced",
    "suppressed": "suppressed",
    "failed": "failed",
    "expired": "failed",
    "opened": "opened",
    "complaint": "complaint",
}
EVENTS = ("sent", "delivered", "bounced", "suppressed", "failed", "opened", "complaint")
SETTLE = timedelta(seconds=60)
BATCH = 1000
# per endpoint: (the highest timeline id, when it was read), in this process
_WATERMARKS: dict[int, tuple[int, datetime]] = {}


def new_event_id() -> str:
    """A unique, unguessable event id: the receiver's key to deduplicate."""
    return "evt_" + secrets.token_hex(12)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def body(event_id: str, event: str, at: datetime, message: dict | None, *,
         smtp_code: int | None = None, fault_class: str | None = None,
         fault_reason: str | None = None, reason: str | None = None,
         test: bool = False) -> str:
    """The JSON body of one event (compact; these bytes are signed and sent on every attempt)."""
    message = message or {}
    return json.dumps({
        "id": event_id,
        "event": event,
        "at": _iso(at),
        "message_id": message.get("public_id"),
        "reference": message.get("reference"),
        "recipient": message.get("recipient"),
        "notification": message.get("event"),
        "smtp_code": smtp_code,
        "fault_class": fault_class,
        "fault_reason": fault_reason,
        "reason": reason,
        "test": test,
    }, ensure_ascii=False, separators=(",", ":"))


def _message_fields(row) -> dict:
    return {"public_id": row.public_id, "reference": row.reference,
            "recipient": row.recipient, "event": row.event}


def _rows(endpoint: WebhookEndpoint, after: int):
    """The next timeline rows of the endpoint's customer that make an event, oldest first."""
    return db.session.execute(
        select(MessageEvent.id, MessageEvent.at, MessageEvent.type, MessageEvent.smtp_code,
               MessageEvent.smtp_text, MessageEvent.detail, MessageEvent.data,
               Message.id.label("message_id"), Message.public_id, Message.reference,
               Message.recipient, Message.event)
        .join(Message, Message.id == MessageEvent.message_id)
        .where(Message.customer_id == endpoint.customer_id, MessageEvent.id > after,
               MessageEvent.type.in_(tuple(TYPES)))
        .order_by(MessageEvent.id).limit(BATCH)).all()


def _event_row(endpoint: WebhookEndpoint, row, at: datetime, now: datetime) -> dict | None:
    """One timeline row as an outbox row; None when it makes no event."""
    data = row.data or {}
    if row.type in ("bounce", "complaint", "delivered") and data.get("trusted") is False:
        return None  # a report about another address: kept as evidence, not an event
    event_id = new_event_id()
    event = TYPES[row.type]
    explained = event in ("bounced", "failed", "suppressed", "complaint")
    return {
        "public_id": event_id, "endpoint_id": endpoint.id, "message_id": row.message_id,
        "source_event_id": row.id, "type": event, "status": "pending", "attempts": 0,
        "next_attempt_at": now, "created_at": now,
        "payload": body(event_id, event, at, _message_fields(row), smtp_code=row.smtp_code,
                        fault_class=data.get("fault_class"),
                        fault_reason=data.get("fault_reason"),
                        reason=(reasons.english(row.detail) or row.smtp_text or None)
                        if explained else None),
    }


def _insert_new(rows: list[dict]) -> int:
    """Insert outbox rows, skipping any another worker inserted first; returns how many."""
    if not rows:
        return 0
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(WebhookEvent).values(rows).on_conflict_do_nothing(
        index_elements=["endpoint_id", "source_event_id"]).returning(WebhookEvent.id)
    return len(db.session.execute(statement).all())


def produce_for(endpoint: WebhookEndpoint, now: datetime | None = None,
                max_batches: int = 20) -> int:
    """Read the endpoint's customer's new timeline rows into its outbox; returns how many
    events were added. Commits after each batch. Two workers doing this at once add each
    event once (the unique pair) and at worst move the cursor back a little (read again)."""
    now = now or utcnow()
    settled_before = now - SETTLE
    after, settled, added, first_unsettled, reached_end = endpoint.cursor, True, 0, None, False
    for _batch in range(max_batches):
        rows = _rows(endpoint, after)
        if not rows:
            reached_end = True
            break
        known = set(db.session.scalars(select(WebhookEvent.source_event_id).where(
            WebhookEvent.endpoint_id == endpoint.id,
            WebhookEvent.source_event_id.in_([row.id for row in rows]))))
        new = []
        for row in rows:
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
            if settled and at <= settled_before:
                endpoint.cursor = row.id
            elif settled:
                settled, first_unsettled = False, row.id  # the cursor waits here: younger
                # rows are read again
            if row.id not in known:
                event = _event_row(endpoint, row, at, now)
                if event is not None:
                    new.append(event)
        added += _insert_new(new)
        after = rows[-1].id
        db.session.commit()
        if len(rows) < BATCH:
            reached_end = True
            break
    if reached_end:
        _skip_others(endpoint, now, first_unsettled)
    db.session.commit()
    return added


def _skip_others(endpoint: WebhookEndpoint, now: datetime, first_unsettled: int | None) -> None:
    """Move the cursor over other customers' rows too, or a quiet customer's cursor would
    stay behind and every pass would read everyone's rows since. A watermark (the highest
    id at some moment) older than SETTLE bounds rows that are surely committed; the cursor
    goes up to it, never past one of this customer's rows still settling."""
    mark = _WATERMARKS.get(endpoint.id)
    if mark is not None and mark[1] <= now - SETTLE:
        limit = mark[0] if first_unsettled is None else min(mark[0], first_unsettled - 1)
        endpoint.cursor = max(endpoint.cursor, limit)
    if mark is None or mark[1] <= now - SETTLE:
        _WATERMARKS[endpoint.id] = (start_cursor(), now)


def produce(now: datetime | None = None) -> int:
    """Fill the outbox of every enabled endpoint (paused ones too: nothing is lost while an
    endpoint is paused, it is only not sent)."""
    added = 0
    for endpoint_id in db.session.scalars(select(WebhookEndpoint.id).where(
            WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.id)).all():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        added += produce_for(endpoint, now)
    return added


def start_cursor() -> int:
    """Where a new endpoint starts: after every timeline row already recorded."""
    from sqlalchemy import func

    return db.session.scalar(select(func.max(MessageEvent.id))) or 0
