"""The suppression list: addresses we must not send to, why, and every lift of an entry.

Rules (DESIGN.md): only the recipient's own permanent failure (bounces.fault's class
recipient_permanent) suppresses at once; recipient-side temporary trouble and a message
that expired because the recipient's server stayed unreachable are soft bounces, and N of
them within a window suppress for a limited time (lifted automatically, audited as
automatic); a complaint suppresses and only an admin may lift it. Refusals about us or the
sender never suppress. A lift needs the requesting customer and a reason; a lift of an
address already lifted inside the billing window is billable, but only for an entry the
current rules would create about the recipient's own fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select

from ...addresses import canonical
from ...extensions import db
from ...models import (
    BounceReport,
    Customer,
    Message,
    Suppression,
    SuppressionRemoval,
    User,
    utcnow,
)
from .. import ServiceError
from ..core import audit, settings
from . import fault
from .evidence import RECIPIENT_REASONS, judge

REASONS = ("hard_bounce", "soft_bounce", "complaint", "manual")
SCOPES = ("relay", "customer")
AUTOMATIC_REASON = "soft-bounce suppression expired (automatic)"
RECLASSIFIED_REASON = "reclassified"


class NotAllowed(ServiceError):
    """The actor's role may not do this (403 on the web)."""


def normalise_address(address: str) -> str:
    """Case, whitespace and the way a domain is written do not make another address:
    ' Bob@X.com ' is bob@x.com, info@xn--mller-kva.de is info@müller.de."""
    address = (address or "").strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[7:]
    return canonical(address)


def scope_for(customer: Customer) -> tuple[str, int | None]:
    """Relay-wide entries for relay modes; per-customer entries for a customer's own SMTP."""
    if customer.sending_mode == "customer_smtp":
        return "customer", customer.id
    return "relay", None


def _message_scope(message: Message) -> tuple[str, int | None]:
    """The scope a message was sent in (its transport at the time, not today's mode)."""
    if message.transport == "customer_smtp":
        return "customer", message.customer_id
    return "relay", None


def active_entry(address: str, scope: str, customer_id: int | None,
                 now: datetime | None = None) -> Suppression | None:
    """The active entry for an address in one scope, if any."""
    now = now or utcnow()
    query = select(Suppression).where(
        Suppression.address == normalise_address(address),
        Suppression.lifted_at.is_(None),
        or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
        Suppression.scope == scope,
    )
    if scope == "customer":
        query = query.where(Suppression.customer_id == customer_id)
    return db.session.scalars(query.order_by(Suppression.id.desc()).limit(1)).first()


def active_for(address: str, customer: Customer, now: datetime | None = None) -> Suppression | None:
    """The active entry that stops mail from `customer` to `address`, if any."""
    scope, customer_id = scope_for(customer)
    return active_entry(address, scope, customer_id, now)


def _window_start(setting: str, now: datetime) -> datetime:
    return now - timedelta(days=float(settings.get(setting)))


def last_removal(address: str, since: datetime | None = None,
                 manual_only: bool = False, exclude_reclassified: bool = False
                 ) -> SuppressionRemoval | None:
    """The latest removal of an address (optionally: only by staff, only after `since`,
    not counting entries lifted because the current rules would not have created them)."""
    query = select(SuppressionRemoval).where(
        SuppressionRemoval.address == normalise_address(address))
    if exclude_reclassified:
        query = query.where(SuppressionRemoval.reason != RECLASSIFIED_REASON)
    if since is not None:
        query = query.where(SuppressionRemoval.removed_at >= since)
    if manual_only:
        query = query.where(SuppressionRemoval.automatic.is_(False))
    return db.session.scalars(
        query.order_by(SuppressionRemoval.removed_at.desc(), SuppressionRemoval.id.desc())
        .limit(1)).first()


