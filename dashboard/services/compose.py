"""Building the MIME message for a stored message, with every header from checked values."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime

from ..addresses import check_header_value, header_address, parse_sender
from ..models import Message, utcnow


def build(message: Message, attachments=None, open_tracking: bool = False) -> EmailMessage:
    """The EmailMessage for `message`: From, To, Subject, Message-ID, text + HTML, files.

    `open_tracking` (send time only) adds the customer's open-tracking pixel to the HTML.
    """
    email = EmailMessage()
    name, address = parse_sender(message.from_header or "", "from")
    email["From"] = header_address(name, address)
    email["To"] = header_address(None, message.recipient)
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
            from . import tracking

            if tracking.wants_pixel(message):
                html = tracking.add_pixel(html, message)
        email.add_alternative(html, subtype="html", charset="utf-8",
                              cte="quoted-printable")
    for attachment in attachments if attachments is not None else message.attachments:
        maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
        email.add_attachment(
            attachment.content,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=check_header_value(attachment.filename, "attachments.filename"),
        )
    return email
