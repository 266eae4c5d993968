"""Per-transport sending lanes and rate limits, shared by every worker through the database.

A transport is our relay or one customer's own server (modes.transport_key). Each has a
number of lanes (connections a worker opens to it at once) and optional limits: messages
per second, minute, hour and day, as the provider counts them (Microsoft 365: 30 a minute
and 10,000 a day; Google Workspace: 2,000 a day; Amazon SES: the account's rate per second).

Limits are sliding windows, exact across workers: each send of a limited transport takes
the next sequence number of its `rate_state` row (the row lock serialises the workers) and
writes a `rate_slot` (sequence, time). A window of N messages per T seconds allows the send
when slot number seq−N is older than T: one primary-key read per window, however many
messages the window holds. The windows are stretched by WINDOW_MARGIN (2 %, at least 50 ms)
so that the server, which counts arrivals a few milliseconds after our reservation, never
sees N+1. A send that is not allowed is not an error: the message waits, queued, until the
time the window frees (see `waiting`).

A quota refusal (the classifier's account_transport class, reason quota or rate_limited)
slows the transport down for SLOWDOWN_MINUTES: its limits are halved (again for each later
refusal, down to 1/32), and it pauses for PAUSE_SECONDS × 2^(level−1) at once, since the
provider's window is full right now. A transport without limits gets the pause only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, insert, select, update

from ...extensions import db
from ...models import Customer, Message, RateSlot, RateState, utcnow

WINDOWS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
MAX_LIMIT = 10_000_000
MAX_LANES = 64
RELAY_LANES = 8  # our relay takes many connections at once
CUSTOMER_LANES = 2  # a customer's own server (often a mailbox provider) fewer
SLOWDOWN_MINUTES = 15
PAUSE_SECONDS = 30
MAX_SLOWDOWN = 5
QUOTA_REASONS = ("quota", "rate_limited")
RELAY_WAITING = "rate_limited_relay"
CUSTOMER_WAITING = "rate_limited_customer"

# Providers' published limits (2026): a starting point the admin can edit.
PRESETS: dict[str, dict] = {
    "microsoft365": {"label": _l("Microsoft 365 / Exchange Online (30 a minute, 10,000 a day)"),
                     "limits": {"minute": 30, "day": 10_000}},
    "google_workspace": {"label": _l("Google Workspace (2,000 a day)"),
                         "limits": {"day": 2_000}},
    "google_trial": {"label": _l("Gmail, or a Google Workspace trial (500 a day)"),
                     "limits": {"day": 500}},
    "amazon_ses": {"label": _l("Amazon SES (14 a second: put your account's rate)"),
                   "limits": {"second": 14}},
    "amazon_ses_sandbox": {"label": _l("Amazon SES sandbox (1 a second, 200 a day)"),
                           "limits": {"second": 1, "day": 200}},
    "custom": {"label": _l("Custom (the values below)"), "limits": None},
}


def window_margin(seconds: float) -> float:
    """How much longer than its nominal length a window is kept."""
    return max(0.05, seconds * 0.02)


@dataclass(frozen=True)
class Policy:
    """A transport's lanes and limits as configured ({window name: messages})."""

    key: str
    lanes: int
    limits: dict = field(default_factory=dict)

    @property
    def limited(self) -> bool:
        return bool(self.limits)


def clean_limits(raw: dict | None) -> dict:
    """Only the known windows with a positive whole number."""
    clean = {}
    for name, _seconds in WINDOWS:
        value = (raw or {}).get(name)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_LIMIT:
            clean[name] = value
    return clean


def relay_policy() -> Policy:
    """Our relay's lanes and limits (Settings)."""
    from ..core import settings

    return Policy("relay", int(settings.get("relay_lanes") or RELAY_LANES),
                  clean_limits(settings.get("relay_rate_limits")))


def policy_for(customer: Customer) -> Policy:
    """The lanes and limits of the transport this customer's mail goes through."""
    if customer.sending_mode != "customer_smtp":
        return relay_policy()
    return Policy(f"customer:{customer.id}", int(customer.smtp_lanes or CUSTOMER_LANES),
                  clean_limits(customer.rate_limits))


@dataclass
class Slowdown:
    """A transport's slow-down after quota refusals, as read from its rate_state row."""

    level: int = 0
    at: datetime | None = None
    until: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.level > 0 and self.until is not None and self.until > now

    def pause_end(self) -> datetime | None:
        if not self.level or self.at is None:
            return None
        return self.at + timedelta(seconds=PAUSE_SECONDS * 2 ** (self.level - 1))


def slowdown(key: str) -> Slowdown:
    """The slow-down in force for a transport (level 0 when none)."""
    with db.engine.connect() as connection:
        row = connection.execute(select(RateState.slowdown, RateState.slowdown_at,
                                        RateState.slowdown_until)
                                 .where(RateState.key == key)).first()
    if row is None:
        return Slowdown()
    found = Slowdown(row.slowdown or 0, row.slowdown_at, row.slowdown_until)
    return found if found.active(utcnow()) else Slowdown()


def effective(limits: dict, level: int) -> dict:
    """The limits with a slow-down of `level` halvings (never below one message)."""
    return {name: max(1, n >> level) for name, n in limits.items()}


def _ensure_row(connection, key: str) -> None:
    """The transport's rate_state row, created on first use (two workers may race: the
    loser's INSERT does nothing)."""
    exists = connection.execute(select(RateState.key).where(RateState.key == key)).first()
    if exists is None:
        dialect = connection.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert
        connection.execute(upsert(RateState).values(key=key, seq=0, slowdown=0)
                           .on_conflict_do_nothing())


