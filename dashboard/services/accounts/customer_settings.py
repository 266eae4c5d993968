"""A customer's sending mode and its fields: validation, save with audit, connection test,
test email, open tracking and credential rotation. Used alike by the web views and the CLI."""
from __future__ import annotations

import hashlib
import logging
import re
import ssl

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ...addresses import check_header_value, normalise
from ...extensions import db
from ...models import SENDING_MODES, Customer, Message, User
from ...notifications import CATALOG
from .. import ServiceError
from ..billing import interventions
from ..core import audit
from ..delivery import credentials
from ..delivery.transport import AUTHS, SECURITIES, ProbeStep, SmtpSettings, probe
from ..messages import intake

log = logging.getLogger(__name__)

FIELDS = ("sending_mode", "from_address", "from_name", "smtp_host", "smtp_port",
          "smtp_security", "smtp_auth", "smtp_username", "smtp_password", "smtp_verify_tls",
          "smtp_ca_pem", "smtp_timeout", "smtp_lanes", "rate_preset", "rate_limits")
# the form's rate-limit fields, one per window (empty: no limit); a preset fills them
LIMIT_FIELDS = {f"rate_limit_{name}": name for name in ("second", "minute", "hour", "day")}
SECRET_FIELDS = ("smtp_password",)
DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}
DEFAULT_TIMEOUT = 30
PROBE_TIMEOUT = 10  # a connection test gives up sooner than a send: an admin is waiting
MAX_PEM = 64 * 1024
HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
TEST_EVENT = "document_sent"


class SettingsInvalid(ServiceError):
    """One or more fields are invalid: `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, first_field)
        self.errors = errors


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def snapshot(customer: Customer) -> dict:
    """The audited view of a customer's sending fields (the password as its encrypted token)."""
    pem = customer.smtp_ca_pem
    return {
        "sending_mode": customer.sending_mode,
        "from_address": customer.from_address,
        "from_name": customer.from_name,
        "smtp_host": customer.smtp_host,
        "smtp_port": customer.smtp_port,
        "smtp_security": customer.smtp_security,
        "smtp_auth": customer.smtp_auth,
        "smtp_username": customer.smtp_username,
        "smtp_password": customer.smtp_password_encrypted,
        "smtp_verify_tls": bool(customer.smtp_verify_tls),
        "smtp_ca_pem": ("sha256:" + hashlib.sha256(pem.encode()).hexdigest()[:16]) if pem else None,
        "smtp_timeout": customer.smtp_timeout,
        "smtp_lanes": customer.smtp_lanes,
        "rate_preset": customer.rate_preset,
        "rate_limits": customer.rate_limits,
    }


def _server_changed(customer: Customer, final) -> bool:
    """True when host, port or user name differ from the saved ones: the saved password was
    given for that server and account only."""
    host = (final("smtp_host") or "").lower()
    return (host != (customer.smtp_host or "").lower()
            or final("smtp_port") != customer.smtp_port
            or (final("smtp_username") or None) != (customer.smtp_username or None))


