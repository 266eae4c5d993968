"""The data model of the whole product: tables hold data and small invariants, not workflows."""
from __future__ import annotations

import secrets
from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow() -> datetime:
    """Aware UTC now; every timestamp in the database is UTC."""
    return datetime.now(UTC)


class UTCDateTime(db.TypeDecorator):
    """A timezone-aware datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value is not None and dialect.name == "sqlite":
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


ROLES = ("admin", "support", "billing")
EVENTS = (
    "user_invitation",
    "password_reset",
    "order_closed",
    "activity_closed",
    "document_sent",
    "processing_blocked",
)
SENDING_MODES = ("standard", "custom_from", "customer_smtp")
STATUSES = (
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    "suppressed",
    "held",
    "delivered",
    "bounced",
    "opened",
)
# Statuses a message can still leave from: never purged, swept by the worker.
PENDING_STATUSES = ("queued", "deferred", "sending", "held")


def normalise_reference(value: str | None) -> str | None:
    """The searchable form of a reference: no whitespace at all, upper case."""
    if value is None:
        return None
    return "".join(str(value).split()).upper() or None


def new_public_id() -> str:
    """An unguessable, URL-safe public message id."""
    return secrets.token_hex(12)


class Customer(db.Model):
    """A tenant of the platform, with its sending mode and switches."""

    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    default_language: Mapped[str] = mapped_column(String(5), default="it")
    sending_mode: Mapped[str] = mapped_column(String(20), default="standard")
    from_address: Mapped[str | None] = mapped_column(String(320))
    from_name: Mapped[str | None] = mapped_column(String(200))
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str | None] = mapped_column(String(10))
    smtp_auth: Mapped[str | None] = mapped_column(String(10))
    smtp_username: Mapped[str | None] = mapped_column(String(320))
    smtp_password_encrypted: Mapped[str | None] = mapped_column(Text)
    smtp_verify_tls: Mapped[bool] = mapped_column(Boolean, default=True)
    smtp_ca_pem: Mapped[str | None] = mapped_column(Text)
    smtp_timeout: Mapped[int] = mapped_column(Integer, default=30)
    sending_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # account/transport refusals of its own SMTP in a row (auth, quota, send-as, TLS…):
    # the circuit breaker that pauses a customer_smtp customer; a success resets it
    auth_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_tracking: Mapped[bool] = mapped_column(Boolean, default=True)
    # customer_smtp only: connections at once to its server (None: the default, 2), and
    # its provider's limits {"second"|"minute"|"hour"|"day": n} (see delivery.rate_limits)
    smtp_lanes: Mapped[int | None] = mapped_column(Integer)
    rate_limits: Mapped[dict | None] = mapped_column(JSON)
    rate_preset: Mapped[str | None] = mapped_column(String(30))
    retention_days: Mapped[int | None] = mapped_column(Integer)
    dns_check: Mapped[dict | None] = mapped_column(JSON)
    dns_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="customer")

    @property
    def can_send(self) -> bool:
        """True when this customer's own switches let mail out."""
        return self.sending_enabled and not self.paused

    def __repr__(self) -> str:
        return f"<Customer {self.code}>"


class ApiKey(db.Model):
    """A customer's API key, stored only as a SHA-256 hash (keys are long random tokens)."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(12))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship(back_populates="api_keys")


DKIM_STATES = ("active", "prepared", "previous", "retired")


class DkimKey(db.Model):
    """A DKIM key pair published under a selector of one domain: RSA 2048, optionally with an
    Ed25519 key under a selector of its own (signed alongside). A customer's keys sign its
    mail From its own domain; keys without a customer sign our own senders' mail.

    state: `active` signs (once its record is verified, or when forced); `prepared` waits to
    be switched to (rotation); `previous` was replaced and stays until retired; `retired`
    keys have their private halves wiped and are kept as history.
    """

    __tablename__ = "dkim_key"
    __table_args__ = (UniqueConstraint("domain", "selector", name="uq_dkim_key_selector"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    domain: Mapped[str] = mapped_column(String(253))
    selector: Mapped[str] = mapped_column(String(63))
    rsa_public: Mapped[str] = mapped_column(Text)  # base64 DER, the record's p=
    rsa_private_encrypted: Mapped[str | None] = mapped_column(Text)
    ed25519_selector: Mapped[str | None] = mapped_column(String(63))
    ed25519_public: Mapped[str | None] = mapped_column(Text)
    ed25519_private_encrypted: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(10), default="prepared")
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ed25519_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dns_check: Mapped[dict | None] = mapped_column(JSON)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer | None] = relationship()

    @validates("state")
    def _check_state(self, _key, value):
        if value not in DKIM_STATES:
            raise ValueError(f"unknown DKIM key state {value!r}")
        return value


class User(UserMixin, db.Model):
    """A staff member who logs into the dashboard with one role."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(10))
    language: Mapped[str | None] = mapped_column(String(5))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def set_password(self, password: str) -> None:
        """Store a scrypt hash of the password."""
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        """Compare a password with the stored hash."""
        return check_password_hash(self.password_hash, password)

    def has_role(self, *roles: str) -> bool:
        """Admins may do everything; other roles only what they are named for."""
        return self.role == "admin" or self.role in roles