def suppress(address: str, reason: str, customer: Customer | None = None, *,
             scope: str | None = None, smtp_code: str | None = None,
             diagnostic: str | None = None, message: Message | None = None,
             expires_at: datetime | None = None, actor: User | None = None,
             note: str | None = None, verdict: fault.Verdict | None = None) -> Suppression:
    """Add an entry unless an active one exists for the same scope; returns the entry."""
    if scope is None:
        scope, customer_id = scope_for(customer) if customer is not None else ("relay", None)
    else:
        customer_id = customer.id if (scope == "customer" and customer is not None) else None
    if scope == "customer" and customer_id is None:
        raise ServiceError(_l("A customer scope needs its customer."), "customer")
    address = normalise_address(address)
    now = utcnow()
    existing = active_entry(address, scope, customer_id, now)
    if existing is not None:
        if reason in ("hard_bounce", "complaint") and existing.expires_at is not None:
            # a permanent reason outranks a temporary soft-bounce entry
            existing.expires_at = None
            existing.reason = reason
            existing.smtp_code = smtp_code or existing.smtp_code
            existing.diagnostic = diagnostic or existing.diagnostic
            if verdict is not None:
                existing.fault_class, existing.fault_reason = verdict.fault_class, verdict.reason
        return existing
    previous = last_removal(address, since=_window_start("billing_window_days", now),
                            exclude_reclassified=True)
    entry = Suppression(address=address, scope=scope, customer_id=customer_id, reason=reason,
                        smtp_code=smtp_code, diagnostic=diagnostic,
                        fault_class=verdict.fault_class if verdict else None,
                        fault_reason=verdict.reason if verdict else None,
                        message_id=message.id if message is not None else None,
                        expires_at=expires_at, created_by_id=actor.id if actor else None,
                        note=note, created_at=now, repeated=previous is not None)
    db.session.add(entry)
    db.session.flush()
    audit.record("suppression.add", actor, "suppression", entry.id, customer_id=customer_id,
                 after={"address": address, "reason": reason, "scope": scope,
                        "expires_at": expires_at.isoformat() if expires_at else None,
                        "repeated": entry.repeated, "fault_class": entry.fault_class,
                        "fault_reason": entry.fault_reason},
                 note=note or diagnostic)
    return entry


def record_send_failure(message: Message, code: int | None, text: str,
                        stage: str = "rcpt") -> Suppression | None:
    """A refusal at send time: classified, then recorded by record_send_refusal."""
    return record_send_refusal(message, code, text, fault.classify(code, None, text,
                                                                   stage=stage))


def record_send_refusal(message: Message, code: int | None, text: str,
                        verdict: fault.Verdict) -> Suppression | None:
    """The list rules for one send-time answer about the recipient: its own permanent
    failure suppresses at once, a temporary one (or the expiry of a message whose recipient's
    server stayed unreachable) counts one soft bounce. Each is kept as a report (source
    'smtp'), the evidence behind the entry. Anything else changes nothing here."""
    if verdict.fault_class == fault.RECIPIENT_PERMANENT and verdict.permanent:
        kind = "hard"
    elif verdict.soft:
        kind = "soft"
    else:
        return None
    if kind == "soft" and db.session.scalar(select(BounceReport.id).where(
            BounceReport.message_id == message.id, BounceReport.kind == "soft",
            BounceReport.source == "smtp").limit(1)) is not None:
        return None  # each message counts once, whatever the number of retries
    text = (text or "")[:2000]
    row = BounceReport(message_id=message.id, customer_id=message.customer_id,
                       recipient=normalise_address(message.recipient), kind=kind,
                       fault_class=verdict.fault_class, fault_reason=verdict.reason,
                       source="smtp", status_code=fault.parse_status(text),
                       action="failed" if verdict.permanent else "delayed",
                       diagnostic=" ".join(filter(None, [str(code or ""), text])) or None,
                       received_at=utcnow())
    db.session.add(row)
    db.session.flush()
    entry = apply_report(row, message, smtp_code=str(code) if code else None)
    if entry is not None:
        row.suppression_id = entry.id
    return entry


