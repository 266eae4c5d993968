"""Billing: suppression removals and configuration interventions per customer per month, the
list behind each figure, CSV, "invoiced" marks, and the customers on the paid customer_smtp
option month by month. Only staff removals count (automatic expiries are not interventions)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ...extensions import db
from ...models import (
    ConfigurationIntervention,
    Customer,
    CustomerSmtpPeriod,
    SuppressionRemoval,
    User,
    utcnow,
)
from .. import ServiceError
from ..core import audit
from . import interventions


def month_start(value: date) -> date:
    """The first day of a date's month."""
    return value.replace(day=1)


def next_month(value: date) -> date:
    """The first day of the following month."""
    return date(value.year + (value.month == 12), value.month % 12 + 1, 1)


def parse_month(value: str | None) -> date | None:
    """'2026-04' → date(2026, 4, 1); None when empty; ServiceError when malformed."""
    if not value:
        return None
    try:
        year, month = value.strip().split("-")[:2]
        return date(int(year), int(month), 1)
    except ValueError:
        raise ServiceError(_l("Use the format YYYY-MM."), "month") from None


@dataclass
class Filters:
    """A period of whole months (inclusive), an optional customer, optionally billable only."""

    from_month: date
    to_month: date
    customer_id: int | None = None
    billable_only: bool = False
    month: date | None = None  # one month only (the list behind a figure)

    def bounds(self) -> tuple[datetime, datetime]:
        start, end = (self.month, self.month) if self.month else (self.from_month, self.to_month)
        return (datetime.combine(start, time.min, UTC),
                datetime.combine(next_month(end), time.min, UTC))


def default_filters(today: date | None = None) -> Filters:
    """The last three months, this one included."""
    today = today or utcnow().date()
    start = month_start(today)
    for _ in range(2):
        start = date(start.year - (start.month == 1), 12 if start.month == 1 else start.month - 1,
                     1)
    return Filters(start, month_start(today))


def removals(filters: Filters) -> list[SuppressionRemoval]:
    """The staff removals in the period (oldest first), with their customer and actor."""
    start, end = filters.bounds()
    query = (select(SuppressionRemoval)
             .options(joinedload(SuppressionRemoval.customer),
                      joinedload(SuppressionRemoval.removed_by))
             .where(SuppressionRemoval.automatic.is_(False),
                    SuppressionRemoval.removed_at >= start, SuppressionRemoval.removed_at < end))
    if filters.customer_id is not None:
        query = query.where(SuppressionRemoval.customer_id == filters.customer_id)
    if filters.billable_only:
        query = query.where(SuppressionRemoval.billable.is_(True))
    return list(db.session.scalars(
        query.order_by(SuppressionRemoval.removed_at, SuppressionRemoval.id)))


@dataclass
class MonthRow:
    """One customer's month: how many removals, how many billable, minutes spent."""

    customer: Customer | None
    month: date
    count: int = 0
    billable: int = 0
    minutes: int = 0
    billable_minutes: int = 0
    invoiced: int = 0
    ids: list[int] = field(default_factory=list)

    @property
    def to_invoice(self) -> int:
        """Billable removals not yet marked invoiced."""
        return self.billable - self.invoiced


def summary(filters: Filters) -> list[MonthRow]:
    """Removals per customer per month (newest month first, then customer code)."""
    rows: dict[tuple[int | None, date], MonthRow] = {}
    for removal in removals(filters):
        month = month_start(removal.removed_at.date())
        key = (removal.customer_id, month)
        row = rows.get(key)
        if row is None:
            row = rows[key] = MonthRow(removal.customer, month)
        row.count += 1
        row.minutes += removal.minutes_spent or 0
        row.ids.append(removal.id)
        if removal.billable:
            row.billable += 1
            row.billable_minutes += removal.minutes_spent or 0
            if removal.invoiced_at is not None:
                row.invoiced += 1
    return sorted(rows.values(), key=lambda r: (-r.month.toordinal(),
                                                r.customer.code if r.customer else ""))