class LoginAttempt(db.Model):
    """One login attempt, kept for throttling."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_email_at", "email", "at"),
                      Index("ix_login_attempt_ip_at", "ip", "at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean, default=False)
    # refused by the throttle before the password was checked: not counted as a failure
    throttled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Setting(db.Model):
    """A global setting edited in the dashboard; the environment supplies the default."""

    __tablename__ = "setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))


class Template(db.Model):
    """A customer's override of one event in one language; defaults ship with the code."""

    __tablename__ = "template"
    __table_args__ = (UniqueConstraint("customer_id", "event", "language"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(5))
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_version.id", use_alter=True)
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer | None] = relationship()
    current_version: Mapped[TemplateVersion | None] = relationship(
        foreign_keys=[current_version_id], post_update=True
    )
    versions: Mapped[list[TemplateVersion]] = relationship(
        foreign_keys="TemplateVersion.template_id",
        back_populates="template",
        order_by="TemplateVersion.number.desc()",
    )


class TemplateVersion(db.Model):
    """One saved version of a template override; every save makes a new one."""

    __tablename__ = "template_version"
    __table_args__ = (UniqueConstraint("template_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("template.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    template: Mapped[Template] = relationship(
        foreign_keys=[template_id], back_populates="versions"
    )
    created_by: Mapped[User | None] = relationship()


class Message(db.Model):
    """One email to one recipient: its rendered content, its status and its delivery state."""

    __tablename__ = "message"
    __table_args__ = (
        Index("ix_message_due", "status", "next_attempt_at"),
        Index("ix_message_created", "created_at", "id"),
        Index("ix_message_customer_status_created", "customer_id", "status", "created_at"),
        # Log search (issue 6): prefix ranges served newest first; pattern ops on PostgreSQL
        # (text_pattern_ops serves = too: exact recipient and reference lookups use these)
        # so a byte-wise range (~>=~ / ~<~) uses the index whatever the database collation.
        Index("ix_message_reference_norm_created", "reference_norm", "created_at", "id",
              postgresql_ops={"reference_norm": "text_pattern_ops"}),
        Index("ix_message_recipient_created", "recipient", "created_at", "id",
              postgresql_ops={"recipient": "text_pattern_ops"}),
        Index("ix_message_customer_created", "customer_id", "created_at", "id"),
        Index("ix_message_status_created", "status", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    event: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(200))
    reference_norm: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(5), default="it")
    recipient: Mapped[str] = mapped_column(String(320))
    from_header: Mapped[str | None] = mapped_column(String(500))
    envelope_from: Mapped[str | None] = mapped_column(String(500))
    message_id_header: Mapped[str | None] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str | None] = mapped_column(Text)
    text_body: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict | None] = mapped_column(JSON)
    transport: Mapped[str | None] = mapped_column(String(20))
    template_version_id: Mapped[int | None] = mapped_column(ForeignKey("template_version.id"))
    template_source: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    status_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_smtp_code: Mapped[int | None] = mapped_column(Integer)
    last_smtp_text: Mapped[str | None] = mapped_column(Text)
    # who was at fault for the last refusal or report (bounces.fault); empty once sent
    fault_class: Mapped[str | None] = mapped_column(String(24))
    fault_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    resend_of_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"), index=True)
    resent_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    suppression_id: Mapped[int | None] = mapped_column(ForeignKey("suppression.id"))
    # a test email (customer page, template editor): shown as such, not as the event it borrows
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    customer: Mapped[Customer] = relationship()
    events: Mapped[list[MessageEvent]] = relationship(
        back_populates="message", order_by="MessageEvent.id", passive_deletes=True
    )
    attachments: Mapped[list[MessageAttachment]] = relationship(
        back_populates="message", passive_deletes=True
    )
    resend_of: Mapped[Message | None] = relationship(remote_side=[id])
    resent_by: Mapped[User | None] = relationship()
    template_version: Mapped[TemplateVersion | None] = relationship()
    suppression: Mapped[Suppression | None] = relationship(foreign_keys=[suppression_id])

    @validates("reference")
    def _normalise_reference(self, _key, value):
        """Keep the searchable copy of the reference in step with it."""
        self.reference_norm = normalise_reference(value)
        return value

    def __repr__(self) -> str:
        return f"<Message {self.public_id} {self.status}>"


