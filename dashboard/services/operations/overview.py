"""The Home overview: totals, a per-day (or per-hour) chart, top failing customers, the queue.

Counting a month of messages row by row is too slow at a million messages, so closed UTC
days are kept in `message_rollup` (per day, customer and status) and only the last two days
are counted live from `message` (range scan on ix_message_created). A closed day is
recounted every 15 minutes until it is 3 days old (late delivery reports and opens still
move a few messages), then it stays as counted.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app, has_request_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import STATUSES, Customer, Message, MessageRollup, utcnow
from . import jobs

PERIODS = {
    "24h": (_l("Last 24 hours"), "hour", 24),
    "7d": (_l("Last 7 days"), "day", 7),
    "30d": (_l("Last 30 days"), "day", 30),
}
DEFAULT_PERIOD = "24h"
# the chart's series, each counting messages (by their current status) created in a bucket
SERIES = {
    "sent": ("sent",),
    "delivered": ("delivered", "opened"),
    "deferred": ("deferred",),
    "failed": ("failed",),
    "bounced": ("bounced",),
    "suppressed": ("suppressed",),
}
SERIES_LABELS = {
    "sent": _l("sent"), "delivered": _l("delivered or opened"), "deferred": _l("deferred"),
    "failed": _l("failed"), "bounced": _l("bounced"), "suppressed": _l("suppressed"),
}
SERIES_COLOURS = {
    "sent": "#42a5f5", "delivered": "#2e7d32", "deferred": "#ffb300",
    "failed": "#c62828", "bounced": "#8e24aa", "suppressed": "#78909c",
}
FAILURE_STATUSES = ("failed", "bounced")
DAY_MARK = "*"  # rollup row marking a day as computed
ALL_CUSTOMERS = -1  # rollup rows summing every customer (what the chart reads)
SETTLE = timedelta(days=3)
RECOUNT_EVERY = timedelta(minutes=15)
TOP_CUSTOMERS = 5


@dataclass
class Bucket:
    """One bar of the chart: its start, a short label and the count per series."""

    key: str
    label: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """All series together (the height of the stacked bar)."""
        return sum(self.counts.values())


@dataclass
class CustomerFailures:
    """A customer with failed or bounced messages in the period."""

    customer: Customer
    failed: int
    bounced: int
    total: int

    @property
    def failures(self) -> int:
        """Failed plus bounced."""
        return self.failed + self.bounced

    @property
    def rate(self) -> float:
        """Share of the customer's messages that failed or bounced, in percent."""
        return round(100.0 * self.failures / self.total, 1) if self.total else 0.0


@dataclass
class Queue:
    """What waits to be sent now, and what is held."""

    due: int
    queued: int
    deferred: int
    sending: int
    held: int
    oldest_due_at: datetime | None


@dataclass
class Overview:
    """Everything the Home page shows for one period."""

    period: str
    label: str
    unit: str
    since: datetime
    now: datetime
    buckets: list[Bucket]
    totals: dict[str, int]
    top_failures: list[CustomerFailures]
    queue: Queue
    heartbeat_age: float | None
    heartbeat_state: str  # ok | late | never
    banners: list = field(default_factory=list)

    @property
    def total(self) -> int:
        """Messages created in the period."""
        return sum(self.totals.values())

    @property
    def peak(self) -> int:
        """The tallest bar (at least 1, to scale the chart)."""
        return max([b.total for b in self.buckets] + [1])


def parse_period(value: str | None) -> str:
    """A known period key; anything else falls back to the default (24 hours)."""
    return value if value in PERIODS else DEFAULT_PERIOD


def _bucket_expression(unit: str):
    """created_at truncated to the UTC hour or day, on SQLite (as text) and PostgreSQL (as a
    timestamp: grouping on it is twice as fast as on formatted text); see _key."""
    column = Message.created_at
    if db.engine.dialect.name == "postgresql":
        return func.date_trunc(unit, func.timezone("UTC", column))
    # SQLite stores naive UTC text (see models.UTCDateTime)
    return func.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d", column)