def soft_bounce_count(address: str, now: datetime | None = None) -> int:
    """Soft bounces (distinct messages) of an address inside the window, since its last lift."""
    now = now or utcnow()
    since = _window_start("soft_bounce_window_days", now)
    lifted = last_removal(address)
    if lifted is not None and lifted.removed_at > since:
        since = lifted.removed_at
    rows = db.session.execute(
        select(BounceReport.id, BounceReport.message_id).where(
            BounceReport.recipient == normalise_address(address),
            BounceReport.kind == "soft",
            BounceReport.received_at >= since)).all()
    return len({("m", m) if m is not None else ("r", i) for i, m in rows})


def apply_report(report: BounceReport, message: Message | None,
                 smtp_code: str | None = None) -> Suppression | None:
    """The suppression rules for one trusted report (kind and verdict already decided by
    bounces.fault); returns the entry it caused, if any. No message, no effect."""
    if message is None:
        return None
    scope, customer_id = _message_scope(message)
    customer = message.customer
    address = report.recipient
    verdict = fault.Verdict(report.fault_class or fault.UNKNOWN,
                            report.fault_reason or "unclassified", True)
    diagnostic = report.diagnostic
    smtp_code = smtp_code or report.status_code or _code(diagnostic)
    if report.kind == "hard":
        return suppress(address, "hard_bounce", customer, scope=scope, smtp_code=smtp_code,
                        diagnostic=diagnostic, message=message, verdict=verdict)
    if report.kind == "complaint":
        return suppress(address, "complaint", customer, scope=scope, smtp_code=None,
                        diagnostic=diagnostic, message=message, verdict=verdict)
    if report.kind == "soft":
        now = utcnow()
        threshold = int(settings.get("soft_bounce_threshold"))
        if soft_bounce_count(address, now) < threshold:
            return None
        existing = active_entry(address, scope, customer_id, now)
        if existing is not None:
            return existing
        days = float(settings.get("soft_suppression_days"))
        return suppress(address, "soft_bounce", customer, scope=scope, smtp_code=smtp_code,
                        diagnostic=diagnostic, message=message,
                        expires_at=now + timedelta(days=days), verdict=verdict,
                        note=f"{threshold} soft bounces within "
                             f"{settings.get('soft_bounce_window_days')} days")
    return None


def _code(diagnostic: str | None) -> str | None:
    """The reply code a diagnostic starts with ('550'), for entries without a status."""
    code = fault.parse_code(diagnostic)
    return str(code) if code else None


def add_manual(address: str, reason: str, actor: User, scope: str = "relay",
               customer: Customer | None = None, commit: bool = True) -> Suppression:
    """Staff add an address by hand, with a reason."""
    from ...addresses import normalise

    if actor is None or not actor.has_role("support"):
        raise NotAllowed(_l("Only support staff and admins may add suppressions."))
    address = normalise(address or "", "address")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_l("A reason is required."), "reason")
    if scope not in SCOPES:
        raise ServiceError(_l("Unknown scope."), "scope")
    if scope == "customer" and customer is None:
        raise ServiceError(_l("Choose the customer whose own SMTP this entry is for."), "customer")
    if active_entry(address, scope, customer.id if scope == "customer" else None) is not None:
        raise ServiceError(_l("This address is already suppressed in this scope."), "address")
    entry = suppress(address, "manual", customer, scope=scope, actor=actor, note=reason)
    if commit:
        db.session.commit()
    return entry


@dataclass
class LiftPreview:
    """What a lift would do, shown before confirming."""

    billable: bool
    previous: SuppressionRemoval | None
    window_days: int
    admin_only: bool
    recipient_fault: bool = True  # False: never billable (not the recipient's doing)


def preview_lift(entry: Suppression, now: datetime | None = None) -> LiftPreview:
    """Would lifting this entry now be billable? Only an entry the current rules create for
    the recipient's own fault (not a manual one, not one about us or the sender), lifted
    again by staff inside the window."""
    now = now or utcnow()
    window = int(settings.get("billing_window_days"))
    previous = last_removal(entry.address, since=now - timedelta(days=window), manual_only=True)
    about_recipient = recipient_fault(entry)
    return LiftPreview(previous is not None and about_recipient, previous, window,
                       entry.reason == "complaint", about_recipient)