class MessageAttachment(db.Model):
    """A file carried by a message (document_sent)."""

    __tablename__ = "message_attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)

    message: Mapped[Message] = relationship(back_populates="attachments")


class MessageEvent(db.Model):
    """One step of a message's timeline: what happened, when, and the server's answer."""

    __tablename__ = "message_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    type: Mapped[str] = mapped_column(String(20))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    smtp_text: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    data: Mapped[dict | None] = mapped_column(JSON)

    message: Mapped[Message] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()


class IdempotencyKey(db.Model):
    """The first answer given for an Idempotency-Key, replayed for 24 hours."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("customer_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    key: Mapped[str] = mapped_column(String(200))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    # SHA-256 of the request's canonical JSON: the key replays only the very same request
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Suppression(db.Model):
    """An address we must not send to: relay-wide, or for one customer's own SMTP."""

    __tablename__ = "suppression"
    __table_args__ = (Index("ix_suppression_address_active", "address", "lifted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    scope: Mapped[str] = mapped_column(String(10), default="relay")  # relay | customer
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    reason: Mapped[str] = mapped_column(String(20))  # hard_bounce soft_bounce complaint manual
    smtp_code: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    # the verdict that created the entry (bounces.fault): why the address is here
    fault_class: Mapped[str | None] = mapped_column(String(24))
    fault_reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="SET NULL", use_alter=True), index=True
    )  # indexed: purging messages sets it NULL
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    repeated: Mapped[bool] = mapped_column(Boolean, default=False)

    customer: Mapped[Customer | None] = relationship()
    created_by: Mapped[User | None] = relationship()
    removals: Mapped[list[SuppressionRemoval]] = relationship(back_populates="suppression")