def validate(customer: Customer, data: dict, *, confirm_insecure: bool = False,
             confirm_plaintext: bool = False, for_test: bool = False) -> dict:
    """Check submitted fields against the customer's current values; return the clean changes.

    Fields absent from `data` keep their stored value; an empty password keeps the stored one,
    but only for the saved host, port and user name. A login over an unencrypted connection
    needs `confirm_plaintext`: for a connection test always, for a save when it is new.
    Raises SettingsInvalid with every error at once.
    """
    errors: dict[str, str] = {}
    clean: dict = {}

    def given(name: str) -> bool:
        return name in data and data[name] is not None

    mode = str(data.get("sending_mode") or customer.sending_mode or "standard").strip()
    if mode not in SENDING_MODES:
        errors["sending_mode"] = str(_l("Choose one of the three sending modes."))
    clean["sending_mode"] = mode

    if given("from_address"):
        raw = str(data["from_address"]).strip()
        if raw:
            try:
                clean["from_address"] = normalise(raw, "from_address")
            except ServiceError:
                errors["from_address"] = str(_l("Enter a valid email address."))
        else:
            clean["from_address"] = None
    if given("from_name"):
        name = str(data["from_name"]).strip()
        try:
            check_header_value(name, "from_name")
            if len(name) > 200:
                errors["from_name"] = str(_l("At most 200 characters."))
            clean["from_name"] = name or None
        except ServiceError:
            errors["from_name"] = str(_l("Line breaks are not allowed here."))

    if given("smtp_host"):
        host = str(data["smtp_host"]).strip()
        if host and not HOST_RE.match(host):
            errors["smtp_host"] = str(_l("Enter a host name or an IP address."))
        clean["smtp_host"] = host or None
    if given("smtp_security"):
        security = str(data["smtp_security"]).strip().lower() or "starttls"
        if security not in SECURITIES:
            errors["smtp_security"] = str(_l("Choose ssl, starttls or none."))
        clean["smtp_security"] = security
    if given("smtp_port"):
        raw = str(data["smtp_port"]).strip()
        if raw:
            try:
                port = int(raw)
                if not 1 <= port <= 65535:
                    raise ValueError
                clean["smtp_port"] = port
            except ValueError:
                errors["smtp_port"] = str(_l("A port is a number from 1 to 65535."))
        else:
            security = clean.get("smtp_security") or customer.smtp_security or "starttls"
            clean["smtp_port"] = DEFAULT_PORTS.get(security, 587)
    if given("smtp_auth"):
        auth = str(data["smtp_auth"]).strip().lower() or "none"
        if auth not in AUTHS:
            errors["smtp_auth"] = str(_l("Choose plain, login or none."))
        clean["smtp_auth"] = auth
    if given("smtp_username"):
        username = str(data["smtp_username"]).strip()
        if any(ch in username for ch in "\r\n\x00") or len(username) > 320:
            errors["smtp_username"] = str(_l("Enter a user name on one line (at most 320 "
                                              "characters)."))
        clean["smtp_username"] = username or None
    if given("smtp_password") and str(data["smtp_password"]) != "":
        password = str(data["smtp_password"])
        if any(ch in password for ch in "\r\n\x00") or len(password) > 1000:
            errors["smtp_password"] = str(_l("The password cannot contain line breaks."))
        else:
            clean["smtp_password"] = password
    if given("smtp_timeout"):
        raw = str(data["smtp_timeout"]).strip()
        try:
            timeout = int(raw) if raw else DEFAULT_TIMEOUT
            if not 1 <= timeout <= 300:
                raise ValueError
            clean["smtp_timeout"] = timeout
        except ValueError:
            errors["smtp_timeout"] = str(_l("A timeout is a number of seconds from 1 to 300."))
    if given("smtp_verify_tls"):
        verify = _as_bool(data["smtp_verify_tls"])
        if not verify and customer.smtp_verify_tls is not False and not confirm_insecure:
            errors["smtp_verify_tls"] = str(_l(
                "Turning certificate verification off exposes the password to anyone on the "
                "path. Tick the confirmation to do it anyway."))
        clean["smtp_verify_tls"] = verify
    if given("smtp_ca_pem"):
        pem = str(data["smtp_ca_pem"]).strip().replace("\r\n", "\n")
        if pem:
            if len(pem) > MAX_PEM or "-----BEGIN CERTIFICATE-----" not in pem:
                errors["smtp_ca_pem"] = str(_l("Paste one or more PEM certificates "
                                                "(-----BEGIN CERTIFICATE-----)."))
            else:
                try:
                    ssl.create_default_context().load_verify_locations(cadata=pem)
                except (ssl.SSLError, ValueError):
                    errors["smtp_ca_pem"] = str(_l("This is not a valid PEM certificate."))
        clean["smtp_ca_pem"] = (pem + "\n") if pem else None

    _lanes_and_limits(data, clean, errors)

    # Requirements of the chosen mode, on the merged result.
    def final(name: str):
        return clean[name] if name in clean else getattr(customer, name)

    if mode in ("custom_from", "customer_smtp") and not final("from_address") \
            and "from_address" not in errors:
        errors["from_address"] = str(_l("This sending mode needs the customer's From address."))
    if mode == "customer_smtp":
        if not final("smtp_host") and "smtp_host" not in errors:
            errors["smtp_host"] = str(_l("Enter the customer's SMTP server."))
        auth = final("smtp_auth") or "none"
        if auth != "none":
            if not final("smtp_username") and "smtp_username" not in errors:
                errors["smtp_username"] = str(_l("Authentication needs a user name."))
            if ("smtp_password" not in clean and not customer.smtp_password_encrypted
                    and "smtp_password" not in errors):
                errors["smtp_password"] = str(_l("Authentication needs a password."))
        if final("smtp_port") is None and "smtp_port" not in errors:
            clean["smtp_port"] = DEFAULT_PORTS.get(final("smtp_security") or "starttls", 587)
        if final("smtp_security") is None:
            clean["smtp_security"] = "starttls"
        if (auth != "none" and "smtp_password" not in clean and "smtp_password" not in errors
                and customer.smtp_password_encrypted and _server_changed(customer, final)):
            # otherwise anyone who can type a host name receives the customer's password
            errors["smtp_password"] = str(_l(
                "Type the password again: the server, port or user name differ from the saved "
                "ones, and the saved password is only ever sent to the saved server."))
        if (auth != "none" and final("smtp_security") == "none" and not confirm_plaintext
                and (for_test or not _plaintext_login(customer))
                and "smtp_security" not in errors):
            errors["smtp_security"] = str(_l(
                "With security None the password crosses the network unencrypted: anyone on "
                "the path can read it. Choose STARTTLS or SSL/TLS, or tick the confirmation "
                "below to do it anyway."))
    if errors:
        raise SettingsInvalid(errors)
    return clean


