"""Batch loading: a claimed batch with what every message of it needs, read in a few
queries (the transports it is sent over are the sweep's lanes, see lanes.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from ...extensions import db
from ...models import Customer, Message, MessageAttachment, Suppression, utcnow
from ..bounces import suppressions
from ..core import settings
from .leases import LeaseHeartbeat
from .sending import hold_reason

DEFAULT_SCHEDULE = [1, 5, 15, 60, 180, 360]


@dataclass
class Batch:
    """A claimed batch with what every message of it needs, read in a few queries."""

    messages: list[Message]
    sending_enabled: bool
    max_age: timedelta
    schedule: list
    suppressed: dict[str, list[Suppression]] = field(default_factory=dict)
    connection: object = None  # where outcomes are written (see outcome_writer.save)
    reattach: list[Message] = field(default_factory=list)  # the caller's copies of them
    heartbeat: LeaseHeartbeat | None = None  # renews the lease of the message in flight
    lease_end: float = math.inf  # when the batch's claims end (monotonic)
    breakers: dict = field(default_factory=dict)  # known breaker counts (outcomes)

    @classmethod
    def load(cls, ids: list[int], owner: str) -> Batch:
        """The claimed rows (with customer and attachments) and the settings in force.

        The messages are read by a session of their own and come out detached: their
        outcome is written by two statements on a connection of its own (see OutcomeWriter),
        not by the ORM's unit of work, which costs more than the SMTP exchange itself.
        Customers stay in the sweep's session (a pause or an auth-failure count is saved
        through it).
        """
        with Session(db.engine, expire_on_commit=False) as reader:
            rows = reader.scalars(
                select(Message).where(Message.id.in_(ids), Message.lease_owner == owner,
                                      Message.status == "sending")
                .order_by(Message.next_attempt_at, Message.id)).all()
            files: dict[int, list] = {}
            for attachment in reader.scalars(select(MessageAttachment).where(
                    MessageAttachment.message_id.in_([m.id for m in rows]))
                    .order_by(MessageAttachment.id)):
                files.setdefault(attachment.message_id, []).append(attachment)
        # closing the reader detached them, loaded (a rollback would have expired them)
        customer_ids = sorted({m.customer_id for m in rows})
        customers = {c.id: c for c in db.session.scalars(
            select(Customer).where(Customer.id.in_(customer_ids)))} if rows else {}
        for message in rows:
            set_committed_value(message, "customer", customers[message.customer_id])
            set_committed_value(message, "attachments", files.get(message.id, []))
        batch = cls(rows, settings.sending_enabled(),
                    timedelta(hours=float(settings.get("max_age_hours"))),
                    list(settings.get("retry_schedule") or DEFAULT_SCHEDULE))
        # Copies the caller holds in its session are reloaded after the sweep.
        batch.reattach = [held for held in (
            db.session.identity_map.get(identity_key(Message, m.id)) for m in rows)
            if held is not None]
        recipients = sorted({m.recipient for m in rows})
        if recipients:
            now = utcnow()
            entries = db.session.scalars(select(Suppression).where(
                Suppression.address.in_(recipients), Suppression.lifted_at.is_(None),
                or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
            ).order_by(Suppression.id.desc())).all()
            for entry in entries:
                batch.suppressed.setdefault(entry.address, []).append(entry)
        return batch

    def suppression_for(self, message: Message, customer: Customer) -> Suppression | None:
        """The newest active entry stopping this message (same rule as suppressions.active_for)."""
        scope, customer_id = suppressions.scope_for(customer)
        now = utcnow()
        for entry in self.suppressed.get(message.recipient, ()):
            if entry.scope != scope or (customer_id is not None
                                        and entry.customer_id != customer_id):
                continue
            if entry.expires_at is not None and entry.expires_at <= now:
                continue
            return entry
        return None

    def hold_reason(self, customer: Customer) -> str | None:
        """Why this customer's mail cannot go now, with the switch read for this batch."""
        return hold_reason(customer, self.sending_enabled)
