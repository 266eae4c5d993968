"""An automatic suppression entry's evidence (the bounce reports and refusals it was made
from) re-read with the current rules: would they still create it?"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from ...extensions import db
from ...models import BounceReport, Suppression
from ..core import settings
from . import fault, parsing

RECIPIENT_REASONS = ("hard_bounce", "soft_bounce", "complaint")  # created by the rules


@dataclass
class Judgement:
    """Would the current rules create this entry? keep: True, False, or None (no evidence)."""

    keep: bool | None
    verdict: fault.Verdict | None
    why: str


def _report_verdicts(report: BounceReport, address: str) -> list[fault.Verdict]:
    """What the current rules read in one stored report (raw evidence when kept)."""
    if report.source == "smtp" or not report.raw:
        code = fault.parse_code(report.diagnostic)
        if report.source == "smtp":
            return [fault.classify(code, None, report.diagnostic, stage="rcpt")]
        return [parsing.verdict_for(report.status_code, report.action or "failed",
                                           report.diagnostic)]
    parsed = parsing.parse(report.raw)
    mine = [r for r in parsed if address in (r.recipient, r.extra.get("original_recipient"))]
    named = {r.recipient for r in parsed if r.recipient}
    if not mine and len(named) > 1:
        return []  # about other addresses: never evidence against this one
    return [r.verdict for r in (mine or parsed)]


def _trusted(report: BounceReport) -> bool:
    """Was the report about a message we held? (A purged message keeps the customer.)"""
    return report.source == "smtp" or report.message_id is not None \
        or report.customer_id is not None


def judge(entry: Suppression) -> Judgement:
    """Re-read an automatic entry's evidence with the current rules."""
    if entry.reason not in RECIPIENT_REASONS:
        return Judgement(True, None, "not created by the bounce rules")
    reports = list(db.session.scalars(
        select(BounceReport).where(BounceReport.suppression_id == entry.id)
        .order_by(BounceReport.id)))
    if entry.reason == "soft_bounce":
        return _judge_soft(entry)
    verdicts: list[fault.Verdict] = []
    untrusted = 0
    for report in reports:
        if not _trusted(report):
            untrusted += 1
            continue
        verdicts.extend(_report_verdicts(report, entry.address))
    if not reports and (entry.diagnostic or entry.smtp_code):
        # a refusal at send time, recorded before reports were kept for it
        code = int(entry.smtp_code) if (entry.smtp_code or "").isdigit() else None
        status = entry.smtp_code if fault.parse_status(entry.smtp_code) else None
        verdicts.append(fault.classify(code, status, entry.diagnostic, "failed", "rcpt")
                        if code else parsing.verdict_for(status, "failed",
                                                                entry.diagnostic))
    wanted = fault.COMPLAINT if entry.reason == "complaint" else fault.RECIPIENT_PERMANENT
    for verdict in verdicts:
        if verdict.fault_class == wanted:
            return Judgement(True, verdict, "the evidence is still the recipient's fault")
    if verdicts:
        verdict = verdicts[-1]
        return Judgement(False, verdict, f"{verdict.fault_class}: {verdict.reason}")
    if untrusted:
        return Judgement(False, None, "report for a message we did not hold")
    return Judgement(None, None, "no evidence left")


def _judge_soft(entry: Suppression) -> Judgement:
    """A soft-bounce entry: would the reports of the window before it still reach the
    threshold, counting only what the current rules count as soft?"""
    window = timedelta(days=float(settings.get("soft_bounce_window_days")))
    threshold = int(settings.get("soft_bounce_threshold"))
    reports = db.session.scalars(
        select(BounceReport).where(BounceReport.recipient == entry.address,
                                   BounceReport.received_at >= entry.created_at - window,
                                   BounceReport.received_at <= entry.created_at
                                   + timedelta(seconds=5))
        .order_by(BounceReport.id)).all()
    if not reports:
        return Judgement(None, None, "no evidence left")
    counted: set = set()
    last = None
    for report in reports:
        if not _trusted(report):
            continue
        for verdict in _report_verdicts(report, entry.address):
            if verdict.soft:
                counted.add(report.message_id or ("report", report.id))
                last = verdict
    if len(counted) >= threshold:
        return Judgement(True, last, f"{len(counted)} soft bounces in the window")
    return Judgement(False, last, f"only {len(counted)} soft bounces by the current rules")
