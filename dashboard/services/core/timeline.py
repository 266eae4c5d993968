"""A message's timeline: one row per step, written by whichever feature took the step."""
from __future__ import annotations

from datetime import datetime

from ...extensions import db
from ...models import Message, MessageEvent, User, utcnow


def add_event(message: Message, type_: str, *, code: int | None = None, text: str | None = None,
              detail: str | None = None, actor: User | None = None, data: dict | None = None,
              at: datetime | None = None) -> MessageEvent:
    """Append one step to a message's timeline."""
    event = MessageEvent(message=message, type=type_, smtp_code=code, smtp_text=text,
                         detail=detail, actor_id=actor.id if actor else None, data=data,
                         at=at or utcnow())
    db.session.add(event)
    return event