def _lanes_and_limits(data: dict, clean: dict, errors: dict) -> None:
    """Lanes (empty: the default) and rate limits: a provider's preset, or the four fields
    as typed ("custom"), or none (empty preset and no field)."""
    from ..delivery import rate_limits
    from .global_settings import limit_fields

    if "smtp_lanes" in data and data["smtp_lanes"] is not None:
        raw = str(data["smtp_lanes"]).strip()
        try:
            lanes = int(raw) if raw else None
            if lanes is not None and not 1 <= lanes <= rate_limits.MAX_LANES:
                raise ValueError
            clean["smtp_lanes"] = lanes
        except ValueError:
            errors["smtp_lanes"] = str(_l("Enter a whole number from 1 to %(high)d, or leave it "
                                          "empty for the default.", high=rate_limits.MAX_LANES))
    typed = any(key in data for key in LIMIT_FIELDS)
    if "rate_preset" not in data and not typed:
        return
    preset = str(data.get("rate_preset") or "").strip()
    if preset and preset not in rate_limits.PRESETS:
        errors["rate_preset"] = str(_l("Choose one of the listed providers, or custom."))
        return
    if preset and preset != "custom":
        clean["rate_preset"] = preset
        clean["rate_limits"] = dict(rate_limits.PRESETS[preset]["limits"])
        return
    limits = limit_fields(data, LIMIT_FIELDS, errors)
    if limits is not None:
        clean["rate_preset"] = "custom" if limits else None
        clean["rate_limits"] = limits or None


def changed_fields(customer: Customer, clean: dict) -> list[str]:
    """The fields `clean` would change (a typed password always counts as a change)."""
    changed = []
    for name, value in clean.items():
        current = getattr(customer, name, None) if name != "smtp_password" else object()
        if name == "smtp_verify_tls":
            current = bool(current) if current is not None else True
        if current != value:
            changed.append(name)
    return sorted(changed)


def save(customer: Customer, data: dict, actor: User | None = None, *,
         confirm_insecure: bool = False, confirm_plaintext: bool = False,
         check_dns: bool = True, actor_label: str | None = None,
         intervention: interventions.Request | None = None) -> dict:
    """Validate and store a customer's sending settings, audited before → after, and record
    the change as a configuration intervention (billable or not, with its minutes).

    Returns {"before", "after", "dns", "intervention"}; nothing is stored when a field, or
    what the intervention needs (minutes of a billable change from the form), is invalid.
    """
    request = intervention or interventions.Request()
    errors: dict[str, str] = {}
    clean = None
    try:
        clean = validate(customer, data, confirm_insecure=confirm_insecure,
                         confirm_plaintext=confirm_plaintext)
    except SettingsInvalid as exc:
        errors.update(exc.errors)
    mode_after = clean["sending_mode"] if clean else str(
        data.get("sending_mode") or customer.sending_mode or "standard")
    changing = clean is None or bool(changed_fields(customer, clean))
    checked, problems = interventions.check(customer, request, mode_after, changing)
    errors.update({k: v for k, v in problems.items() if k not in errors})
    if errors:
        raise SettingsInvalid(errors)
    was_plaintext = _plaintext_login(customer)
    before = snapshot(customer)
    for name, value in clean.items():
        if name == "smtp_password":
            customer.smtp_password_encrypted = credentials.encrypt(value)
        else:
            setattr(customer, name, value)
    after = snapshot(customer)
    old, new = audit.diff(before, after, secret_fields=SECRET_FIELDS)
    recorded = None
    if old or new:
        audit.record("customer.sending_mode", actor, "customer", customer.id, before=old,
                     after=new, customer_id=customer.id, actor_label=actor_label)
        if before["smtp_verify_tls"] and not after["smtp_verify_tls"]:
            audit.record("customer.tls_verify_off", actor, "customer", customer.id,
                         before={"smtp_verify_tls": True}, after={"smtp_verify_tls": False},
                         note="WARNING: TLS certificate verification turned off for this "
                              "customer's SMTP server (confirmed explicitly)",
                         customer_id=customer.id, actor_label=actor_label)
        if _plaintext_login(customer) and not was_plaintext:
            audit.record("customer.smtp_plaintext_auth", actor, "customer", customer.id,
                         after={"smtp_security": "none", "smtp_auth": customer.smtp_auth},
                         note="WARNING: this customer's SMTP password is sent unencrypted "
                              "(security none, confirmed explicitly)",
                         customer_id=customer.id, actor_label=actor_label)
        connection = {"smtp_host", "smtp_port", "smtp_username", "smtp_password",
                      "sending_mode", "smtp_auth", "smtp_security"}
        if connection & set(new):
            customer.auth_failures = 0
        recorded = interventions.record(customer, list(new), before["sending_mode"], checked,
                                        actor, actor_label)
    db.session.commit()
    dns = None
    if check_dns and customer.sending_mode == "custom_from":
        from ..delivery import domains

        dns = domains.check_customer(customer)
    return {"before": old, "after": new, "dns": dns, "intervention": recorded}


