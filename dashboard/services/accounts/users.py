"""Staff users: creation, role changes, deactivation, login throttling."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import cache

from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from ...extensions import db
from ...models import ROLES, LoginAttempt, User, utcnow
from .. import ServiceError
from ..core import audit

THROTTLE_WINDOW = timedelta(minutes=15)
FIRST_DELAY = timedelta(seconds=2)
MIN_PASSWORD = 8


def normalise_email(email: str, field: str = "email") -> str:
    """Lowercase, trimmed, syntactically valid address (no DNS lookups)."""
    email = (email or "").strip()
    try:
        return validate_email(email, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ServiceError(_l("Enter a valid email address."), field) from None


def create_user(
    email: str, role: str, password: str, name: str = "", language: str | None = None,
    actor: User | None = None,
) -> User:
    """Create a staff user; fails on a bad address, unknown role, short password or duplicate."""
    email = normalise_email(email)
    if role not in ROLES:
        raise ServiceError(_l("Role must be one of %(roles)s.", roles=", ".join(ROLES)), "role")
    if len(password or "") < MIN_PASSWORD:
        raise ServiceError(
            _l("The password must be at least %(n)d characters long.", n=MIN_PASSWORD), "password"
        )
    if db.session.scalar(select(User).where(User.email == email)):
        raise ServiceError(_l("A user with this email already exists."), "email")
    user = User(email=email, role=role, name=name.strip(), language=language, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", actor, "user", user.id, after={"email": email, "role": role})
    db.session.commit()
    return user


def update_user(user: User, actor: User | None, role: str | None = None,
                active: bool | None = None) -> User:
    """Change a user's role or active flag, audited; admins cannot lock themselves out."""
    before = {"role": user.role, "active": user.active}
    if role is not None:
        if role not in ROLES:
            raise ServiceError(_l("Role must be one of %(roles)s.", roles=", ".join(ROLES)),
                               "role")
        if actor is not None and actor.id == user.id and role != "admin":
            raise ServiceError(_l("You cannot remove your own admin role."), "role")
        user.role = role
    if active is not None:
        if actor is not None and actor.id == user.id and not active:
            raise ServiceError(_l("You cannot deactivate yourself."), "active")
        user.active = active
    after = {"role": user.role, "active": user.active}
    old, new = audit.diff(before, after)
    if new:
        audit.record("user.update", actor, "user", user.id, before=old, after=new)
    db.session.commit()
    return user


def set_language(user: User, language: str) -> None:
    """Remember the UI language the user picked."""
    from ...i18n import LANGUAGES

    if language not in LANGUAGES:
        raise ServiceError(_l("Unknown language."), "language")
    user.language = language
    db.session.commit()


@cache
def _dummy_hash() -> str:
    """A hash to check unknown addresses against, made once per process."""
    return generate_password_hash("no such account", method="scrypt")


@dataclass(frozen=True)
class Throttle:
    """How one key (an account, a client address) is slowed: `free` failures in the window,
    then a wait that doubles from FIRST_DELAY with every further failure, up to `longest`."""

    free: int
    longest: timedelta

    def wait(self, failures: int, last_failure, now) -> float:
        """Seconds still to wait before the next attempt (0: go ahead)."""
        if failures < self.free or last_failure is None:
            return 0.0
        exponent = min(failures - self.free, 20)
        delay = min(FIRST_DELAY * 2 ** exponent, self.longest)
        return max((last_failure + delay - now).total_seconds(), 0.0)


# The account owner is slowed, never locked out: at most a minute after the last wrong
# password. A client address, which may try many accounts, is slowed up to 15 minutes;
# ten free failures leave room for an office behind one address.
ACCOUNT = Throttle(free=5, longest=timedelta(minutes=1))
ADDRESS = Throttle(free=10, longest=timedelta(minutes=15))


@dataclass
class LoginResult:
    """The outcome of a login attempt: the user, or None; `wait` > 0 when the throttle
    refused it before the password was checked."""

    user: User | None
    wait: float = 0.0


