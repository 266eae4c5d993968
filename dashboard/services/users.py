"""Staff users: creation, role changes, deactivation, login throttling."""
from __future__ import annotations

from datetime import timedelta
from functools import cache

from email_validator import EmailNotValidError, validate_email
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ROLES, LoginAttempt, User, utcnow
from . import ServiceError, audit

MAX_FAILURES = 5
THROTTLE_WINDOW = timedelta(minutes=15)
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
    from ..i18n import LANGUAGES

    if language not in LANGUAGES:
        raise ServiceError(_l("Unknown language."), "language")
    user.language = language
    db.session.commit()


def is_throttled(email: str) -> bool:
    """True after MAX_FAILURES failed attempts for this email within the window."""
    since = utcnow() - THROTTLE_WINDOW
    failures = db.session.scalar(
        select(func.count(LoginAttempt.id)).where(
            LoginAttempt.email == email.strip().lower(),
            LoginAttempt.success.is_(False),
            LoginAttempt.at >= since,
        )
    )
    return failures >= MAX_FAILURES


@cache
def _dummy_hash() -> str:
    """A hash to check unknown addresses against, made once per process."""
    return generate_password_hash("no such account", method="scrypt")


def authenticate(email: str, password: str, ip: str | None = None) -> User | None:
    """Check a login; records the attempt. Returns the user, or None (same for every failure)."""
    email = (email or "").strip().lower()
    user = db.session.scalar(select(User).where(User.email == email))
    # Always pay for one hash check, so the response time does not tell which accounts exist.
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
    ok = user is not None and user.check_password(password or "") and user.active
    db.session.add(LoginAttempt(email=email[:320], ip=ip, success=ok))
    if ok:
        user.last_login_at = utcnow()
    db.session.commit()
    return user if ok else None