def _plaintext_login(customer: Customer) -> bool:
    """True when the customer's saved server is reached unencrypted with a login."""
    return (customer.sending_mode == "customer_smtp" and customer.smtp_security == "none"
            and (customer.smtp_auth or "none") != "none" and bool(customer.smtp_username))


def smtp_settings_for(customer: Customer, data: dict | None = None, *,
                      confirm_insecure: bool = False, confirm_plaintext: bool = False,
                      timeout: float | None = None) -> SmtpSettings:
    """Connection settings for a connection test: the customer's stored values with `data`
    (the unsaved form) on top, validated as for a test.

    The password is the typed one, else the stored one (decrypted in memory only), which is
    only used for the saved host, port and user name. `timeout` caps the customer's own.
    """
    clean = validate(customer, {**(data or {}), "sending_mode": "customer_smtp"},
                     confirm_insecure=confirm_insecure, confirm_plaintext=confirm_plaintext,
                     for_test=True)

    def final(name: str):
        return clean[name] if name in clean else getattr(customer, name)

    password = clean.get("smtp_password")
    if password is None and customer.smtp_password_encrypted:
        password = credentials.decrypt(customer.smtp_password_encrypted)
    security = final("smtp_security") or "starttls"
    return SmtpSettings(
        host=final("smtp_host") or "",
        port=int(final("smtp_port") or DEFAULT_PORTS.get(security, 587)),
        security=security,
        auth=final("smtp_auth") or "none",
        username=final("smtp_username"),
        password=password,
        timeout=min(float(final("smtp_timeout") or DEFAULT_TIMEOUT), timeout or 1e9),
        verify=bool(final("smtp_verify_tls") if final("smtp_verify_tls") is not None else True),
        ca_pem=final("smtp_ca_pem"),
        name=f"customer {customer.code}",
    )


def test_connection(customer: Customer, data: dict | None = None, *,
                    confirm_insecure: bool = False, confirm_plaintext: bool = False
                    ) -> list[ProbeStep]:
    """Connect, secure and authenticate step by step (no mail sent), giving up after
    POSTINO_SMTP_TEST_TIMEOUT seconds per step; never raises for the server's answers, and
    each step carries `explanation`, a sentence in the reader's language. Invalid fields raise
    SettingsInvalid; an undecryptable password raises CredentialsError."""
    limit = float(current_app.config.get("POSTINO_SMTP_TEST_TIMEOUT") or PROBE_TIMEOUT)
    settings = smtp_settings_for(customer, data, confirm_insecure=confirm_insecure,
                                 confirm_plaintext=confirm_plaintext, timeout=limit)
    steps = probe(settings)
    for step in steps:
        step.explanation = explain(step)
    log.info("connection test for customer %s: %s", customer.code,
             ", ".join(f"{s.name}={'ok' if s.ok else s.reason or 'failed'}" for s in steps))
    return steps


