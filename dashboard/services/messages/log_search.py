"""Log search: one box that understands what is typed, filters, keyset pages newest first.

The box takes a message id (24 hex digits), an address or its prefix (anything with "@"),
or otherwise a reference / order number prefix (also tried as an address prefix). Prefixes
are byte-wise ranges (`col >= p AND col < p_next`) on normalised columns, so they use an
index on SQLite and PostgreSQL alike (text_pattern_ops there, hence the ~>=~ operators).

Plans are chosen here, not left to chance: a term that matches few messages is read through
its own index and sorted; a term that matches many is checked while walking the time index
newest first. `coalesce(col, col)` hides a column from the planner so it cannot pick the
other plan (SQLite has no statistics to choose well, PostgreSQL may use generic plans).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select, union, union_all

from ...addresses import canonical
from ...extensions import db
from ...models import (
    EVENTS,
    SENDING_MODES,
    STATUSES,
    Customer,
    Message,
    normalise_reference,
    utcnow,
)

PAGE_SIZE = 50
COUNT_CAP = 1000
TERM_CAP = 5000  # above this many matches a term is checked along the time index
DEFAULT_DAYS = 7
PUBLIC_ID_RE = re.compile(r"^[0-9a-f]{24}$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIST_COLUMNS = (
    Message.id, Message.public_id, Message.customer_id, Message.event, Message.reference,
    Message.recipient, Message.subject, Message.status, Message.status_reason, Message.attempts,
    Message.created_at, Message.transport, Message.resend_of_id, Message.last_smtp_code,
    Message.last_smtp_text, Message.sent_at, Message.suppression_id, Message.fault_class,
    Message.fault_reason, Message.test, Message.next_attempt_at,
)


@dataclass(frozen=True)
class Search:
    """What the user asked for: the box, the filters and where in the pages they are."""

    q: str = ""
    customer_id: int | None = None
    event: str | None = None
    status: str | None = None
    mode: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    before: tuple[datetime, int] | None = None
    after: tuple[datetime, int] | None = None

    @property
    def kind(self) -> str:
        """How the box is read: 'all', 'id', 'address' or 'text' (reference or address)."""
        term = normalise_term(self.q)
        if not term:
            return "all"
        if PUBLIC_ID_RE.match(term.lower()):
            return "id"
        if "@" in term:
            return "address"
        return "text"

    def args(self, **overrides) -> dict:
        """The search as URL arguments (for links: pages, export, bulk resend)."""
        values = {
            "q": self.q or None,
            "customer": self.customer_id,
            "event": self.event,
            "status": self.status,
            "mode": self.mode,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else None,
        }
        values.update(overrides)
        return {k: v for k, v in values.items() if v is not None}


@dataclass
class Page:
    """One page of results, newest first, with the cursors to its neighbours."""

    search: Search
    messages: list[Message]
    count: int
    count_capped: bool
    older: str | None = None
    newer: str | None = None
    plan: str = ""
    customers: dict[int, Customer] = field(default_factory=dict)
    resent_ids: set[int] = field(default_factory=set)


def normalise_term(value: str | None) -> str:
    """The box's text without any whitespace (references and addresses have none)."""
    return "".join((value or "").split())


def default_from(today: date | None = None) -> date:
    """The first day of the default range: the last 7 days, today included."""
    today = today or utcnow().date()
    return today - timedelta(days=DEFAULT_DAYS - 1)