def recipient_fault(entry: Suppression) -> bool:
    """True when the entry is (by the current rules) about the recipient's own fault."""
    if entry.reason not in RECIPIENT_REASONS:
        return False
    if entry.fault_class:
        verdict = fault.Verdict(entry.fault_class, entry.fault_reason or "", True)
        return verdict.recipient_fault or verdict.soft
    return judge(entry).keep is not False  # an old entry: its evidence re-read


def can_lift(entry: Suppression, actor: User | None) -> bool:
    """Complaints are lifted by admins only; other entries by support and admins."""
    if actor is None:
        return False
    if entry.reason == "complaint":
        return actor.role == "admin"
    return actor.has_role("support")


def senders(address: str) -> list[Customer]:
    """The customers whose (retained) messages went to an address, latest sender first."""
    latest = func.max(Message.created_at)
    ids = [customer_id for customer_id, _at in db.session.execute(
        select(Message.customer_id, latest).where(
            Message.recipient == normalise_address(address))
        .group_by(Message.customer_id).order_by(latest.desc()))]
    found = {c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def suggested_customer(entry: Suppression) -> Customer | None:
    """The requesting customer to pre-select: the entry's own (its own SMTP), or the only
    customer that wrote to the address. None when several did: billing the removal to the
    latest sender billed the wrong customer, so the user must choose."""
    if entry.scope == "customer" and entry.customer is not None:
        return entry.customer
    found = senders(entry.address)
    return found[0] if len(found) == 1 else None


def last_suppressed_message(entry: Suppression) -> Message | None:
    """The latest message held back by this entry (or, failing that, to this address)."""
    query = select(Message).where(Message.status == "suppressed")
    found = db.session.scalar(query.where(Message.suppression_id == entry.id)
                              .order_by(Message.created_at.desc(), Message.id.desc()).limit(1))
    if found is None:
        found = db.session.scalar(query.where(Message.recipient == entry.address)
                                  .order_by(Message.created_at.desc(), Message.id.desc())
                                  .limit(1))
    return found


def lift(entry: Suppression, customer: Customer | None, reason: str, ticket: str | None,
         minutes, actor: User | None, commit: bool = True) -> SuppressionRemoval:
    """Lift an entry for a requesting customer: kept as a removal, billable when repeated.
    (Lifting and resending the message it held back: resend.lift_and_resend.)"""
    if not can_lift(entry, actor):
        if entry.reason == "complaint":
            raise NotAllowed(_l("Only an admin may lift a complaint."))
        raise NotAllowed(_l("Your role may not lift suppressions."))
    if entry.lifted_at is not None:
        raise ServiceError(_l("This entry was already lifted."), "reason")
    if customer is None:
        raise ServiceError(_l("Choose the customer who asked for the removal."), "customer")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_l("A reason is required."), "reason")
    ticket = (ticket or "").strip()[:100] or None
    try:
        minutes = int(str(minutes).strip() or 0)
    except ValueError:
        raise ServiceError(_l("Minutes must be a whole number."), "minutes") from None
    if not 0 <= minutes <= 24 * 60:
        raise ServiceError(_l("Minutes must be between 0 and 1440."), "minutes")
    now = utcnow()
    preview = preview_lift(entry, now)
    if preview.billable and minutes <= 0:  # invoiced by the time spent: 0 would bill nothing
        raise ServiceError(_l("A billable removal needs the minutes spent (more than 0)."),
                           "minutes")
    removal = SuppressionRemoval(
        suppression=entry, address=entry.address, customer_id=customer.id, reason=reason,
        ticket=ticket, minutes_spent=minutes, billable=preview.billable, automatic=False,
        removed_at=now, removed_by_id=actor.id)
    entry.lifted_at = now
    db.session.add(removal)
    db.session.flush()
    audit.record("suppression.lift", actor, "suppression", entry.id, customer_id=customer.id,
                 before={"lifted_at": None},
                 after={"lifted_at": now.isoformat(), "removal_id": removal.id,
                        "billable": removal.billable, "minutes": minutes, "ticket": ticket},
                 note=reason)
    if commit:
        db.session.commit()
    return removal