def _key(value, unit: str) -> str:
    """A bucket as text: 'YYYY-MM-DD HH:00' for hours, 'YYYY-MM-DD' for days."""
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d")


def count_live(since: datetime, unit: str, until: datetime | None = None) -> dict:
    """{(bucket, status): n} counted from `message` for since <= created_at (< until).

    The status IN-list lets both databases read ix_message_status_created alone
    (status, created_at): an index-only range scan per status, no table rows.
    """
    bucket = _bucket_expression(unit).label("bucket")
    query = (select(bucket, Message.status, func.count())
             .where(Message.status.in_(STATUSES), Message.created_at >= since))
    if until is not None:
        query = query.where(Message.created_at < until)
    query = query.group_by(bucket, Message.status)
    return {(_key(b, unit), s): n for b, s, n in db.session.execute(query)}


def _count_customers(since: datetime, until: datetime | None, statuses) -> dict:
    """{(customer_id, status): n} from `message` for some statuses since a time."""
    query = (select(Message.customer_id, Message.status, func.count())
             .where(Message.status.in_(statuses), Message.created_at >= since))
    if until is not None:
        query = query.where(Message.created_at < until)
    query = query.group_by(Message.customer_id, Message.status)
    return {(c, s): n for c, s, n in db.session.execute(query)}


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")


