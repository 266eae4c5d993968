"""Open tracking: what an open records (the pixel itself is delivery.pixel's).

Opens are approximate: clients that block images never report, and privacy proxies (Apple
Mail Privacy Protection, Gmail's image proxy) fetch the pixel without a person reading.
"""
from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import select, update

from ... import reasons
from ...extensions import db
from ...models import Message, utcnow
from ..core.timeline import add_event
from ..delivery.pixel import public_id_for

# The smallest transparent GIF (43 bytes).
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def record_open(token: str, at: datetime | None = None) -> bool:
    """Record an open for a valid token: the first sets opened_at and a timeline event,
    later ones only count. Returns False (storing nothing) for bad tokens or purged mail."""
    public_id = public_id_for(token)
    if public_id is None:
        return False
    message_id = db.session.scalar(select(Message.id).where(Message.public_id == public_id))
    if message_id is None:
        return False
    at = at or utcnow()
    first = db.session.execute(
        update(Message).where(Message.id == message_id, Message.opened_at.is_(None))
        .values(opened_at=at, open_count=Message.open_count + 1)
        .execution_options(synchronize_session=False)).rowcount
    if first:
        db.session.execute(
            update(Message).where(Message.id == message_id,
                                  Message.status.in_(("sent", "delivered")))
            .values(status="opened").execution_options(synchronize_session=False))
        message = db.session.get(Message, message_id)
        add_event(message, "opened", at=at, detail=reasons.encode("first_open"))
    else:
        db.session.execute(
            update(Message).where(Message.id == message_id)
            .values(open_count=Message.open_count + 1)
            .execution_options(synchronize_session=False))
    db.session.commit()
    return True