def reserve(policy: Policy, now: datetime | None = None) -> datetime | None:
    """Take one send of `policy`'s transport: None when it may go now (counted), else the
    earliest time its windows (or a slow-down's pause) allow one (nothing counted).

    One short transaction on a connection of its own; the UPDATE of the transport's
    rate_state row is the lock that makes concurrent workers take turns."""
    take = (update(RateState).where(RateState.key == policy.key)
            .values(seq=RateState.seq + 1)
            .returning(RateState.seq, RateState.slowdown, RateState.slowdown_at,
                       RateState.slowdown_until))
    with db.engine.connect() as connection:
        row = connection.execute(take).first()
        if row is None:  # the transport's first send: its row is created once
            connection.rollback()
            _ensure_row(connection, policy.key)
            connection.commit()
            row = connection.execute(take).one()
        now = now or utcnow()
        state = Slowdown(row.slowdown or 0, row.slowdown_at, row.slowdown_until)
        level = state.level if state.active(now) else 0
        wait_until = None
        if level:
            pause_end = state.pause_end()
            if pause_end is not None and pause_end > now:
                wait_until = pause_end
        limits = effective(policy.limits, level)
        seconds = dict(WINDOWS)
        if wait_until is None and limits:
            wanted = {row.seq - n: seconds[name] for name, n in limits.items()}
            found = dict(connection.execute(
                select(RateSlot.seq, RateSlot.at).where(RateSlot.key == policy.key,
                                                        RateSlot.seq.in_(list(wanted)))).all())
            for seq, window in wanted.items():
                at = found.get(seq)
                if at is None:
                    continue
                free_at = at + timedelta(seconds=window + window_margin(window))
                if free_at > now and (wait_until is None or free_at > wait_until):
                    wait_until = free_at
        if wait_until is not None:
            connection.rollback()  # the sequence number is not taken
            return wait_until
        if policy.limits:
            connection.execute(insert(RateSlot).values(key=policy.key, seq=row.seq, at=now))
            longest = max(seconds[name] for name in policy.limits)
            keep = max(policy.limits.values())
            connection.execute(delete(RateSlot).where(
                RateSlot.key == policy.key, RateSlot.seq <= row.seq - keep,
                RateSlot.at < now - timedelta(seconds=longest + window_margin(longest))))
        connection.commit()
    return None


def spacing(policy: Policy, level: int = 0) -> float:
    """Seconds between two sends at the tightest limit's average rate (0 when unlimited)."""
    limits = effective(policy.limits, level)
    seconds = dict(WINDOWS)
    return max((seconds[name] / n for name, n in limits.items()), default=0.0)


def quota_refused(key: str, started_at: datetime, reply: str) -> bool:
    """A quota refusal for a send that started at `started_at`: slow the transport down.

    Returns True when it is news (the send started after the last slow-down began), False
    for the refusals of sends already in flight when an earlier one slowed it down: those
    neither deepen the slow-down nor count for the circuit breaker."""
    now = utcnow()
    with db.engine.connect() as connection:
        _ensure_row(connection, key)
        row = connection.execute(
            select(RateState.slowdown, RateState.slowdown_at, RateState.slowdown_until)
            .where(RateState.key == key).with_for_update()).one()
        state = Slowdown(row.slowdown or 0, row.slowdown_at, row.slowdown_until)
        if state.active(now) and state.at is not None and started_at <= state.at:
            connection.rollback()
            return False
        level = min(MAX_SLOWDOWN, (state.level if state.active(now) else 0) + 1)
        connection.execute(update(RateState).where(RateState.key == key).values(
            slowdown=level, slowdown_at=now,
            slowdown_until=now + timedelta(minutes=SLOWDOWN_MINUTES),
            slowdown_reply=reply[:1000]))
        connection.commit()
    return True


def is_quota(verdict) -> bool:
    """The classifier's verdict says the account's quota or rate was exceeded."""
    from ..bounces import fault

    return (verdict is not None and verdict.fault_class == fault.ACCOUNT_TRANSPORT
            and verdict.reason in QUOTA_REASONS)


@dataclass
class Waiting:
    """Messages of one transport queued until its rate limit allows them."""

    transport: str  # "relay" or the customer's code
    count: int
    next_at: datetime | None
    last_at: datetime | None


def waiting() -> list[Waiting]:
    """Queued messages waiting for a rate limit, per transport, with the expected times."""
    prefixes = [f'{{"code":"{code}"%' for code in (RELAY_WAITING, CUSTOMER_WAITING)]
    rows = db.session.execute(
        select(Message.customer_id, Message.status_reason.like(prefixes[0]).label("relay"),
               func.count(), func.min(Message.next_attempt_at),
               func.max(Message.next_attempt_at))
        .where(Message.status == "queued",
               Message.status_reason.like(prefixes[0]) | Message.status_reason.like(prefixes[1]))
        .group_by(Message.customer_id, "relay")).all()
    codes = dict(db.session.execute(select(Customer.id, Customer.code).where(
        Customer.id.in_({r[0] for r in rows}))).all()) if rows else {}
    merged: dict[str, Waiting] = {}
    for customer_id, relay, count, first, last in rows:
        name = "relay" if relay else codes.get(customer_id, str(customer_id))
        entry = merged.setdefault(name, Waiting(name, 0, None, None))
        entry.count += count
        entry.next_at = min(filter(None, (entry.next_at, first)), default=None)
        entry.last_at = max(filter(None, (entry.last_at, last)), default=None)
    return sorted(merged.values(), key=lambda w: (w.transport != "relay", w.transport))

