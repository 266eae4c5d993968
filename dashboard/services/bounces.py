"""Bounces: parse delivery reports and complaints, record them against their message.

Standard reports (RFC 3464 `message/delivery-status`, RFC 5965 `message/feedback-report`)
are read with the standard library; anything else goes through flufl.bounce, always
wrapped (it raises on some junk), and is classified here, because flufl calls every
failure permanent. Classification follows the RFC 3463 status class: 5.x.x hard,
4.x.x soft, 2.x.x delivered.
"""
from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message as EmailMessage
from email.parser import HeaderParser

from sqlalchemy import select

from ..addresses import canonical
from ..extensions import db
from ..models import BounceReport, Message, utcnow
from . import suppressions

log = logging.getLogger(__name__)
# flufl.bounce logs a traceback for every detector that trips on junk; we log our own line.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

RAW_LIMIT = 64 * 1024  # characters of the raw report kept as evidence
KINDS = ("hard", "soft", "delayed", "delivered", "complaint", "unknown")
# kind -> the type of the event appended to the message's timeline
EVENT_TYPES = {"hard": "bounce", "soft": "bounce", "delayed": "delayed",
               "delivered": "delivered", "complaint": "complaint", "unknown": "report"}

_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE_RE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)")
_ADDRESS_RE = re.compile(r"[^\s<>\"';:,()\[\]]+@[^\s<>\"';:,()\[\]]+")


@dataclass
class Report:
    """One recipient's outcome read from a report."""

    kind: str
    recipient: str | None = None
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    source: str = "dsn"  # dsn | arf | heuristic
    extra: dict = field(default_factory=dict)

    @property
    def smtp_code(self) -> int | None:
        """The basic SMTP reply code in the diagnostic (550…), when there is one."""
        match = _SMTP_CODE_RE.search(self.diagnostic or "")
        return int(match.group(1)) if match else None


def _clean(value) -> str:
    """A header value on one line, without NULs (PostgreSQL refuses them in text)."""
    return " ".join(str(value or "").replace("\x00", "").split())


