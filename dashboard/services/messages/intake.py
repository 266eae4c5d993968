"""Ingest and lifecycle of messages: one per recipient, every transition on the timeline."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from sqlalchemy import select

from ... import reasons
from ...addresses import check_header_value, normalise
from ...extensions import db
from ...models import EVENTS, Customer, Message, MessageAttachment, User, new_public_id, utcnow
from ...notifications import LANGUAGES
from .. import ServiceError
from ..bounces import suppressions
from ..content import render
from ..core.timeline import add_event
from ..delivery import modes, verp
from ..delivery.sending import hold_reason

MAX_RECIPIENTS = 50
MAX_ATTACHMENT_BYTES = 7 * 1024 * 1024  # decoded, all attachments together
MAX_REFERENCE = 200


class TooLarge(ServiceError):
    """Input over a size limit (413 at the API)."""


@dataclass
class Attachment:
    """A decoded attachment, checked and ready to store."""

    filename: str
    content_type: str
    content: bytes


def parse_recipients(value) -> list[str]:
    """`to` as a string or a list of 1..50 strings, normalised and de-duplicated."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ServiceError("'to' must be an address or a non-empty list of addresses", "to")
    if len(value) > MAX_RECIPIENTS:
        raise ServiceError(f"at most {MAX_RECIPIENTS} recipients per notification", "to")
    seen: list[str] = []
    for index, item in enumerate(value):
        address = normalise(item, f"to[{index}]" if len(value) > 1 else "to")
        if address not in seen:
            seen.append(address)
    return seen


def parse_attachments(value, event: str) -> list[Attachment]:
    """Base64 attachments (document_sent only), checked names and a total size limit."""
    if value is None:
        return []
    if event != "document_sent":
        raise ServiceError("only document_sent may carry attachments", "attachments")
    if not isinstance(value, list):
        raise ServiceError("'attachments' must be a list", "attachments")
    if len(value) > 10:
        raise ServiceError("at most 10 attachments", "attachments")
    result, total = [], 0
    for index, item in enumerate(value):
        field = f"attachments[{index}]"
        if not isinstance(item, dict):
            raise ServiceError("each attachment must be an object", field)
        filename = item.get("filename")
        if not isinstance(filename, str) or not filename.strip() or len(filename) > 255:
            raise ServiceError("a filename of 1-255 characters is required", f"{field}.filename")
        check_header_value(filename, f"{field}.filename")
        if "/" in filename or "\\" in filename:
            raise ServiceError("the filename must not contain a path", f"{field}.filename")
        content_type = item.get("content_type") or "application/octet-stream"
        if (not isinstance(content_type, str) or content_type.count("/") != 1
                or len(content_type) > 100 or any(c in content_type for c in "\r\n;\" ")):
            raise ServiceError("content_type must look like type/subtype",
                               f"{field}.content_type")
        content = item.get("content")
        if not isinstance(content, str):
            raise ServiceError("content must be a base64 string", f"{field}.content")
        try:
            raw = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError("content is not valid base64", f"{field}.content") from None
        total += len(raw)
        if total > MAX_ATTACHMENT_BYTES:
            raise TooLarge(f"attachments exceed {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB",
                           f"{field}.content")
        result.append(Attachment(filename.strip(), content_type.lower(), raw))
    return result


def parse_reference(value) -> str | None:
    """An optional reference (order number…), one line, at most 200 characters."""
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ServiceError("'reference' must be a string", "reference")
    value = check_header_value(str(value), "reference").strip()
    if len(value) > MAX_REFERENCE:
        raise ServiceError(f"'reference' is longer than {MAX_REFERENCE} characters", "reference")
    return value or None


def enqueue(customer: Customer, event: str, to, reference=None, language=None, data=None,
            attachments=None, *, resend_of: Message | None = None, actor: User | None = None,
            commit: bool = True, test: bool = False) -> list[Message]:
    """Validate, render once, and store one message per recipient (queued/held/suppressed)."""
    if event not in EVENTS:
        raise ServiceError(f"unknown event; one of: {', '.join(EVENTS)}", "event")
    recipients = parse_recipients(to)
    reference = parse_reference(reference)
    if language is not None and language not in LANGUAGES:
        raise ServiceError(f"language must be one of {', '.join(LANGUAGES)}", "language")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ServiceError("'data' must be an object", "data")
    if reference is None and event == "order_closed" and data.get("order_number") is not None:
        # The customer quotes the number the email shows: without a reference of its own, the
        # order number is the reference, so support finds the message by it.
        try:
            reference = parse_reference(data["order_number"])
        except ServiceError:
            reference = None
    files = parse_attachments(attachments, event)
    language = render.pick_language(customer, language)
    rendered = render.render_notification(customer, event, language, data)
    return store(customer, event, recipients, reference, language, data, rendered, files,
                 resend_of=resend_of, actor=actor, commit=commit, test=test)


def store(customer: Customer, event: str, recipients: list[str], reference: str | None,
          language: str, data: dict, rendered: render.Rendered, files: list[Attachment],
          *, resend_of: Message | None = None, actor: User | None = None,
          commit: bool = True, test: bool = False) -> list[Message]:
    """Store rendered messages, deciding for each: suppressed, held, or queued (`test`: a
    staff member's test email, shown as such)."""
    now = utcnow()
    held = hold_reason(customer)
    from_header = modes.from_header(customer, event)
    domain = _id_domain()
    messages = []
    for address in recipients:
        public_id = new_public_id()  # known before the INSERT: one flush for all recipients
        message = Message(
            public_id=public_id, customer=customer, event=event, reference=reference,
            language=language, recipient=address, from_header=from_header,
            subject=rendered.subject, html_body=rendered.html, text_body=rendered.text,
            data=data, transport=customer.sending_mode,
            template_version_id=rendered.template_version_id, template_source=rendered.source,
            created_at=now, attempts=0, message_id_header=f"<{public_id}@{domain}>",
            resend_of=resend_of, resent_by_id=actor.id if (actor and resend_of) else None,
            test=test,
        )
        message.envelope_from = modes.envelope_from(customer, message)
        db.session.add(message)
        for item in files:
            db.session.add(MessageAttachment(message=message, filename=item.filename,
                                             content_type=item.content_type,
                                             size=len(item.content), content=item.content))
        if resend_of is not None:
            add_event(message, "resent", detail=reasons.encode("resend_of", id=resend_of.public_id),
                      actor=actor, at=now)
        with db.session.no_autoflush:
            entry = suppressions.active_for(address, customer, now)
        if entry is not None:
            message.status = "suppressed"
            message.suppression_id = entry.id
            message.status_reason = reasons.encode("suppressed",
                                                   reason=reasons.suppression(entry.reason))
            add_event(message, "suppressed", detail=message.status_reason, at=now)
        elif held:
            message.status = "held"
            message.status_reason = held
            add_event(message, "held", detail=held, at=now)
        else:
            message.status = "queued"
            message.next_attempt_at = now
            add_event(message, "queued", at=now)
        messages.append(message)
    db.session.flush()
    if commit:
        db.session.commit()
    return messages


def _id_domain() -> str:
    return verp.bounce_domain()


def get_for_customer(customer: Customer, public_id: str) -> Message | None:
    """A customer's own message by public id (another customer's is None)."""
    return db.session.scalar(
        select(Message).where(Message.public_id == public_id,
                              Message.customer_id == customer.id)
    )
