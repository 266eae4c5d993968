"""The Settings page's values: our senders, bounce domain, retention, retries, soft bounces,
billing window, our relay's lanes and rate limits. Validated all at once, each change audited
(settings.put) before → after."""
from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l

from ...addresses import check_header_value, format_sender, normalise, parse_sender
from ...extensions import db
from ...models import User
from .. import ServiceError
from ..core import settings

DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
SENDERS = ("sender_notification", "sender_registration")
# setting -> (minimum, maximum) for the whole-number settings
NUMBERS = {
    "retention_days": (1, 3650),
    "max_age_hours": (1, 720),
    "soft_bounce_threshold": (1, 100),
    "soft_bounce_window_days": (1, 365),
    "soft_suppression_days": (1, 365),
    "billing_window_days": (1, 3650),
    "relay_lanes": (1, 64),
}
OPTIONAL = ("relay_lanes",)
# our relay's rate limits, one field per window; empty: no limit
LIMIT_FIELDS = {f"relay_limit_{name}": name for name in ("second", "minute", "hour", "day")}


class SettingsInvalid(ServiceError):
    """Some fields are invalid: `errors` maps each form field to its message."""

    def __init__(self, errors: dict[str, str]):
        field, message = next(iter(errors.items()))
        super().__init__(message, field)
        self.errors = errors


def form_values() -> dict[str, str]:
    """The current settings as the form shows them (senders split into name and address)."""
    current = settings.all_settings()
    values: dict[str, str] = {}
    for key in SENDERS:
        try:
            name, address = parse_sender(str(current[key] or ""), key)
        except ServiceError:
            name, address = "", str(current[key] or "")
        values[f"{key}_name"], values[f"{key}_address"] = name, address
    values["bounce_domain"] = str(current["bounce_domain"] or "")
    values["retry_schedule"] = ", ".join(str(m) for m in current["retry_schedule"] or [])
    for key in NUMBERS:
        values[key] = str(current[key])
    limits = current["relay_rate_limits"] or {}
    for key, window in LIMIT_FIELDS.items():
        values[key] = str(limits[window]) if limits.get(window) else ""
    return values


def defaults() -> dict[str, object]:
    """The environment's values, shown beside each field."""
    return {key: settings.default(key) for key in settings.DEFAULTS}


def validate(form: dict) -> dict:
    """Clean every submitted value; raise SettingsInvalid with all errors at once."""
    errors: dict[str, str] = {}
    clean: dict = {}
    for key in SENDERS:
        name = str(form.get(f"{key}_name") or "").strip()
        address = str(form.get(f"{key}_address") or "").strip()
        try:
            check_header_value(name, f"{key}_name")
        except ServiceError:
            errors[f"{key}_name"] = str(_l("Line breaks are not allowed here."))
        if len(name) > 200:
            errors[f"{key}_name"] = str(_l("At most 200 characters."))
        try:
            address = normalise(address, f"{key}_address")
        except ServiceError:
            errors[f"{key}_address"] = str(_l("Enter a valid email address."))
        if f"{key}_name" not in errors and f"{key}_address" not in errors:
            clean[key] = format_sender(name, address)
    domain = str(form.get("bounce_domain") or "").strip().lower().rstrip(".")
    if not DOMAIN_RE.match(domain):
        errors["bounce_domain"] = str(_l("Enter a domain name, e.g. bounces.example.com."))
    else:
        clean["bounce_domain"] = domain
    raw = str(form.get("retry_schedule") or "")
    try:
        schedule = [int(part) for part in re.split(r"[,\s]+", raw.strip()) if part]
        if not schedule or len(schedule) > 20 or any(m < 1 or m > 1440 for m in schedule):
            raise ValueError
        if schedule != sorted(schedule):
            errors["retry_schedule"] = str(_l("Delays must not decrease."))
        clean["retry_schedule"] = schedule
    except ValueError:
        errors["retry_schedule"] = str(_l(
            "Enter 1 to 20 delays in minutes (1-1440), separated by commas."))
    for key, (low, high) in NUMBERS.items():
        if key in OPTIONAL and key not in form:
            continue  # a form of before the field existed: the value stays
        value = str(form.get(key) or "").strip()
        try:
            number = int(value)
            if not low <= number <= high:
                raise ValueError
            clean[key] = number
        except ValueError:
            errors[key] = str(_l("Enter a whole number from %(low)d to %(high)d.",
                                 low=low, high=high))
    limits = limit_fields(form, LIMIT_FIELDS, errors) if any(
        key in form for key in LIMIT_FIELDS) else None
    if limits is not None:
        clean["relay_rate_limits"] = limits
    if errors:
        raise SettingsInvalid(errors)
    return clean


def limit_fields(form: dict, fields: dict[str, str], errors: dict) -> dict | None:
    """Rate limits from their form fields ({window: n}, empty fields left out); each bad
    field gets its error in `errors` (and None is returned)."""
    from ..delivery.rate_limits import MAX_LIMIT

    limits: dict = {}
    ok = True
    for key, window in fields.items():
        value = str(form.get(key) or "").strip()
        if not value:
            continue
        try:
            number = int(value)
            if not 1 <= number <= MAX_LIMIT:
                raise ValueError
            limits[window] = number
        except ValueError:
            errors[key] = str(_l("Enter a whole number from 1 to %(high)d, or leave it empty "
                                 "for no limit.", high=MAX_LIMIT))
            ok = False
    return limits if ok else None


def save(form: dict, actor: User | None = None) -> list[str]:
    """Validate and store the settings; returns the keys that changed (each audited)."""
    clean = validate(form)
    changed = [key for key, value in clean.items() if settings.get(key) != value]
    for key in changed:
        settings.put(key, clean[key], actor, commit=False)
    db.session.commit()
    return changed
