"""Bounces: record received reports against their message, under the trust rules.

Reading a report (which recipients, what happened, who is at fault) is services.
parsing's job, with bounces.fault's verdicts; this module decides what a report may
change. A report is trusted only for a message we still hold, and only about that
message's recipient: a forwarded address that differs is taken as our recipient under
another name. A report for an unknown or purged message, or one naming several other
addresses, is kept as evidence and changes nothing.
"""
from __future__ import annotations

from sqlalchemy import select

from ...extensions import db
from ...models import BounceReport, Message, utcnow
from ..core.timeline import add_event
from . import suppressions
from .parsing import KINDS, Report, kind_of, verdict_for
from .parsing import parse as parse

RAW_LIMIT = 64 * 1024  # characters of the raw report kept as evidence
__all__ = ["KINDS", "Report", "classify", "ingest", "parse"]
# kind -> the type of the event appended to the message's timeline
EVENT_TYPES = {"hard": "bounce", "soft": "bounce", "failed": "bounce", "delayed": "delayed",
               "delivered": "delivered", "auto_reply": "auto_reply",
               "complaint": "complaint", "unknown": "report"}
DETAILS = {"hard": "hard bounce", "soft": "soft bounce",
           "failed": "not delivered (not the recipient's fault)",
           "delayed": "delivery delayed", "delivered": "delivered to the recipient's mailbox",
           "auto_reply": "automatic reply (e.g. out of office)",
           "complaint": "the recipient reported the message as spam",
           "unknown": "unrecognised report"}


def classify(status: str | None, action: str | None, diagnostic: str | None = None) -> str:
    """The kind of one report recipient (hard, soft, failed, delayed, delivered…) from its
    status, Action and diagnostic, by who is at fault (bounces.fault)."""
    return kind_of(verdict_for(status, action, diagnostic), (action or "").lower() or None)


def _about_recipient(reports: list[Report], recipient: str) -> list[Report]:
    """The reports about our recipient. None names it: one other address is our recipient
    forwarded (the verdict is ours); several others are not about it (marked foreign)."""
    mine = [r for r in reports
            if recipient in (r.recipient, r.extra.get("original_recipient"))]
    if mine:
        return mine
    named = {r.recipient for r in reports if r.recipient}
    if len(named) > 1:
        for report in reports:
            report.extra["foreign"] = True
    return reports


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
        reports = _about_recipient(reports, message.recipient)
    if not reports:
        reports = [Report("unknown", None, None, None, "unrecognised report, kept as evidence",
                          source="none")]
    stored = [_record(message, report, raw_text) for report in reports]
    if commit:
        db.session.commit()
    return stored


def _record(message: Message | None, report: Report, raw_text: str) -> BounceReport:
    """Store one report; when trusted, move the message's status and apply the list rules."""
    now = utcnow()
    trusted = message is not None and not report.extra.get("foreign")
    recipient = message.recipient if trusted else (report.recipient or "")
    row = BounceReport(message_id=message.id if message else None,
                       customer_id=message.customer_id if message else None,
                       recipient=recipient[:320], kind=report.kind,
                       fault_class=report.fault_class, fault_reason=report.fault_reason,
                       source=report.source, status_code=report.status,
                       action=report.action, diagnostic=report.diagnostic, raw=raw_text,
                       received_at=now)
    db.session.add(row)
    db.session.flush()
    if trusted and recipient:
        entry = suppressions.apply_report(row, message)
        if entry is not None:
            row.suppression_id = entry.id
    if message is None:
        return row
    if trusted and report.kind in ("hard", "soft", "failed") and message.status != "bounced":
        message.status = "bounced"
        message.bounced_at = now
        reason = f"bounced: {report.status or report.kind} {report.diagnostic or ''}"
        message.status_reason = reason[:2000].strip()
    elif trusted and report.kind == "delivered":
        message.delivered_at = message.delivered_at or now
        if message.status == "sent":
            message.status = "delivered"
    if trusted and report.kind in ("hard", "soft", "failed", "complaint", "delayed"):
        message.fault_class, message.fault_reason = report.fault_class, report.fault_reason
    detail = DETAILS.get(report.kind, report.kind)
    if report.status:
        detail += f" ({report.status})"
    if not trusted:
        detail += (f"; about {report.recipient or 'another address'}, not this message's "
                   "recipient: kept as evidence only")
    add_event(message, EVENT_TYPES.get(report.kind, "report"), code=report.smtp_code,
              text=report.diagnostic, detail=detail, at=now,
              data={"report_id": row.id, "kind": report.kind, "status": report.status,
                    "action": report.action, "suppression_id": row.suppression_id,
                    "fault_class": report.fault_class, "fault_reason": report.fault_reason,
                    "source": report.source, "trusted": trusted})
    return row