def _address(value) -> str | None:
    """The address in 'rfc822; user@example.com' (or any text holding one), in its stored
    form (an A-label domain, as DSNs write it, is the same address as its Unicode form)."""
    if not value:
        return None
    text = _clean(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    match = _ADDRESS_RE.search(text)
    return canonical(match.group(0).strip(".")) if match else None


def _status(value) -> str | None:
    match = _STATUS_RE.search(_clean(value))
    return ".".join(match.groups()) if match else None


def _diagnostic(value) -> str | None:
    text = _clean(value)
    if ";" in text and text.split(";", 1)[0].strip().lower() in ("smtp", "x-postfix",
                                                                  "x-unix", "x-local"):
        text = text.split(";", 1)[1].strip()
    return text[:2000] or None


def classify(status: str | None, action: str | None) -> str:
    """hard, soft, delayed or delivered, from the status class first and the action second."""
    action = (action or "").lower()
    klass = status[0] if status else None
    if action == "delayed":
        return "delayed"
    if klass == "2" or (klass is None and action in ("delivered", "relayed", "expanded")):
        return "delivered"
    if klass == "4":
        return "soft"
    return "hard"


def _parse_dsn(part: EmailMessage) -> list[Report]:
    """Per-recipient groups of a message/delivery-status part."""
    payload = part.get_payload()
    if isinstance(payload, str):  # not parsed into blocks: do it here
        blocks, chunk = [], []
        for line in payload.replace("\r\n", "\n").split("\n"):
            if line.strip():
                chunk.append(line)
            elif chunk:
                blocks.append(HeaderParser().parsestr("\n".join(chunk)))
                chunk = []
        if chunk:
            blocks.append(HeaderParser().parsestr("\n".join(chunk)))
    else:
        blocks = list(payload or [])
    reports = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        recipient = _address(block.get("Final-Recipient")) or _address(
            block.get("Original-Recipient"))
        action = _clean(block.get("Action")).lower().split(" ")[0] or None
        if recipient is None and action is None:
            continue
        diagnostic = _diagnostic(block.get("Diagnostic-Code"))
        status = _status(block.get("Status")) or _status(diagnostic)
        reports.append(Report(classify(status, action), recipient, status, action, diagnostic))
    return reports


def _header_block(part: EmailMessage) -> EmailMessage | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload else None
    if isinstance(payload, str):
        return HeaderParser().parsestr(payload.lstrip())
    return None


def _parse_arf(msg: EmailMessage, part: EmailMessage) -> Report:
    """An RFC 5965 abuse report: the complaining recipient and the feedback type."""
    fields = _header_block(part)
    recipient = None
    feedback_type = None
    if fields is not None:
        feedback_type = _clean(fields.get("Feedback-Type")).lower() or None
        recipient = _address(fields.get("Original-Rcpt-To"))
    if recipient is None:
        for sub in msg.walk():
            if sub.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
                original = _header_block(sub)
                if original is not None and original.get("To"):
                    recipient = _address(original.get("To"))
                    break
    diagnostic = f"feedback report: {feedback_type or 'abuse'}"
    return Report("complaint", recipient, None, None, diagnostic, source="arf",
                  extra={"feedback_type": feedback_type})


def _body_text(msg: EmailMessage) -> str:
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            try:
                payload = part.get_payload(decode=True) or b""
                texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
            except (LookupError, AssertionError, TypeError):
                continue
    return "\n".join(texts)


def _diagnostic_line(text: str, address: str | None) -> str | None:
    """The line (and its continuation) that explains the failure, best guess."""
    lines = [line.strip() for line in text.splitlines()]
    candidates = [i for i, line in enumerate(lines) if _STATUS_RE.search(line)
                  or _SMTP_CODE_RE.search(line)]
    if address:
        near = [i for i in candidates
                if any(address in lines[j].lower() for j in range(max(0, i - 3), i + 1))]
        candidates = near or candidates
    if not candidates:
        return None
    i = candidates[0]
    return _clean(" ".join(lines[i:i + 2]))[:2000] or None


def _parse_heuristic(msg: EmailMessage) -> list[Report]:
    """Non-standard bounces via flufl.bounce, classified by the codes in their text."""
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
    except Exception:  # flufl raises IndexError and friends on junk: never fatal
        log.info("flufl.bounce could not read a report", exc_info=True)
        return []
    text = _body_text(msg)
    reports = []
    for addresses, temporary_failure in ((permanent, False), (temporary, True)):
        for raw_address in sorted(addresses or ()):
            address = raw_address.decode("ascii", "replace") if isinstance(
                raw_address, bytes) else str(raw_address)
            address = _address(address) or address.strip().lower()
            diagnostic = _diagnostic_line(text, address)
            status = _status(diagnostic) or _status(text)
            if temporary_failure:
                kind = "delayed"
            elif status:
                kind = classify(status, "failed")
            else:
                code = _SMTP_CODE_RE.search(diagnostic or "")
                kind = "soft" if code and code.group(1).startswith("4") else "hard"
            reports.append(Report(kind, address, status,
                                  "delayed" if temporary_failure else "failed",
                                  diagnostic, source="heuristic"))
    return reports


def parse(raw: bytes | str) -> list[Report]:
    """Every recipient outcome a report states; [] when it is not a report we can read."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=policy.compat32)
        reports: list[Report] = []
        for part in msg.walk():
            content_type = part.get_content_type()
            if content_type in ("message/delivery-status", "message/global-delivery-status"):
                reports.extend(_parse_dsn(part))
            elif content_type == "message/feedback-report":
                return [_parse_arf(msg, part)]
        if reports:
            return reports
        return _parse_heuristic(msg)
    except Exception:  # junk must never break intake
        log.info("unreadable report", exc_info=True)
        return []


def _for_recipient(reports: list[Report], recipient: str) -> list[Report]:
    """The reports about our recipient (forwarding may rename it: then all of them)."""
    mine = [r for r in reports if r.recipient == recipient]
    return mine or reports


def ingest(public_id: str | None, raw: bytes | str, commit: bool = True) -> list[BounceReport]:
    """Record a report received for a message (by its VERP id): timeline, status, suppression."""
    if isinstance(raw, bytes):
        raw_text = raw[: RAW_LIMIT * 4].decode("utf-8", "replace")
    else:
        raw_text = raw
    raw_text = raw_text.replace("\x00", "")[:RAW_LIMIT]
    message = None
    if public_id:
        message = db.session.scalar(select(Message).where(Message.public_id == public_id))
    reports = parse(raw)
    if message is not None:
        reports = _for_recipient(reports, message.recipient)
    if not reports:
        reports = [Report("unknown", None, None, None, "unrecognised report, kept as evidence",
                          source="none")]
    stored = [_record(message, report, raw_text) for report in reports]
    if commit:
        db.session.commit()
    return stored


def _record(message: Message | None, report: Report, raw_text: str) -> BounceReport:
    """Store one report, move the message's status, and apply the suppression rules."""
    from .messages import add_event

    now = utcnow()
    recipient = message.recipient if message is not None else (report.recipient or "")
    row = BounceReport(message_id=message.id if message else None,
                       customer_id=message.customer_id if message else None,
                       recipient=recipient[:320], kind=report.kind, status_code=report.status,
                       action=report.action, diagnostic=report.diagnostic, raw=raw_text,
                       received_at=now)
    db.session.add(row)
    db.session.flush()
    if recipient and report.kind in ("hard", "soft", "delayed", "complaint"):
        entry = suppressions.apply_report(row, message)
        if entry is not None:
            row.suppression_id = entry.id
    if message is None:
        return row
    if report.kind in ("hard", "soft") and message.status != "bounced":
        message.status = "bounced"
        message.bounced_at = now
        reason = f"bounced: {report.status or report.kind} {report.diagnostic or ''}"
        message.status_reason = reason[:2000].strip()
    elif report.kind == "delivered":
        message.delivered_at = message.delivered_at or now
        if message.status == "sent":
            message.status = "delivered"
    detail = {"hard": "hard bounce", "soft": "soft bounce", "delayed": "delivery delayed",
              "delivered": "delivered to the recipient's mailbox",
              "complaint": "the recipient reported the message as spam",
              "unknown": "unrecognised report"}[report.kind]
    if report.status:
        detail += f" ({report.status})"
    add_event(message, EVENT_TYPES[report.kind], code=report.smtp_code, text=report.diagnostic,
              detail=detail, at=now,
              data={"report_id": row.id, "kind": report.kind, "status": report.status,
                    "action": report.action, "suppression_id": row.suppression_id})
    return row
