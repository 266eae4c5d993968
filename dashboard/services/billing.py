"""Billing of suppression removals: per customer per month, the list behind each figure, CSV,
and "invoiced" marks. Only staff removals count (automatic expiries are not interventions)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Customer, SuppressionRemoval, User, utcnow
from . import ServiceError, audit


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