class BounceReport(db.Model):
    """A bounce, delivery report or complaint received for a message, with its raw evidence."""

    __tablename__ = "bounce_report"
    __table_args__ = (Index("ix_bounce_report_recipient_at", "recipient", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="SET NULL"), index=True
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    recipient: Mapped[str] = mapped_column(String(320))
    # hard soft failed delayed delivered auto_reply complaint unknown (bounces.parsing.KINDS)
    kind: Mapped[str] = mapped_column(String(12))
    fault_class: Mapped[str | None] = mapped_column(String(24))
    fault_reason: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(12))  # dsn arf fbl ses heuristic smtp…
    status_code: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    suppression_id: Mapped[int | None] = mapped_column(ForeignKey("suppression.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TransportBreaker(db.Model):
    """Account/transport refusals of our relay in a row (a customer's own SMTP counts on
    Customer.auth_failures): repeated ones alert staff; a success resets the count."""

    __tablename__ = "transport_breaker"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # modes.transport_key
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_text: Mapped[str | None] = mapped_column(Text)
    last_reason: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    tripped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateState(db.Model):
    """One transport's sends counted for its rate limits (the sequence number of its last
    send), and the slow-down a quota refusal put on it. Its row is the lock every worker
    takes to reserve a send (see delivery.rate_limits)."""

    __tablename__ = "rate_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # modes.transport_key
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    slowdown: Mapped[int] = mapped_column(Integer, default=0)  # halvings of the limits
    slowdown_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # last quota refusal
    slowdown_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    slowdown_reply: Mapped[str | None] = mapped_column(Text)


class RateSlot(db.Model):
    """One reserved send of a rate-limited transport: its sequence number and time. The
    N-th last slot tells whether a window allows one more (kept as long as a window needs)."""

    __tablename__ = "rate_slot"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class SuppressionRemoval(db.Model):
    """A lift of a suppression: who asked, why, time spent, and whether it is billable."""

    __tablename__ = "suppression_removal"
    __table_args__ = (Index("ix_suppression_removal_address_at", "address", "removed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    suppression_id: Mapped[int] = mapped_column(ForeignKey("suppression.id"), index=True)
    address: Mapped[str] = mapped_column(String(320))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(100))
    minutes_spent: Mapped[int] = mapped_column(Integer, default=0)
    billable: Mapped[bool] = mapped_column(Boolean, default=False)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    invoiced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invoiced_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    suppression: Mapped[Suppression] = relationship(back_populates="removals")
    customer: Mapped[Customer | None] = relationship()
    removed_by: Mapped[User | None] = relationship(foreign_keys=[removed_by_id])


class ConfigurationEstimate(db.Model):
    """An estimate given to a customer for a requested change of its sending configuration."""

    __tablename__ = "configuration_estimate"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    estimated_on: Mapped[date] = mapped_column(Date)
    minutes: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int | None] = mapped_column(Integer)  # euro cents
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship()
    created_by: Mapped[User | None] = relationship()


class ConfigurationIntervention(db.Model):
    """A change to a customer's sending configuration: the fields changed (names, never
    values), who, when, for whom, the minutes spent (None: to be completed) and whether it is
    billable."""

    __tablename__ = "configuration_intervention"
    __table_args__ = (Index("ix_configuration_intervention_changed_at", "changed_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    mode_before: Mapped[str] = mapped_column(String(20))
    mode_after: Mapped[str] = mapped_column(String(20))
    fields: Mapped[list] = mapped_column(JSON)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor_label: Mapped[str] = mapped_column(String(320), default="system")
    ticket: Mapped[str | None] = mapped_column(String(200))
    minutes: Mapped[int | None] = mapped_column(Integer)
    billable: Mapped[bool] = mapped_column(Boolean, default=False)
    waived_reason: Mapped[str | None] = mapped_column(Text)
    estimate_id: Mapped[int | None] = mapped_column(
        ForeignKey("configuration_estimate.id"), unique=True)
    invoiced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invoiced_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    customer: Mapped[Customer] = relationship()
    actor: Mapped[User | None] = relationship(foreign_keys=[actor_id])
    estimate: Mapped[ConfigurationEstimate | None] = relationship()

    @property
    def minutes_pending(self) -> bool:
        """A billable change whose minutes someone still has to fill in."""
        return self.billable and self.minutes is None


class CustomerSmtpPeriod(db.Model):
    """A stretch of time a customer spent on the paid customer_smtp option (invoiced monthly).

    Opened and closed by the recorded mode changes; `start_evidence` says where the start
    comes from: "change" (a recorded intervention), "audit" (an older audited mode change,
    seeded by the migration) or "created" (no record: the customer's creation date).
    """

    __tablename__ = "customer_smtp_period"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    start_evidence: Mapped[str] = mapped_column(String(10), default="change")
    start_intervention_id: Mapped[int | None] = mapped_column(
        ForeignKey("configuration_intervention.id"))
    end_intervention_id: Mapped[int | None] = mapped_column(
        ForeignKey("configuration_intervention.id"))

    customer: Mapped[Customer] = relationship()


class AuditEntry(db.Model):
    """Who changed what, when, before and after. Kept forever."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor_label: Mapped[str] = mapped_column(String(320), default="system")
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)

    actor: Mapped[User | None] = relationship()


class JobRun(db.Model):
    """One run of a scheduled or requested job, with counts, progress and any error."""

    __tablename__ = "job_run"
    __table_args__ = (Index("ix_job_run_job_started", "job", "started_at"),
                      Index("ix_job_run_status", "status"))  # finds the few running ones

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(40))
    # running ok error skipped abandoned (its worker stopped beating while it ran)
    status: Mapped[str] = mapped_column(String(10), default="running")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(100))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    counts: Mapped[dict | None] = mapped_column(JSON)
    params: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))


class Alert(db.Model):
    """A health problem shown as a banner until its cause is gone."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_cause_cleared", "cause", "cleared_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cause: Mapped[str] = mapped_column(String(80))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    text: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer | None] = relationship()


class MessageRollup(db.Model):
    """Messages per closed UTC day, customer and status: the Home chart's history, kept small.

    Rows are rebuilt from `message` by services.operations.overview; customer_id -1 sums every
    customer (the chart), customer_id 0 with status '*' marks a day as computed (so an empty
    day is not recomputed on every visit).
    """

    __tablename__ = "message_rollup"
    __table_args__ = (
        UniqueConstraint("day", "customer_id", "status", name="uq_message_rollup_day"),
        Index("ix_message_rollup_status_day", "status", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD, UTC
    customer_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))
    count: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


WEBHOOK_EVENT_STATUSES = ("pending", "sending", "delivered", "failed")


class WebhookEndpoint(db.Model):
    """A customer's webhook: the HTTPS address Postino POSTs its delivery events to, the
    signing secret (encrypted like SMTP passwords), and its delivery state. `cursor` is the
    last timeline row (message_event.id) read into the outbox for it."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), unique=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # after a rotation the previous secret signs too, for a day, so receivers can switch
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paused_reason: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts in a row
    cursor: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer] = relationship()


class WebhookEvent(db.Model):
    """One event for a webhook (the outbox): its JSON body, fixed when recorded so every
    attempt sends the same bytes, and its delivery state, claimed with a lease like a message.

    `message_id` is no foreign key: the retention purge deletes messages without looking
    here, and the events keep their own body. Events of one message go out in the order of
    their timeline rows (`source_event_id`)."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "source_event_id", name="uq_webhook_event_source"),
        Index("ix_webhook_event_due", "status", "next_attempt_at"),
        Index("ix_webhook_event_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_event_message", "endpoint_id", "message_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(Integer)
    source_event_id: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    endpoint: Mapped[WebhookEndpoint] = relationship()