def encode_cursor(message: Message) -> str:
    """A keyset cursor: microseconds since the epoch and the id, e.g. 1767225600000000_42."""
    created = message.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    micros = (created - EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{message.id}"


def decode_cursor(value: str | None) -> tuple[datetime, int] | None:
    """The (created_at, id) of a cursor, or None when it is absent or malformed."""
    if not value:
        return None
    micros, _, ident = value.partition("_")
    try:
        return EPOCH + timedelta(microseconds=int(micros)), int(ident)
    except (ValueError, OverflowError):
        return None


def parse(args: Mapping[str, str], today: date | None = None) -> tuple[Search, dict[str, str]]:
    """Read the search from URL arguments; returns the search and errors by field."""
    errors: dict[str, str] = {}
    args = {key: "" if value is None else str(value) for key, value in dict(args).items()}

    def choice(name: str, allowed) -> str | None:
        value = (args.get(name) or "").strip()
        if not value:
            return None
        if value not in allowed:
            errors[name] = "unknown value"
            return None
        return value

    def day(name: str) -> date | None:
        value = (args.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors[name] = "not a date (YYYY-MM-DD)"
            return None

    customer_id = None
    raw_customer = (args.get("customer") or "").strip()
    if raw_customer:
        if raw_customer.isdigit():
            customer_id = int(raw_customer)
        else:
            errors["customer"] = "unknown value"
    date_from = day("from") if "from" in args else default_from(today)
    date_to = day("to")
    if date_from and date_to and date_to < date_from:
        errors["to"] = "before the start date"
    q = (args.get("q") or "").strip()[:320]
    search = Search(
        q=q, customer_id=customer_id, event=choice("event", EVENTS),
        status=choice("status", STATUSES), mode=choice("mode", SENDING_MODES),
        date_from=date_from, date_to=date_to,
        before=decode_cursor(args.get("before")), after=decode_cursor(args.get("after")),
    )
    return search, errors


# --- query building -------------------------------------------------------------------------


def _postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def _hidden(column):
    """The column as an expression no index serves: steers the planner to another index."""
    return func.coalesce(column, column)


def _prefix(column, prefix: str, indexed: bool = True):
    """`column` starts with `prefix`, as a byte-wise range an index can serve."""
    target = column if indexed else _hidden(column)
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    if _postgresql():
        return and_(target.op("~>=~")(prefix), target.op("~<~")(upper))
    return and_(target >= prefix, target < upper)


def _term_conditions(search: Search, indexed: bool) -> list:
    """The box's conditions, one per index that serves them (a match on any is a match)."""
    term = normalise_term(search.q)
    kind = search.kind
    if kind == "address":  # info@xn--mller-kva.de finds info@müller.de (stored form)
        return [_prefix(Message.recipient, canonical(term), indexed)]
    if kind == "text":
        return [_prefix(Message.reference_norm, normalise_reference(term), indexed),
                _prefix(Message.recipient, canonical(term), indexed)]
    return []


def _time_bounds(search: Search) -> tuple[datetime | None, datetime | None]:
    start = end = None
    if search.date_from:
        start = datetime.combine(search.date_from, time(), tzinfo=UTC)
    if search.date_to:
        end = datetime.combine(search.date_to + timedelta(days=1), time(), tzinfo=UTC)
    return start, end


def _has_other_filters(search: Search) -> bool:
    return any(v is not None for v in (search.customer_id, search.event, search.status,
                                       search.mode))


def _filters(search: Search, indexed: bool = True) -> list:
    """Every condition except the box's and the cursor; `indexed=False` hides them all."""
    def col(column):
        return column if indexed else _hidden(column)

    conditions = []
    start, end = _time_bounds(search)
    if search.kind != "id":
        if start is not None:
            conditions.append(col(Message.created_at) >= start)
        if end is not None:
            conditions.append(col(Message.created_at) < end)
    if search.customer_id is not None:
        conditions.append(col(Message.customer_id) == search.customer_id)
    if search.event:
        conditions.append(col(Message.event) == search.event)
    if search.status:
        conditions.append(col(Message.status) == search.status)
    if search.mode:
        conditions.append(col(Message.transport) == search.mode)
    return conditions


def _keyset(cursor: tuple[datetime, int], older: bool, indexed: bool):
    """Rows strictly older (or newer) than the cursor; the first half is an index range."""
    created = Message.created_at if indexed else _hidden(Message.created_at)
    at, ident = cursor
    if older:
        return and_(created <= at, or_(created < at, Message.id < ident))
    return and_(created >= at, or_(created > at, Message.id > ident))


def _matching(search: Search, plan: str, keyset=None):
    """A subquery of (id, created_at) of the matches, built for the plan.

    'term': one branch per term index, each walking only its index (UNION removes doubles),
    every other condition hidden from the planner; 'time' and 'id': a single select.
    """
    if plan == "id":
        where = [Message.public_id == normalise_term(search.q).lower()]
        return select(Message.id, Message.created_at).where(*where)
    if plan == "term":
        branches = []
        for term in _term_conditions(search, indexed=True):
            where = [term, *_filters(search, indexed=False)]
            if keyset is not None:
                where.append(_keyset(*keyset, indexed=False))
            branches.append(select(Message.id, Message.created_at).where(*where))
        return branches[0] if len(branches) == 1 else union(*branches)
    where = _filters(search, indexed=True)
    terms = _term_conditions(search, indexed=False)
    if terms:
        where.append(or_(*terms) if len(terms) > 1 else terms[0])
    if keyset is not None:
        where.append(_keyset(*keyset, indexed=True))
    return select(Message.id, Message.created_at).where(*where)


def _capped_count(query, cap: int, newest_first: bool = False) -> int:
    """How many rows a select yields, counting at most cap + 1 (a count of 1M is not needed).

    `newest_first` walks the time index from the newest end: without it PostgreSQL may read
    the table from its (oldest) start to find cap rows of the last days.
    """
    if newest_first:
        query = query.order_by(Message.created_at.desc(), Message.id.desc())
    inner = query.limit(cap + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(inner)) or 0


def probe(search: Search, cap: int = TERM_CAP) -> int:
    """Matches of the box's term in the date range, index-only, counted up to cap + 1."""
    start, end = _time_bounds(search)
    branches = []
    for term in _term_conditions(search, indexed=True):
        where = [term]
        if start is not None:
            where.append(Message.created_at >= start)
        if end is not None:
            where.append(Message.created_at < end)
        branches.append(select(Message.id).where(*where))
    if not branches:
        return 0
    # UNION ALL streams (a UNION would read every match to remove doubles before the limit);
    # a message counted twice only makes the probe more cautious.
    query = branches[0] if len(branches) == 1 else union_all(*branches)
    return _capped_count(query, cap)


def choose_plan(search: Search) -> tuple[str, int | None]:
    """('id'|'term'|'time', probe): a term's own index when it is selective, else time order."""
    kind = search.kind
    if kind == "id":
        return "id", None
    if kind == "all":
        return "time", None
    found = probe(search)
    return ("term" if found <= TERM_CAP else "time"), found


def _page_ids(search: Search, plan: str, limit: int, keyset=None, newest_first=True):
    """A select of the ids of one page of matches (for use in `id IN (…)`)."""
    if plan == "term":  # sort the (few) matches found through the term's index
        matching = _matching(search, plan, keyset).subquery()
        created, ident = matching.c.created_at, matching.c.id
        query = select(ident)
    else:  # walk the time index in order (customer/status indexes when filtered)
        query = _matching(search, plan, keyset).with_only_columns(Message.id)
        created, ident = Message.created_at, Message.id
    order = (created.desc(), ident.desc()) if newest_first else (created.asc(), ident.asc())
    return query.order_by(*order).limit(limit)


def _page_rows(search: Search, plan: str, limit: int, keyset=None, newest_first=True,
               columns=None) -> list:
    """The listed columns of one page of matches, newest first, in one statement."""
    columns = tuple(columns or LIST_COLUMNS)
    if plan == "term" or not newest_first:
        ids = _page_ids(search, plan, limit, keyset, newest_first).scalar_subquery()
        query = select(*columns).where(Message.id.in_(ids))
    else:
        query = _matching(search, plan, keyset).with_only_columns(*columns).limit(limit)
    query = query.order_by(Message.created_at.desc(), Message.id.desc())
    return db.session.execute(query).all()


def run(search: Search, page_size: int = PAGE_SIZE) -> Page:
    """One page of the search, newest first, with a capped count and keyset cursors."""
    plan, found = choose_plan(search)
    going_back = search.after is not None and search.before is None
    keyset = None
    if search.before is not None:
        keyset = (search.before, True)
    elif going_back:
        keyset = (search.after, False)
    rows = _page_rows(search, plan, page_size + 1, keyset, newest_first=not going_back)
    more = len(rows) > page_size
    rows = rows[1:] if going_back and more else rows[:page_size]
    has_older = more if not going_back else True
    has_newer = (search.before is not None) if not going_back else more
    if found is not None and not _has_other_filters(search) and (
            plan == "time" or len(_term_conditions(search, True)) == 1):
        count = found  # the probe counted these matches (over TERM_CAP: surely over the cap)
    else:
        count = _capped_count(_matching(search, plan), COUNT_CAP, newest_first=plan == "time")
    customers, resent_ids = {}, set()
    if rows:
        customers = {c.id: c for c in db.session.execute(
            select(Customer.id, Customer.code, Customer.name)
            .where(Customer.id.in_({m.customer_id for m in rows})))}
        resent_ids = set(db.session.scalars(select(Message.resend_of_id).where(
            Message.resend_of_id.in_([m.id for m in rows])).distinct()))
    return Page(
        search=search, messages=rows, count=min(count, COUNT_CAP),
        count_capped=count > COUNT_CAP, plan=plan, customers=customers, resent_ids=resent_ids,
        older=encode_cursor(rows[-1]) if rows and has_older else None,
        newer=encode_cursor(rows[0]) if rows and has_newer else None,
    )


def iter_matches(search: Search, limit: int | None = None, batch: int = 500,
                 columns=LIST_COLUMNS) -> Iterator:
    """Every match as a plain row, newest first, read in keyset batches (export, bulk)."""
    search = replace(search, before=None, after=None)
    plan, _found = choose_plan(search)
    keyset = None
    seen = 0
    while True:
        size = batch if limit is None else min(batch, limit - seen)
        if size <= 0:
            return
        columns = tuple(columns)
        if Message.id not in columns or Message.created_at not in columns:
            columns += (Message.id, Message.created_at)
        rows = _page_rows(search, plan, size, keyset, columns=columns)
        yield from rows
        seen += len(rows)
        if len(rows) < size:
            return
        keyset = ((rows[-1].created_at, rows[-1].id), True)


def count(search: Search, cap: int = COUNT_CAP) -> int:
    """How many messages the search matches, at most cap + 1."""
    search = replace(search, before=None, after=None)
    plan, _found = choose_plan(search)
    return _capped_count(_matching(search, plan), cap, newest_first=plan == "time")


def customer_choices() -> list:
    """Customers for the filter, by code: (id, code, name) rows."""
    return db.session.execute(
        select(Customer.id, Customer.code, Customer.name).order_by(Customer.code)).all()