def _lock_keys(email: str, ip: str | None) -> None:
    """PostgreSQL: serialise attempts on the same account or address until commit (SQLite
    serialises them by the INSERT's write lock)."""
    if db.engine.dialect.name != "postgresql":
        return
    keys = sorted({_advisory_key(f"login:account:{email}"),
                   *([_advisory_key(f"login:address:{ip}")] if ip else [])})
    for key in keys:  # always in the same order: two attempts never deadlock
        db.session.execute(select(func.pg_advisory_xact_lock(key)))


def _advisory_key(name: str) -> int:
    """A signed 64-bit lock key for a name."""
    digest = hashlib.sha256(f"postino:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _failures(column, value, since, exclude_id: int) -> tuple[int, object]:
    """Counted failures for one key since `since`: how many, and the latest one's time."""
    count, latest = db.session.execute(
        select(func.count(LoginAttempt.id), func.max(LoginAttempt.at)).where(
            column == value, LoginAttempt.success.is_(False),
            LoginAttempt.throttled.is_(False), LoginAttempt.at >= since,
            LoginAttempt.id != exclude_id)).one()
    if latest is not None and latest.tzinfo is None:
        latest = latest.replace(tzinfo=UTC)
    return count, latest


def _wait(email: str, ip: str | None, attempt_id: int, now) -> float:
    """The longest wait owed by this account and this address (0: the attempt may go on)."""
    since = now - THROTTLE_WINDOW
    # a successful login ends the account's series of failures (not the address's: an
    # attacker with one account of their own could otherwise reset it between guesses)
    last_success = db.session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.email == email, LoginAttempt.success.is_(True)))
    if last_success is not None:
        last_success = last_success.replace(tzinfo=last_success.tzinfo or UTC)
        since = max(since, last_success)
    wait = ACCOUNT.wait(*_failures(LoginAttempt.email, email, since, attempt_id), now)
    if ip:
        wait = max(wait, ADDRESS.wait(*_failures(LoginAttempt.ip, ip, now - THROTTLE_WINDOW,
                                                 attempt_id), now))
    return wait


def attempt_login(email: str, password: str, ip: str | None = None) -> LoginResult:
    """Check a login under the throttle, recording the attempt; same answer for every failure.

    The attempt is recorded as a failure and the throttle checked in one serialised
    transaction before the password is, so two concurrent attempts cannot both slip under
    the limit; it becomes a success only once the password matched.
    """
    email = (email or "").strip().lower()[:320]
    ip = (ip or "")[:64] or None
    db.session.commit()  # whatever the request read so far: the check starts afresh
    now = utcnow()
    _lock_keys(email, ip)
    attempt = LoginAttempt(email=email, ip=ip, success=False, at=now)
    db.session.add(attempt)
    db.session.flush()  # SQLite: the write lock is held from here to the commit
    wait = _wait(email, ip, attempt.id, now)
    attempt.throttled = wait > 0
    db.session.commit()
    if wait > 0:
        return LoginResult(None, wait)
    user = authenticate(email, password, record=False)
    if user is not None:
        db.session.execute(update(LoginAttempt).where(LoginAttempt.id == attempt.id)
                           .values(success=True))
        user.last_login_at = utcnow()
        db.session.commit()
    return LoginResult(user)


def authenticate(email: str, password: str, ip: str | None = None, *,
                 record: bool = True) -> User | None:
    """Check a password (no throttle: `attempt_login` is what the login page uses); records
    the attempt unless told not to. Returns the user, or None (same for every failure)."""
    email = (email or "").strip().lower()
    user = db.session.scalar(select(User).where(User.email == email))
    # Always pay for one hash check, so the response time does not tell which accounts exist.
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
    ok = user is not None and user.check_password(password or "") and user.active
    if record:
        db.session.add(LoginAttempt(email=email[:320], ip=ip, success=ok))
        if ok:
            user.last_login_at = utcnow()
        db.session.commit()
    return user if ok else None