def totals(rows: list[MonthRow]) -> MonthRow:
    """The sum of the summary rows."""
    total = MonthRow(None, date.min)
    for row in rows:
        total.count += row.count
        total.billable += row.billable
        total.minutes += row.minutes
        total.billable_minutes += row.billable_minutes
        total.invoiced += row.invoiced
    return total


CSV_COLUMNS = ("removed_at", "month", "customer_code", "customer_name", "address", "reason",
               "ticket", "minutes", "billable", "invoiced_at", "removed_by")


def _cell(value) -> str:
    """A CSV cell that spreadsheets will not execute as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(filters: Filters) -> str:
    """The removals of the period as CSV, one line each (the figures' evidence)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in removals(filters):
        writer.writerow([_cell(v) for v in (
            r.removed_at.strftime("%Y-%m-%d %H:%M"), r.removed_at.strftime("%Y-%m"),
            r.customer.code if r.customer else "", r.customer.name if r.customer else "",
            r.address, r.reason, r.ticket or "", r.minutes_spent,
            "yes" if r.billable else "no",
            r.invoiced_at.strftime("%Y-%m-%d") if r.invoiced_at else "",
            r.removed_by.email if r.removed_by else "")])
    return out.getvalue()


def mark_invoiced(removal: SuppressionRemoval, actor: User, commit: bool = True) -> None:
    """Mark a billable removal as invoiced (once), audited."""
    if not removal.billable:
        raise ServiceError(_l("Only billable removals are invoiced."), "removal")
    if removal.invoiced_at is not None:
        raise ServiceError(_l("This removal is already marked invoiced."), "removal")
    removal.invoiced_at = utcnow()
    removal.invoiced_by_id = actor.id if actor else None
    audit.record("removal.invoiced", actor, "suppression_removal", removal.id,
                 customer_id=removal.customer_id, before={"invoiced_at": None},
                 after={"invoiced_at": removal.invoiced_at.isoformat(),
                        "minutes": removal.minutes_spent, "address": removal.address})
    if commit:
        db.session.commit()


# -- configuration interventions --------------------------------------------------------------

def configuration_interventions(filters: Filters) -> list[ConfigurationIntervention]:
    """The interventions of the period (oldest first), with customer, actor and estimate."""
    start, end = filters.bounds()
    query = (select(ConfigurationIntervention)
             .options(joinedload(ConfigurationIntervention.customer),
                      joinedload(ConfigurationIntervention.actor),
                      joinedload(ConfigurationIntervention.estimate))
             .where(ConfigurationIntervention.changed_at >= start,
                    ConfigurationIntervention.changed_at < end))
    if filters.customer_id is not None:
        query = query.where(ConfigurationIntervention.customer_id == filters.customer_id)
    if filters.billable_only:
        query = query.where(ConfigurationIntervention.billable.is_(True))
    return list(db.session.scalars(
        query.order_by(ConfigurationIntervention.changed_at, ConfigurationIntervention.id)))


def pending_interventions(customer_id: int | None = None) -> list[ConfigurationIntervention]:
    """Billable interventions whose minutes are still to be completed, whatever their month."""
    query = (select(ConfigurationIntervention)
             .options(joinedload(ConfigurationIntervention.customer),
                      joinedload(ConfigurationIntervention.actor),
                      joinedload(ConfigurationIntervention.estimate))
             .where(ConfigurationIntervention.billable.is_(True),
                    ConfigurationIntervention.minutes.is_(None)))
    if customer_id is not None:
        query = query.where(ConfigurationIntervention.customer_id == customer_id)
    return list(db.session.scalars(
        query.order_by(ConfigurationIntervention.changed_at, ConfigurationIntervention.id)))


@dataclass
class InterventionMonth:
    """One customer's month of configuration changes: counts, minutes, estimates."""

    customer: Customer | None
    month: date
    count: int = 0
    billable: int = 0
    minutes: int = 0
    billable_minutes: int = 0
    pending: int = 0
    invoiced: int = 0
    estimate_minutes: int = 0
    estimate_cents: int = 0

    @property
    def to_invoice(self) -> int:
        """Billable interventions not yet marked invoiced."""
        return self.billable - self.invoiced


def intervention_summary(filters: Filters) -> list[InterventionMonth]:
    """Interventions per customer per month (newest month first, then customer code)."""
    rows: dict[tuple[int, date], InterventionMonth] = {}
    for item in configuration_interventions(filters):
        month = month_start(item.changed_at.date())
        row = rows.get((item.customer_id, month))
        if row is None:
            row = rows[(item.customer_id, month)] = InterventionMonth(item.customer, month)
        row.count += 1
        row.minutes += item.minutes or 0
        if item.billable:
            row.billable += 1
            row.billable_minutes += item.minutes or 0
            row.pending += item.minutes is None
            row.invoiced += item.invoiced_at is not None
        if item.estimate is not None:
            row.estimate_minutes += item.estimate.minutes or 0
            row.estimate_cents += item.estimate.amount_cents or 0
    return sorted(rows.values(), key=lambda r: (-r.month.toordinal(),
                                                r.customer.code if r.customer else ""))


def intervention_totals(rows: list[InterventionMonth]) -> InterventionMonth:
    """The sum of the intervention summary rows."""
    total = InterventionMonth(None, date.min)
    for row in rows:
        for name in ("count", "billable", "minutes", "billable_minutes", "pending", "invoiced",
                     "estimate_minutes", "estimate_cents"):
            setattr(total, name, getattr(total, name) + getattr(row, name))
    return total


INTERVENTION_CSV_COLUMNS = (
    "changed_at", "month", "customer_code", "customer_name", "mode_before", "mode_after",
    "fields", "ticket", "minutes", "minutes_to_be_completed", "billable", "waived_reason",
    "estimate_date", "estimate_minutes", "estimate_amount_eur", "estimate_note", "invoiced_at",
    "changed_by")


def interventions_csv(filters: Filters) -> str:
    """The interventions of the period as CSV, one line each (field names, never values)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(INTERVENTION_CSV_COLUMNS)
    for i in configuration_interventions(filters):
        estimate = i.estimate
        writer.writerow([_cell(v) for v in (
            i.changed_at.strftime("%Y-%m-%d %H:%M"), i.changed_at.strftime("%Y-%m"),
            i.customer.code, i.customer.name, i.mode_before, i.mode_after,
            " ".join(i.fields or []), i.ticket or "",
            "" if i.minutes is None else i.minutes, "yes" if i.minutes_pending else "no",
            "yes" if i.billable else "no", i.waived_reason or "",
            estimate.estimated_on.isoformat() if estimate else "",
            estimate.minutes if estimate and estimate.minutes else "",
            f"{estimate.amount_cents / 100:.2f}" if estimate and estimate.amount_cents else "",
            estimate.note if estimate else "",
            i.invoiced_at.strftime("%Y-%m-%d") if i.invoiced_at else "", i.actor_label)])
    return out.getvalue()


def complete_minutes(intervention: ConfigurationIntervention, minutes, actor: User) -> None:
    """Fill in the minutes of a billable intervention recorded without them, audited."""
    if not intervention.minutes_pending:
        raise ServiceError(_l("The minutes of this intervention are already filled in."),
                           "minutes")
    value = interventions.parse_minutes(minutes)
    if not value:
        raise ServiceError(_l("A billable change needs the minutes spent (more than 0)."),
                           "minutes")
    intervention.minutes = value
    audit.record("intervention.minutes", actor, "configuration_intervention", intervention.id,
                 customer_id=intervention.customer_id, before={"minutes": None},
                 after={"minutes": value})
    db.session.commit()


def mark_intervention_invoiced(intervention: ConfigurationIntervention, actor: User) -> None:
    """Mark a billable intervention with its minutes as invoiced (once), audited."""
    if not intervention.billable:
        raise ServiceError(_l("Only billable interventions are invoiced."), "intervention")
    if intervention.minutes is None:
        raise ServiceError(_l("Fill in the minutes before marking it invoiced."), "minutes")
    if intervention.invoiced_at is not None:
        raise ServiceError(_l("This intervention is already marked invoiced."), "intervention")
    intervention.invoiced_at = utcnow()
    intervention.invoiced_by_id = actor.id if actor else None
    audit.record("intervention.invoiced", actor, "configuration_intervention", intervention.id,
                 customer_id=intervention.customer_id, before={"invoiced_at": None},
                 after={"invoiced_at": intervention.invoiced_at.isoformat(),
                        "minutes": intervention.minutes})
    db.session.commit()


# -- the paid customer_smtp option --------------------------------------------------------------

@dataclass
class SmtpOptionRow:
    """A customer on customer_smtp during the period: since when, until when, which months."""

    customer: Customer
    started_at: datetime | None  # None: on customer_smtp with no record of the start
    ended_at: datetime | None
    evidence: str  # change | audit | created | unrecorded
    months: list[date] = field(default_factory=list)


def _months(first: date, last: date) -> list[date]:
    """Every month from `first` to `last`, both included."""
    months, month = [], month_start(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def customer_smtp_option(filters: Filters) -> list[SmtpOptionRow]:
    """Customers on the paid customer_smtp option at any time in the period, with the months
    of the period they were on it (the monthly charge), by customer code then start."""
    start, end = filters.bounds()
    query = (select(CustomerSmtpPeriod).options(joinedload(CustomerSmtpPeriod.customer))
             .where(CustomerSmtpPeriod.started_at < end,
                    CustomerSmtpPeriod.ended_at.is_(None) | (CustomerSmtpPeriod.ended_at >= start))
             .order_by(CustomerSmtpPeriod.id))
    if filters.customer_id is not None:
        query = query.where(CustomerSmtpPeriod.customer_id == filters.customer_id)
    first_month = filters.month or filters.from_month
    last_day = date.fromordinal(next_month(filters.month or filters.to_month).toordinal() - 1)
    rows = []
    for period in db.session.scalars(query):
        began = max(month_start(period.started_at.date()), first_month)
        ended = min(period.ended_at.date(), last_day) if period.ended_at else \
            min(utcnow().date(), last_day)
        rows.append(SmtpOptionRow(period.customer, period.started_at, period.ended_at,
                                  period.start_evidence, _months(began, ended)))
    recorded = select(CustomerSmtpPeriod.customer_id).where(CustomerSmtpPeriod.ended_at.is_(None))
    unrecorded = select(Customer).where(Customer.sending_mode == interventions.PAID_MODE,
                                        Customer.id.not_in(recorded))
    if filters.customer_id is not None:
        unrecorded = unrecorded.where(Customer.id == filters.customer_id)
    for customer in db.session.scalars(unrecorded):
        rows.append(SmtpOptionRow(customer, None, None, "unrecorded",
                                  _months(first_month, min(utcnow().date(), last_day))))
    return sorted(rows, key=lambda r: (r.customer.code, r.started_at or datetime.min.replace(
        tzinfo=UTC)))


SMTP_OPTION_CSV_COLUMNS = ("customer_code", "customer_name", "started_at", "ended_at",
                           "start_evidence", "months_in_period", "months")


def customer_smtp_csv(filters: Filters) -> str:
    """The customer_smtp option rows of the period as CSV (one line per stretch of time)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(SMTP_OPTION_CSV_COLUMNS)
    for row in customer_smtp_option(filters):
        writer.writerow([_cell(v) for v in (
            row.customer.code, row.customer.name,
            row.started_at.strftime("%Y-%m-%d") if row.started_at else "",
            row.ended_at.strftime("%Y-%m-%d") if row.ended_at else "", row.evidence,
            len(row.months), " ".join(m.strftime("%Y-%m") for m in row.months))])
    return out.getvalue()