def expire_due(now: datetime | None = None, batch: int = 500) -> int:
    """Lift expired temporary entries, each kept as an automatic removal; returns how many."""
    now = now or utcnow()
    total = 0
    while True:
        entries = db.session.scalars(
            select(Suppression).where(Suppression.lifted_at.is_(None),
                                      Suppression.expires_at.is_not(None),
                                      Suppression.expires_at <= now)
            .order_by(Suppression.id).limit(batch)).all()
        if not entries:
            return total
        for entry in entries:
            entry.lifted_at = now
            db.session.add(SuppressionRemoval(
                suppression=entry, address=entry.address, customer_id=entry.customer_id,
                reason=AUTOMATIC_REASON, minutes_spent=0, billable=False, automatic=True,
                removed_at=now))
            audit.record("suppression.expire", None, "suppression", entry.id,
                         customer_id=entry.customer_id, actor_label="system (automatic)",
                         before={"lifted_at": None}, after={"lifted_at": now.isoformat()},
                         note=AUTOMATIC_REASON)
        db.session.commit()
        total += len(entries)


@dataclass
class Filters:
    """The Suppressions page's search: address or domain, reason, scope, dates, state."""

    q: str = ""
    reason: str = ""
    scope: str = ""
    since: datetime | None = None
    until: datetime | None = None
    state: str = "active"  # active | lifted | all


def search(filters: Filters, limit: int = 200, now: datetime | None = None) -> list[Suppression]:
    """Entries matching the filters, newest first."""
    now = now or utcnow()
    query = select(Suppression)
    q = normalise_address(filters.q)
    if q.startswith("@"):  # a domain: addresses ending with it
        query = query.where(Suppression.address.like(f"%{_escape(q)}", escape="\\"))
    elif q:  # an address, part of one, or a domain
        query = query.where(Suppression.address.like(f"%{_escape(q)}%", escape="\\"))
    if filters.reason in REASONS:
        query = query.where(Suppression.reason == filters.reason)
    if filters.scope in SCOPES:
        query = query.where(Suppression.scope == filters.scope)
    if filters.since is not None:
        query = query.where(Suppression.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(Suppression.created_at < filters.until)
    active = (Suppression.lifted_at.is_(None)
              & or_(Suppression.expires_at.is_(None), Suppression.expires_at > now))
    if filters.state == "active":
        query = query.where(active)
    elif filters.state == "lifted":
        query = query.where(~active)
    return list(db.session.scalars(
        query.order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(limit)))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def reports_for(entry: Suppression) -> list[BounceReport]:
    """The reports that caused (or fed) an entry, newest first."""
    return list(db.session.scalars(
        select(BounceReport).where(BounceReport.suppression_id == entry.id)
        .order_by(BounceReport.received_at.desc(), BounceReport.id.desc()).limit(50)))


def history(address: str) -> list[SuppressionRemoval]:
    """Every removal of an address, newest first."""
    return list(db.session.scalars(
        select(SuppressionRemoval).where(SuppressionRemoval.address == normalise_address(address))
        .order_by(SuppressionRemoval.removed_at.desc(), SuppressionRemoval.id.desc())))


def counts() -> dict:
    """Active entries per reason, for the page header."""
    now = utcnow()
    rows = db.session.execute(
        select(Suppression.reason, func.count()).where(
            Suppression.lifted_at.is_(None),
            or_(Suppression.expires_at.is_(None), Suppression.expires_at > now))
        .group_by(Suppression.reason)).all()
    return {reason: n for reason, n in rows}
