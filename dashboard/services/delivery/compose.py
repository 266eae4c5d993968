"""Building the MIME message for a stored message, with every header from checked values."""
from __future__ import annotations

import base64
import binascii
import email.policy
import re
import secrets
from email.header import Header
from email.message import EmailMessage
from email.utils import encode_rfc2231, format_datetime, formataddr
from functools import lru_cache

from ...addresses import (
    check_header_value,
    envelope,
    header_address,
    needs_smtputf8,
    parse_sender,
)
from ...models import Message, utcnow
from . import dkim_keys, pixel


def build(message: Message, attachments=None, open_tracking: bool = False,
          utf8: bool = False) -> EmailMessage:
    """The EmailMessage for `message`: From, To, Subject, Message-ID, text + HTML, files.

    `open_tracking` (send time only) adds the customer's open-tracking pixel to the HTML.
    Addresses are written with their domain in A-labels (an encoded word is not allowed in
    an address); `utf8` (a message going out with SMTPUTF8, written with the SMTPUTF8
    policy) keeps them in Unicode, as RFC 6532 allows.
    """
    email = EmailMessage()
    name, address = parse_sender(message.from_header or "", "from")
    recipient = message.recipient
    if not utf8:
        address, recipient = envelope(address), envelope(recipient)
    email["From"] = header_address(name, address)
    email["To"] = header_address(None, recipient)
    email["Subject"] = check_header_value(message.subject or "", "subject")
    email["Date"] = format_datetime(message.created_at or utcnow())
    email["Message-ID"] = check_header_value(message.message_id_header, "message_id")
    email["Auto-Submitted"] = "auto-generated"
    if message.reference:
        email["X-Postino-Reference"] = check_header_value(message.reference, "reference")
    email["X-Postino-Event"] = message.event
    email.set_content(message.text_body or "", charset="utf-8", cte="quoted-printable")
    if message.html_body:
        html = message.html_body
        if open_tracking:
            if pixel.wants_pixel(message):
                html = pixel.add_pixel(html, message)
        email.add_alternative(html, subtype="html", charset="utf-8",
                              cte="quoted-printable")
    for attachment in attachments if attachments is not None else message.attachments:
        content_type = attachment.content_type or "application/octet-stream"
        maintype, _, subtype = content_type.partition("/")
        email.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=check_header_value(attachment.filename, "attachments.filename"),
        )
    return email


# -- the sending path ---------------------------------------------------------------------
# `build` goes through the email package's header objects, which costs more than the SMTP
# round trips themselves. The sweep sends the same structure (text + HTML, files) written
# directly as bytes from values checked the same way; an address with a non-ASCII local
# part (UTF-8 headers, RFC 6532) falls back to `build`.
_PLAIN_HEADER = re.compile(r"[\x20-\x7e]*")


def _header(name: str, value: str) -> bytes:
    """`Name: value` with CRLF; RFC 2047 encoded words when not short printable ASCII."""
    check_header_value(value, name.lower())
    if len(value) <= 900 and _PLAIN_HEADER.fullmatch(value):
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8", maxlinelen=76, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, display: str | None, address: str) -> bytes:
    check_header_value(display or "", name.lower())
    return f"{name}: {formataddr((display or '', address), charset='utf-8')}\r\n".encode("ascii")


def _qp(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"  # as the email package does
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True,
                           header=False).replace(b"\n", b"\r\n")