# Each reason a connection test step can give, as a sentence for the admin.
_REASONS = {
    "timeout": lambda p: _l("No answer from %(where)s in %(seconds)d s: the server is down, "
                            "the port is wrong, or a firewall drops the connection.", **p),
    "refused": lambda p: _l("%(where)s refused the connection: nothing listens on that port.",
                            **p),
    "dns": lambda p: _l("The name %(host)s cannot be found: check the spelling of the "
                        "server.", **p),
    "tls_untrusted": lambda p: _l("The server's TLS certificate is not trusted (%(reason)s): "
                                  "check the server name, or paste the certificate of its "
                                  "private CA below.", **p),
    "tls_error": lambda p: _l("The encrypted connection to %(where)s failed (%(reason)s): check "
                              "that the port matches the security (465: SSL/TLS, 587: "
                              "STARTTLS).", **p),
    "closed": lambda p: _l("%(where)s closed the connection without answering.", **p),
    "greeting": lambda p: _l("The server refused to talk to us (%(code)s): it may not accept "
                             "connections from our address.", **p),
    "unexpected_reply": lambda p: _l("The server answered something unexpected (%(code)s).",
                                     **p),
    "no_starttls": lambda p: _l("The server does not offer STARTTLS on %(where)s: choose "
                                "SSL/TLS (usually port 465), or check the port.", **p),
    "no_auth": lambda p: _l("The server does not offer authentication on this connection: it "
                            "may accept a login only after STARTTLS, or need none at all."),
    "auth_refused": lambda p: _l("The server refused the user name or the password "
                                 "(%(code)s).", **p),
    "tls_unverified": lambda p: _l("Encrypted, but the certificate was not verified: anyone "
                                   "on the path could pose as the server."),
    "plaintext": lambda p: _l("Logged in, but the password crossed the network "
                              "unencrypted."),
    "unexpected": lambda p: _l("Unexpected error with %(where)s: %(error)s", **p),
}


def explain(step: ProbeStep) -> str | None:
    """A step's reason as a sentence in the reader's language (None when it has none)."""
    text = _REASONS.get(step.reason or "")
    return str(text(step.params)) if text else None


def send_test(customer: Customer, to: str, actor: User | None = None) -> Message:
    """Send a test email through the real queue and this customer's transport, now.

    The message is enqueued like any other and put first in line for one sweep pass of one
    message (held/suppressed/deferred apply as usual); returns it with its outcome.
    """
    from ..delivery import sweep

    address = normalise(to or "", "to")
    sample = dict(CATALOG[TEST_EVENT]["sample"])
    sample.update({
        "document_title": "Postino test email",
        "sender_name": actor.email if actor is not None else "Postino",
        "message": f"Test email for {customer.name}, sending mode {customer.sending_mode}.",
    })
    [message] = intake.enqueue(customer, TEST_EVENT, address, reference="test-email",
                                 data=sample, actor=actor, test=True)
    audit.record("customer.test_email", actor, "message", message.public_id,
                 after={"to": address, "sending_mode": customer.sending_mode},
                 customer_id=customer.id)
    db.session.commit()
    return sweep.send_now(message)


def set_open_tracking(customer: Customer, enabled: bool, actor: User | None = None) -> None:
    """Turn open tracking on or off for a customer, audited."""
    enabled = bool(enabled)
    if bool(customer.open_tracking) != enabled:
        audit.record("customer.open_tracking", actor, "customer", customer.id,
                     before={"open_tracking": bool(customer.open_tracking)},
                     after={"open_tracking": enabled}, customer_id=customer.id)
        customer.open_tracking = enabled
    db.session.commit()


def rotate_credentials(actor_label: str = "cli") -> int:
    """Re-encrypt every stored SMTP password and DKIM private key with the first key; all or
    nothing. Returns how many secrets were re-encrypted."""
    from ..delivery import dkim_keys
    from ..webhooks import endpoints as webhook_endpoints

    rows = db.session.scalars(
        select(Customer).where(Customer.smtp_password_encrypted.is_not(None))
        .order_by(Customer.id)).all()
    broken = []
    for customer in rows:
        try:
            customer.smtp_password_encrypted = credentials.rotate(customer.smtp_password_encrypted)
        except credentials.CredentialsError:
            broken.append(customer.code)
    dkim_count, dkim_broken = dkim_keys.rotate_encryption()
    broken += dkim_broken
    webhook_count, webhook_broken = webhook_endpoints.rotate_encryption()
    dkim_count, broken = dkim_count + webhook_count, broken + webhook_broken
    if broken:
        db.session.rollback()
        raise credentials.CredentialsError(
            "cannot decrypt the stored password of " + ", ".join(broken)
            + " with any key in POSTINO_CREDENTIALS_KEY; nothing was re-encrypted",
            "smtp_password")
    if rows or dkim_count:
        audit.record("credentials.rotate", None, "customer", None,
                     after={"re_encrypted": len(rows), "dkim_keys": dkim_count},
                     actor_label=actor_label)
    db.session.commit()
    return len(rows) + dkim_count