def _midnight(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _days(first: datetime, last: datetime) -> list[datetime]:
    days, day = [], first
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    return days


def refresh_rollup(first: datetime, last: datetime, now: datetime | None = None) -> int:
    """Count into the rollup the closed days first..last (midnights) that are missing or
    stale; returns how many days were counted. Cheap when everything is fresh."""
    now = now or utcnow()
    days = _days(first, last)
    if not days:
        return 0
    marks = dict(db.session.execute(
        select(MessageRollup.day, MessageRollup.computed_at)
        .where(MessageRollup.status == DAY_MARK,
               MessageRollup.day.in_([_day(d) for d in days]))).all())
    stale = [d for d in days if _needs_count(d, marks.get(_day(d)), now)]
    if stale:
        _recount(stale, now)
    return len(stale)


def _needs_count(day: datetime, computed_at: datetime | None, now: datetime) -> bool:
    """Never counted, or counted while late reports could still move it and 15 min ago."""
    if computed_at is None:
        return True
    settled = day + timedelta(days=1) + SETTLE
    return computed_at < settled and computed_at < now - RECOUNT_EVERY


def _recount(days: list[datetime], now: datetime) -> None:
    """Count the given closed days from `message` and store them in the rollup."""
    wanted = {_day(d) for d in days}
    bucket = _bucket_expression("day").label("bucket")
    rows = db.session.execute(
        select(bucket, Message.customer_id, Message.status, func.count())
        .where(Message.created_at >= min(days),
               Message.created_at < max(days) + timedelta(days=1))
        .group_by(bucket, Message.customer_id, Message.status)).all()
    rows = [(_key(d, "day"), c, s, n) for d, c, s, n in rows]
    try:
        db.session.execute(delete(MessageRollup).where(MessageRollup.day.in_(sorted(wanted))))
        everyone: dict[tuple[str, str], int] = defaultdict(int)
        for d, _c, s, n in rows:
            everyone[(d, s)] += n
        db.session.execute(MessageRollup.__table__.insert(), [
            {"day": d, "customer_id": c, "status": s, "count": n, "computed_at": now}
            for d, c, s, n in rows if d in wanted
        ] + [{"day": d, "customer_id": ALL_CUSTOMERS, "status": s, "count": n,
              "computed_at": now} for (d, s), n in everyone.items() if d in wanted
        ] + [{"day": d, "customer_id": 0, "status": DAY_MARK, "count": 0, "computed_at": now}
             for d in sorted(wanted)])
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another process counted the same days meanwhile: same result


def refresh(now: datetime | None = None) -> int:
    """Keep the rollup of the longest period fresh (scheduled job); returns days counted."""
    now = now or utcnow()
    today = _midnight(now)
    _label, _unit, size = PERIODS["30d"]
    return refresh_rollup(today - timedelta(days=size - 1), today - timedelta(days=1), now)


def _rollup_sum(first: datetime, last: datetime, by, where=()) -> dict:
    """Sum rollup counts of days first..last grouped by `by` columns (marks excluded)."""
    days = [_day(d) for d in _days(first, last)]
    if not days:
        return {}
    query = (select(*by, func.sum(MessageRollup.count))
             .where(MessageRollup.day.in_(days), MessageRollup.status != DAY_MARK, *where)
             .group_by(*by))
    return {tuple(row[:-1]): int(row[-1] or 0) for row in db.session.execute(query)}


def _window(period: str, now: datetime) -> tuple[str, datetime, list[str], datetime,
                                                 datetime | None]:
    """(unit, since, bucket keys, live_from, last rollup day or None) for a period."""
    _label, unit, size = PERIODS[period]
    if unit == "hour":
        top = now.replace(minute=0, second=0, microsecond=0)
        since = top - timedelta(hours=size - 1)
        keys = [(since + timedelta(hours=i)).strftime("%Y-%m-%d %H:00") for i in range(size)]
        return unit, since, keys, since, None
    today = _midnight(now)
    since = today - timedelta(days=size - 1)
    keys = [_day(since + timedelta(days=i)) for i in range(size)]
    return unit, since, keys, today, (today - timedelta(days=1) if since < today else None)


def _counts(period: str, now: datetime) -> tuple[str, datetime, list[str], dict]:
    """(unit, since, bucket keys, {(bucket, status): n}): closed days from the rollup,
    today (or the last 24 hours) counted live."""
    unit, since, keys, live_from, last_closed = _window(period, now)
    counts = count_live(live_from, unit)
    if last_closed is not None:
        refresh_rollup(since, last_closed, now)
        for (day, status), n in _rollup_sum(
                since, last_closed, (MessageRollup.day, MessageRollup.status),
                (MessageRollup.customer_id == ALL_CUSTOMERS,)).items():
            counts[(day, status)] = counts.get((day, status), 0) + n
    return unit, since, keys, counts


def _top_failures(period: str, now: datetime) -> list[CustomerFailures]:
    """The customers with most failed or bounced messages in the period, with their totals."""
    _unit, since, _keys, live_from, last_closed = _window(period, now)
    failures: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    parts = [_count_customers(live_from, None, FAILURE_STATUSES)]
    if last_closed is not None:
        parts.append(_rollup_sum(since, last_closed,
                                 (MessageRollup.customer_id, MessageRollup.status),
                                 (MessageRollup.status.in_(FAILURE_STATUSES),
                                  MessageRollup.customer_id != ALL_CUSTOMERS)))
    for part in parts:
        for (customer_id, status), n in part.items():
            failures[customer_id][status] += n
    ranked = sorted(failures, key=lambda cid: (-sum(failures[cid].values()), cid))
    ranked = ranked[:TOP_CUSTOMERS]
    if not ranked:
        return []
    totals: dict[int, int] = dict(db.session.execute(
        select(Message.customer_id, func.count())
        .where(Message.customer_id.in_(ranked), Message.created_at >= live_from)
        .group_by(Message.customer_id)).all())
    if last_closed is not None:
        for (customer_id,), n in _rollup_sum(since, last_closed, (MessageRollup.customer_id,),
                                             (MessageRollup.customer_id.in_(ranked),)).items():
            totals[customer_id] = totals.get(customer_id, 0) + n
    names = {c.id: c for c in db.session.scalars(select(Customer).where(Customer.id.in_(ranked)))}
    return [CustomerFailures(names[cid], failures[cid]["failed"], failures[cid]["bounced"],
                             totals.get(cid, 0)) for cid in ranked if cid in names]


def queue_depth(now: datetime | None = None) -> Queue:
    """Due now (queued or deferred whose time has come), queued, deferred, sending, held."""
    now = now or utcnow()
    by_status = dict(db.session.execute(
        select(Message.status, func.count())
        .where(Message.status.in_(("queued", "deferred", "sending", "held")))
        .group_by(Message.status)).all())
    due, oldest = db.session.execute(
        select(func.count(), func.min(Message.next_attempt_at))
        .where(Message.status.in_(("queued", "deferred")), Message.next_attempt_at <= now)).one()
    return Queue(due or 0, by_status.get("queued", 0), by_status.get("deferred", 0),
                 by_status.get("sending", 0), by_status.get("held", 0), oldest)


def heartbeat() -> tuple[float | None, str]:
    """Seconds since the worker's last sweep, and ok / late / never."""
    age = jobs.heartbeat_age_seconds()
    if age is None:
        return None, "never"
    limit = max(60.0, 6 * float(current_app.config.get("POSTINO_SWEEP_SECONDS", 5)))
    return age, "ok" if age <= limit else "late"


def _label(key: str, unit: str) -> str:
    return key[11:16] if unit == "hour" else f"{key[8:10]}/{key[5:7]}"


def overview(period: str | None = None, now: datetime | None = None,
             with_banners: bool = True) -> Overview:
    """The Home figures for a period (24h, 7d or 30d)."""
    period = parse_period(period)
    now = now or utcnow()
    unit, since, keys, counts = _counts(period, now)
    series_of = {status: name for name, statuses in SERIES.items() for status in statuses}
    per_bucket: dict[str, dict[str, int]] = {k: dict.fromkeys(SERIES, 0) for k in keys}
    totals: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for (bucket, status), n in counts.items():
        if bucket not in per_bucket:
            continue
        totals[status] = totals.get(status, 0) + n
        if status in series_of:
            per_bucket[bucket][series_of[status]] += n
    top = _top_failures(period, now)
    age, state = heartbeat()
    banners = []
    if with_banners and has_request_context():  # banners carry URLs: web only
        from .banners import active_banners

        banners = active_banners()
    return Overview(
        period=period, label=str(PERIODS[period][0]), unit=unit, since=since, now=now,
        buckets=[Bucket(k, _label(k, unit), per_bucket[k]) for k in keys],
        totals=totals, top_failures=top, queue=queue_depth(now), heartbeat_age=age,
        heartbeat_state=state, banners=banners,
    )


@dataclass
class Chart:
    """Geometry of the stacked bar chart, computed here so the template only draws."""

    width: int
    height: int
    left: int
    bottom: int
    plot_height: int
    bars: list[dict]
    ticks: list[dict]
    labels: list[dict]


def chart(data: Overview, width: int = 760, height: int = 260) -> Chart:
    """Stacked bars per bucket, y ticks at 0, half and peak, every n-th x label."""
    left, right, top, bottom = 48, 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    count = max(len(data.buckets), 1)
    slot = plot_w / count
    bar_w = max(slot * 0.7, 1.0)
    peak = data.peak
    bars, labels = [], []
    every = 1 if count <= 10 else (3 if count <= 24 else 5)
    for index, bucket in enumerate(data.buckets):
        x = left + index * slot + (slot - bar_w) / 2
        y = top + plot_h
        segments = []
        for name in SERIES:
            n = bucket.counts[name]
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            segments.append({"series": name, "n": n, "x": round(x, 1), "y": round(y, 1),
                             "w": round(bar_w, 1), "h": round(max(h, 0.5), 1),
                             "colour": SERIES_COLOURS[name]})
        bars.append({"bucket": bucket, "segments": segments})
        if index % every == 0 or index == count - 1:
            labels.append({"x": round(x + bar_w / 2, 1), "text": bucket.label})
    ticks = [{"y": round(top + plot_h - plot_h * v / peak, 1), "value": v}
             for v in sorted({0, peak // 2, peak})]
    return Chart(width, height, left, top + plot_h, plot_h, bars, ticks, labels)