def _part_head(subtype: str) -> bytes:
    return (f"Content-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()


def _text_part(subtype: str, text: str) -> bytes:
    return _part_head(subtype) + _qp(text)


# All recipients of one notification share its bodies: encode each body once. Quoted-
# printable works line by line, so halves cut at a line break encode to the same bytes
# as the whole.
@lru_cache(maxsize=64)
def _qp_cached(text: str) -> bytes:
    return _qp(text)


@lru_cache(maxsize=64)
def _html_halves(html: str) -> tuple[bytes, bytes] | None:
    halves = pixel.split_at_body_end(html)
    if halves is None:
        return None
    return _qp(halves[0]), _qp(halves[1])


def _html_part(message: Message, open_tracking: bool) -> bytes:
    """The HTML part; with the open-tracking pixel (on a line of its own) when wanted."""
    html = message.html_body
    if open_tracking:
        if pixel.wants_pixel(message):
            halves = _html_halves(html)
            if halves is None:
                return _text_part("html", pixel.add_pixel(html, message))
            return _part_head("html") + halves[0] + _qp(pixel.pixel_tag(message)) \
                + halves[1]
    return _part_head("html") + _qp_cached(html)


def _filename_param(filename: str) -> str:
    if _PLAIN_HEADER.fullmatch(filename):
        return 'filename="' + filename.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "filename*=" + encode_rfc2231(filename, "utf-8")


def _attachment_part(attachment) -> bytes:
    content_type = attachment.content_type or "application/octet-stream"
    filename = check_header_value(attachment.filename, "attachments.filename")
    return (f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-Disposition: attachment; {_filename_param(filename)}\r\n\r\n").encode() \
        + base64.encodebytes(attachment.content).replace(b"\n", b"\r\n")


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    # "=_" cannot occur in quoted-printable or base64 bodies, so the boundary is safe
    boundary = f"=_postino_{secrets.token_hex(12)}"
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        out.append(f"--{boundary}\r\n".encode())
        out.append(part + b"\r\n")  # this CRLF belongs to the next delimiter
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


@lru_cache(maxsize=256)
def _sender(from_header: str) -> tuple[str, str]:
    """The checked (name, address) of a From header; a batch shares a handful of them."""
    return parse_sender(from_header, "from")


def smtputf8_address(message: Message) -> str | None:
    """The first of the message's addresses (recipient, envelope sender, From) whose local
    part is not ASCII: the message then needs SMTPUTF8 (RFC 6531). None for the others."""
    from_header = message.from_header or ""
    candidates = [message.recipient, message.envelope_from or ""]
    if not from_header.isascii():
        candidates.append(_sender(from_header)[1])
    return next((a for a in candidates if needs_smtputf8(a)), None)


def build_bytes(message: Message, attachments=None, open_tracking: bool = False) -> bytes:
    """The message as SMTP-ready bytes (CRLF): what `build` makes, written directly, then
    DKIM-signed when a verified key covers its From domain (delivery.dkim_keys).
    International domains are written in A-labels; a message with a non-ASCII local part
    gets UTF-8 headers (RFC 6532) and goes out only with SMTPUTF8 (`smtputf8_address`)."""
    name, sender = _sender(message.from_header or "")
    from_address = sender  # its stored form: what the DKIM keys are looked up by
    recipient = message.recipient
    if not (sender.isascii() and recipient.isascii()):
        sender, recipient = envelope(sender), envelope(recipient)
        if not (sender.isascii() and recipient.isascii()):
            data = build(message, attachments, open_tracking, utf8=True).as_bytes(
                policy=email.policy.SMTPUTF8)
            return dkim_keys.sign(message.customer_id, from_address, data)
    files = attachments if attachments is not None else message.attachments
    head = [
        _address_header("From", name, sender),
        _address_header("To", None, recipient),
        _header("Subject", message.subject or ""),
        f"Date: {format_datetime(message.created_at or utcnow())}\r\n".encode(),
        _header("Message-ID", message.message_id_header),
        b"Auto-Submitted: auto-generated\r\n",
    ]
    if message.reference:
        head.append(_header("X-Postino-Reference", message.reference))
    head.append(_header("X-Postino-Event", message.event))
    head.append(b"MIME-Version: 1.0\r\n")
    body = _part_head("plain") + _qp_cached(message.text_body or "")
    if message.html_body:
        body = _multipart("alternative", [body, _html_part(message, open_tracking)])
    if files:
        body = _multipart("mixed", [body, *(_attachment_part(f) for f in files)])
    return dkim_keys.sign(message.customer_id, from_address, b"".join(head) + body)
