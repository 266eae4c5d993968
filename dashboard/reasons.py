"""Why a message is held, failed or suppressed, and what an alert says: stored as a code with
its parameters, put into words in the reader's language when shown.

The sweep and the scheduler have no reader, so they cannot choose a language: they store
`encode(code, **params)` and whoever shows it calls `text(stored)` (templates: the `reason`
filter), which translates in the language of the request. Rows written before codes existed
hold English sentences: the ones Postino used to write are recognised and translated too;
anything else (a server's own words, free text) is shown as it is.
"""
from __future__ import annotations

import json
import re

from flask import Flask
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l

REASONS = {
    "sending_off": _l("sending is off for everyone (Settings)"),
    "customer_sending_off": _l("sending is off for customer %(customer)s"),
    "customer_paused": _l("customer %(customer)s is paused: %(reason)s"),
    "customer_blocked": _l("sending is off for this customer, or it is paused"),
    "processing_blocked": _l("processing blocked"),
    "auth_failures": _l("repeated SMTP authentication failures (%(answer)s)"),
    "authentication_failed": _l("authentication failed"),
    "suppressed": _l("recipient on the suppression list (%(reason)s)"),
    "refused": _l("refused by the server at %(stage)s"),
    "expired_max_age": _l("expired: not delivered within the maximum age"),
    "expired_retries": _l("expired: retries exhausted"),
    "expired_held": _l("expired: held longer than the maximum age"),
    "expired_while_held": _l("expired while held"),
    "released": _l("sending turned back on"),
    "rate_limited_relay": _l("waiting for the rate limit of our relay"),
    "rate_limited_customer": _l("waiting for the rate limit of the customer's own server"),
    "resend_of": _l("resend of %(id)s"),
    "first_open": _l("first open (approximate: image blocking and privacy proxies)"),
    "worker_heartbeat": _l("No worker heartbeat for %(minutes)s minutes: mail is not being "
                           "sent."),
    "queue_backlog": _l("The oldest due message has waited %(minutes)s minutes to be sent."),
    "customer_blocked_alert": _l("Processing blocked for %(name)s: %(reason)s"),
    "webhook_paused_alert": _l("The webhook of %(name)s is paused after %(failures)s failed "
                               "deliveries in a row (%(error)s): its events wait."),
    "webhook_paused": _l("webhook paused after %(failures)s failed deliveries in a row "
                         "(%(error)s)"),
    # suppression list reasons, as a parameter of "suppressed"
    "suppression.hard_bounce": _l("hard bounce"),
    "suppression.soft_bounce": _l("repeated soft bounces"),
    "suppression.complaint": _l("spam complaint"),
    "suppression.manual": _l("added by staff"),
}

# What Postino wrote before reasons had codes: sentence → (code, parameter names in order).
_LEGACY = [(re.compile(pattern, re.S), code, names) for pattern, code, names in (
    (r"sending is off for everyone \(Settings\)", "sending_off", ()),
    (r"sending is off for customer (\S+)", "customer_sending_off", ("customer",)),
    (r"customer (\S+) is paused: (.*)", "customer_paused", ("customer", "reason")),
    (r"sending is off for this customer, or it is paused", "customer_blocked", ()),
    (r"processing blocked", "processing_blocked", ()),
    (r"repeated SMTP authentication failures \((.*)\)", "auth_failures", ("answer",)),
    (r"authentication failed", "authentication_failed", ()),
    (r"recipient on the suppression list \((\w+)\)", "suppressed", ("reason",)),
    (r"refused by the server at (\w+)", "refused", ("stage",)),
    (r"expired: not delivered within the maximum age", "expired_max_age", ()),
    (r"expired: retries exhausted", "expired_retries", ()),
    (r"expired: held longer than the maximum age", "expired_held", ()),
    (r"expired while held", "expired_while_held", ()),
    (r"sending turned back on", "released", ()),
    (r"resend of (\S+)", "resend_of", ("id",)),
    (r"first open \(approximate: image blocking and privacy proxies\)", "first_open", ()),
)]


def encode(code: str, **params) -> str:
    """The stored form of a reason: a small JSON object, readable in the database too.

    A parameter may itself be an encoded reason (it is then translated as well)."""
    if code not in REASONS:
        raise ValueError(f"unknown reason code {code!r}")
    body = {"code": code}
    if params:
        body["params"] = {name: _nested(value) for name, value in params.items()}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def suppression(reason: str) -> str:
    """The encoded name of a suppression list reason (hard_bounce…), for `suppressed`."""
    code = f"suppression.{reason}"
    return encode(code) if code in REASONS else reason


def decode(stored: str | None) -> tuple[str, dict] | None:
    """(code, params) of a stored reason, None for free text and unknown codes."""
    if not stored:
        return None
    if stored.startswith('{"code":'):
        try:
            body = json.loads(stored)
        except ValueError:
            return None
        if isinstance(body, dict) and body.get("code") in REASONS:
            params = body.get("params")
            return body["code"], params if isinstance(params, dict) else {}
        return None
    for pattern, code, names in _LEGACY:
        match = pattern.fullmatch(stored.strip())
        if match:
            params = dict(zip(names, match.groups(), strict=True))
            if code == "suppressed":
                params["reason"] = suppression(params["reason"])
            return code, params
    return None


def text(stored: str | None) -> str:
    """A stored reason in the current language; free text as it is; '' for nothing."""
    if not stored:
        return ""
    decoded = decode(stored)
    if decoded is None:
        return stored
    code, params = decoded
    values = {name: text(_stored(value)) for name, value in params.items()}
    try:
        return str(REASONS[code] % values) if values else str(REASONS[code])
    except (KeyError, TypeError, ValueError):  # a parameter missing from an old row
        return str(REASONS[code])


def english(stored: str | None) -> str:
    """A stored reason in English (the JSON API, the command line, logs)."""
    with force_locale("en"):
        return text(stored)


def in_language(stored: str | None, language: str) -> str:
    """A stored reason in a given language (an email's, for instance)."""
    with force_locale(language):
        return text(stored)


_DOUBLED_STOP = re.compile(r"(?<!\.)\.\.(?!\.)")


def tidy(sentence) -> str:
    """One full stop where a name or a reason that ends with one meets the sentence's own
    ("Bianchi S.p.A.." becomes "Bianchi S.p.A."); an ellipsis is left alone."""
    return _DOUBLED_STOP.sub(".", str(sentence))


def _nested(value):
    """Encoded reasons nest as objects, so the stored JSON stays one level of quoting."""
    if isinstance(value, str) and value.startswith('{"code":'):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value if isinstance(value, (int, float)) else str(value)


def _stored(value) -> str:
    """A parameter back in its stored form (a nested reason becomes its JSON again)."""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def init_app(app: Flask) -> None:
    """Template filters: `{{ message.status_reason|reason }}`, `{{ (name ~ ".")|tidy }}`."""
    app.jinja_env.filters["reason"] = text
    app.jinja_env.filters["tidy"] = tidy
