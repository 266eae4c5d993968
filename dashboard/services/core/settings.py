"""Global settings: values edited in the dashboard, defaulting to the environment."""
from __future__ import annotations

from flask import current_app

from ...extensions import db
from ...models import Setting, User
from .. import ServiceError
from . import audit

# key -> (config name supplying the default, or a literal default)
DEFAULTS: dict[str, tuple[str | None, object]] = {
    "sending_enabled": (None, True),
    "sender_notification": ("POSTINO_SENDER_NOTIFICATION", None),
    "sender_registration": ("POSTINO_SENDER_REGISTRATION", None),
    "bounce_domain": ("POSTINO_BOUNCE_DOMAIN", None),
    "retention_days": ("POSTINO_RETENTION_DAYS", 30),
    "retry_schedule": (None, [1, 5, 15, 60, 180, 360]),
    "max_age_hours": (None, 24),
    "soft_bounce_threshold": (None, 3),
    "soft_bounce_window_days": (None, 7),
    "soft_suppression_days": (None, 7),
    "billing_window_days": (None, 90),
    # our relay: connections a worker opens at once, and the provider's limits (none: {})
    "relay_lanes": (None, 8),
    "relay_rate_limits": (None, {}),
}


def default(key: str):
    """The environment's (or built-in) value for a setting."""
    config_name, literal = DEFAULTS[key]
    if config_name is not None:
        return current_app.config.get(config_name, literal)
    return literal


def get(key: str):
    """The current value of a global setting."""
    if key not in DEFAULTS:
        raise KeyError(key)
    row = db.session.get(Setting, key)
    return row.value if row is not None else default(key)


def all_settings() -> dict:
    """Every setting with its current value."""
    rows = {row.key: row.value for row in db.session.scalars(db.select(Setting))}
    return {key: rows.get(key, default(key)) for key in DEFAULTS}


def put(key: str, value, actor: User | None = None, commit: bool = True) -> None:
    """Store a setting, audited with before and after."""
    if key not in DEFAULTS:
        raise ServiceError(f"unknown setting {key}", key)
    before = get(key)
    if before == value:
        return
    row = db.session.get(Setting, key)
    if row is None:
        row = Setting(key=key, value=value)
        db.session.add(row)
    else:
        row.value = value
    row.updated_by_id = actor.id if actor is not None else None
    audit.record("setting.update", actor, "setting", key, before={key: before}, after={key: value})
    if commit:
        db.session.commit()


def sending_enabled() -> bool:
    """The global sending switch."""
    return bool(get("sending_enabled"))
