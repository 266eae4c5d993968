"""Customers (gear menu → Customers): list, and each customer's sending mode, switches and
API keys. Support may look; only admins change anything."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import func, select

from ..addresses import normalise
from ..auth import roles
from ..extensions import db
from ..htmx import render, trigger
from ..models import EVENTS, SENDING_MODES, ApiKey, ConfigurationEstimate, Customer, Message
from ..services import ServiceError
from ..services.accounts import customer_settings, customers
from ..services.billing import interventions
from ..services.delivery import dns_check, domains, modes, rate_limits
from ..services.delivery import sending as sending_service
from ..services.delivery.credentials import CredentialsError
from ..services.delivery.transport import AUTHS, SECURITIES
from ..services.webhooks import endpoints as webhook_endpoints
from .dkim import section_context as dkim_context

log = logging.getLogger(__name__)
bp = Blueprint("customers", __name__, url_prefix="/customers")

MODE_FIELDS = {
    "standard": (),
    "custom_from": ("from_address", "from_name"),
    "customer_smtp": ("from_address", "from_name", "smtp_host", "smtp_port", "smtp_security",
                      "smtp_auth", "smtp_username", "smtp_password", "smtp_timeout",
                      "smtp_ca_pem", "smtp_lanes", "rate_preset",
                      *customer_settings.LIMIT_FIELDS),
}


def _customer(code: str) -> Customer:
    """The customer with this code, or 404."""
    customer = customers.by_code(code)
    if customer is None:
        abort(404)
    return customer


def _values(customer: Customer, posted: dict | None = None) -> dict:
    """Form values: stored ones with anything posted on top; never the password."""
    values = {
        "sending_mode": customer.sending_mode,
        "from_address": customer.from_address or "",
        "from_name": customer.from_name or "",
        "smtp_host": customer.smtp_host or "",
        "smtp_port": customer.smtp_port or "",
        "smtp_security": customer.smtp_security or "starttls",
        "smtp_auth": customer.smtp_auth or "plain",
        "smtp_username": customer.smtp_username or "",
        "smtp_timeout": customer.smtp_timeout or customer_settings.DEFAULT_TIMEOUT,
        "smtp_verify_tls": customer.smtp_verify_tls is not False,
        "smtp_ca_pem": customer.smtp_ca_pem or "",
        "smtp_lanes": customer.smtp_lanes or "",
        "rate_preset": customer.rate_preset or ("custom" if customer.rate_limits else ""),
        **{key: (customer.rate_limits or {}).get(window) or ""
           for key, window in customer_settings.LIMIT_FIELDS.items()},
    }
    for key, value in (posted or {}).items():
        if key != "smtp_password":
            values[key] = value
    return values


def _standard_senders() -> list[tuple[str, str]]:
    """The From header each event gets in standard mode."""
    standard = SimpleNamespace(sending_mode="standard", from_address=None, from_name=None)
    return [(event, modes.from_header(standard, event)) for event in EVENTS]


def _log_url(message: Message) -> str:
    """The message's page in the log."""
    return url_for("log.message", public_id=message.public_id)


def _context(customer: Customer, posted: dict | None = None, errors: dict | None = None,
             **extra) -> dict:
    """Everything a customer page or one of its fragments needs, built in one place."""
    keys = db.session.scalars(select(ApiKey).where(ApiKey.customer_id == customer.id)
                              .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc())
                              ).all()
    values = _values(customer, posted)
    context = {
        "customer": customer,
        "values": values,
        "mode": values["sending_mode"],
        "errors": errors or {},
        "modes": SENDING_MODES,
        "securities": SECURITIES,
        "auths": AUTHS,
        "keys": keys,
        "standard_senders": _standard_senders(),
        "held": db.session.scalar(select(func.count(Message.id)).where(
            Message.customer_id == customer.id, Message.status == "held")) or 0,
        "can_edit": current_user.role == "admin",
        "dns": customer.dns_check,
        **_intervention_context(customer),
        "rate_presets": rate_limits.PRESETS,
        "default_lanes": rate_limits.CUSTOMER_LANES,
        "probe_timeout": round(float(current_app.config.get("POSTINO_SMTP_TEST_TIMEOUT")
                                     or customer_settings.PROBE_TIMEOUT)),
        **dkim_context(customer),
        **webhook_endpoints.page_context(customer),
    }
    context.update(extra)
    return context


def _intervention_context(customer: Customer) -> dict:
    """The billing side of a customer page: interventions, estimates, customer_smtp periods."""
    open_estimates = interventions.open_estimates(customer)
    latest = open_estimates[0] if open_estimates else None
    return {"interventions": interventions.for_customer(customer),
            "estimates": interventions.estimates(customer),
            "open_estimates": open_estimates,
            "open_estimate_ids": {e.id for e in open_estimates},
            "smtp_periods": interventions.periods_for(customer),
            "intervention_values": {"minutes": "", "ticket": "", "waive": "", "waive_reason": "",
                                    "estimate": str(latest.id) if latest else ""},
            "estimate_errors": {}, "estimate_values": {}}


def _posted_intervention() -> tuple[interventions.Request, dict]:
    """What the save form says about billing the change, and its values to show back."""
    form = request.form
    values = {k: form.get(k, "") for k in ("minutes", "ticket", "waive", "waive_reason",
                                           "estimate")}
    waive = values["waive_reason"] if values["waive"] == "1" else None
    estimate = values["estimate"] if "estimate" in form else interventions.AUTO
    return interventions.Request(minutes=values["minutes"], ticket=values["ticket"],
                                 waive=waive, estimate=estimate or None,
                                 require_minutes=True), values


def _posted_settings() -> tuple[dict, dict]:
    """The sending-mode fields of the submitted form, and its confirmations (unverified TLS,
    a login over an unencrypted connection) as keyword arguments for the service."""
    form = request.form
    mode = form.get("sending_mode", "")
    data = {"sending_mode": mode}
    for name in MODE_FIELDS.get(mode, ()):
        if name in form:
            data[name] = form.get(name, "")
    if mode == "customer_smtp" and "smtp_verify_tls" in form:
        # the form posts a hidden "0" before the checkbox's "1"
        data["smtp_verify_tls"] = "1" if "1" in form.getlist("smtp_verify_tls") else "0"
    return data, {"confirm_insecure": form.get("confirm_insecure") == "1",
                  "confirm_plaintext": form.get("confirm_plaintext") == "1"}


# -- list ---------------------------------------------------------------------------------

def _list_context(**extra) -> dict:
    """The customers list, with held counts."""
    query = request.args.get("q", "").strip()
    stmt = select(Customer).order_by(Customer.name)
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(func.lower(Customer.name).like(like) | func.lower(Customer.code)
                          .like(like))
    rows = db.session.scalars(stmt).all()
    held = dict(db.session.execute(
        select(Message.customer_id, func.count(Message.id)).where(Message.status == "held")
        .group_by(Message.customer_id)).all())
    return {"customers": rows, "held": held, "q": query, "errors": {}, "form": {}, **extra}


@bp.route("/")
@roles("support")
def index():
    """All customers with their sending mode and switches (search by name or code)."""
    return render("customers/index.html", "customers/_rows.html", **_list_context())


@bp.route("/", methods=["POST"])
@roles("admin")
def create():
    """Create a customer; its first API key is shown once."""
    form = {"code": request.form.get("code", ""), "name": request.form.get("name", "")}
    try:
        customer, key = customers.create_customer(form["code"], form["name"], current_user)
    except ServiceError as exc:
        db.session.rollback()
        return render("customers/index.html", status=422,
                      **_list_context(errors={exc.field or "code": exc.message}, form=form))
    return render("customers/detail.html", **_context(customer, new_key=key))


# -- one customer -------------------------------------------------------------------------

@bp.route("/<code>")
@roles("support")
def detail(code: str):
    """A customer's page: sending mode and its fields, switches, API keys (support: read-only)."""
    return render("customers/detail.html", **_context(_customer(code)))


@bp.route("/<code>/mode")
@roles("admin")
def mode_fields(code: str):
    """The fields of the chosen mode, swapped in place when the radio changes."""
    customer = _customer(code)
    mode = request.args.get("sending_mode", customer.sending_mode)
    if mode not in SENDING_MODES:
        abort(404)
    context = _context(customer, {"sending_mode": mode})
    return render("customers/detail.html", "customers/_mode_swap.html", **context)


@bp.route("/<code>/intervention-fields")
@roles("admin")
def intervention_fields(code: str):
    """The save form's billing fields for the chosen mode (refreshed when estimates change)."""
    customer = _customer(code)
    mode = request.args.get("sending_mode", customer.sending_mode)
    if mode not in SENDING_MODES:
        abort(404)
    return render("customers/detail.html", "customers/_intervention_fields.html",
                  **_context(customer, {"sending_mode": mode}))


@bp.route("/<code>", methods=["POST"])
@roles("admin")
def save(code: str):
    """Save the sending mode and its fields (422 with errors beside the fields, nothing saved)."""
    customer = _customer(code)
    data, confirmations = _posted_settings()
    billing, billing_values = _posted_intervention()
    try:
        result = customer_settings.save(customer, data, current_user, intervention=billing,
                                        **confirmations)
    except customer_settings.SettingsInvalid as exc:
        db.session.rollback()
        return render("customers/detail.html", "customers/_settings.html", status=422,
                      **_context(customer, data, exc.errors,
                                 intervention_values=billing_values))
    message = _("Sending mode saved.") if (result["before"] or result["after"]) \
        else _("Nothing changed.")
    if result["intervention"] is not None:
        message += " " + _intervention_message(result["intervention"])
    if request.headers.get("HX-Request"):
        response = render("customers/detail.html", "customers/_settings.html",
                          **_context(customer, saved=message))
        if result["intervention"] is not None:
            trigger(response, "interventions-changed")
        return trigger(response, "dns-checked") if result["dns"] else response
    flash(message, "success")
    return redirect(url_for("customers.detail", code=customer.code))


def _intervention_message(intervention) -> str:
    """How the saved change was recorded for billing, with the estimate beside the minutes."""
    from .billing import estimate_text

    if intervention.waived_reason:
        text = _("Intervention recorded, not billable (waived: %(reason)s).",
                 reason=intervention.waived_reason)
    elif not intervention.billable:
        text = _("Intervention recorded, not billable (return to the standard mode).")
    elif intervention.minutes is None:
        text = _("Billable intervention recorded; its minutes are to be completed.")
    else:
        text = _("Billable intervention recorded: %(minutes)d min.",
                 minutes=intervention.minutes)
    if intervention.estimate is not None:
        text += " " + _("Estimate: %(estimate)s.", estimate=estimate_text(intervention.estimate))
    return text


@bp.route("/<code>/interventions")
@roles("support")
def interventions_panel(code: str):
    """The customer's configuration interventions and estimates (refreshed after a save)."""
    customer = _customer(code)
    return render("customers/detail.html", "customers/_interventions.html",
                  **_context(customer))


@bp.route("/<code>/estimates", methods=["POST"])
@roles("admin")
def add_estimate(code: str):
    """Record an estimate given for a requested change (422 with errors, nothing saved)."""
    customer = _customer(code)
    values = {k: request.form.get(k, "").strip() for k in ("estimated_on", "minutes",
                                                           "amount", "note")}
    try:
        interventions.add_estimate(customer, values["estimated_on"], values["minutes"],
                                   values["amount"], values["note"], current_user)
    except ServiceError as exc:
        db.session.rollback()
        errors = getattr(exc, "errors", None) or {exc.field or "note": exc.message}
        return _interventions_response(customer, 422, estimate_errors=errors,
                                       estimate_values=values)
    return _interventions_response(customer, 200, estimate_saved=_("Estimate recorded."))


@bp.route("/<code>/estimates/<int:estimate_id>/withdraw", methods=["POST"])
@roles("admin")
def withdraw_estimate(code: str, estimate_id: int):
    """Withdraw an open estimate (kept for the record)."""
    customer = _customer(code)
    estimate = db.get_or_404(ConfigurationEstimate, estimate_id)
    if estimate.customer_id != customer.id:
        abort(404)
    try:
        interventions.withdraw_estimate(estimate, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return _interventions_response(customer, 422, estimate_errors={"estimate": exc.message})
    return _interventions_response(customer, 200, estimate_saved=_("Estimate withdrawn."))


def _interventions_response(customer: Customer, status: int, **extra):
    """The interventions panel for htmx (the save form's estimates refreshed), else the page."""
    if request.headers.get("HX-Request"):
        response = render("customers/detail.html", "customers/_interventions.html",
                          status=status, **_context(customer, **extra))
        return trigger(response, "estimates-changed")
    if status != 200:
        return render("customers/detail.html", status=status, **_context(customer, **extra))
    flash(extra.get("estimate_saved", ""), "success")
    return redirect(url_for("customers.detail", code=customer.code))


@bp.route("/<code>/dns-check", methods=["POST"])
@roles("admin")
def dns(code: str):
    """Look up the From domain's SPF and DMARC now and say whether relay mail will pass."""
    customer = _customer(code)
    address = request.form.get("from_address", "").strip() or customer.from_address or ""
    try:
        address = normalise(address, "from_address")
    except ServiceError:
        return render("customers/detail.html", "customers/_dns.html", status=422,
                      **_context(customer, dns=None,
                                 dns_error=_("Enter a valid From address first.")))
    if address == customer.from_address:
        result = domains.check_customer(customer)
    else:
        result = dns_check.check_domain(address.rpartition("@")[2])
    response = render("customers/detail.html", "customers/_dns.html",
                      **_context(customer, dns=result))
    # the customer's DKIM keys were checked too: their section refreshes itself
    return trigger(response, "dns-checked") if "dkim" in result else response


@bp.route("/<code>/test-connection", methods=["POST"])
@roles("admin")
def test_connection(code: str):
    """Connect, secure and authenticate with the form's values, showing each step."""
    customer = _customer(code)
    data, confirmations = _posted_settings()
    data.pop("sending_mode", None)
    error, steps = None, []
    try:
        steps = customer_settings.test_connection(customer, data, **confirmations)
    except customer_settings.SettingsInvalid as exc:
        db.session.rollback()
        error = "; ".join(exc.errors.values())
    except CredentialsError as exc:
        log.error("connection test for customer %s: %s", customer.code, exc.message)
        error = _("The stored password cannot be decrypted with the configured key "
                  "(POSTINO_CREDENTIALS_KEY changed without rotation?). Type the password "
                  "again and save.")
    return render("customers/detail.html", "customers/_probe.html", status=422 if error else 200,
                  **_context(customer, steps=steps, probe_error=error))


@bp.route("/<code>/test-email", methods=["POST"])
@roles("admin")
def test_email(code: str):
    """Send a test email through this customer's real queue and transport."""
    customer = _customer(code)
    to = request.form.get("to", "")
    try:
        message = customer_settings.send_test(customer, to, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return render("customers/detail.html", "customers/_test_email.html", status=422,
                      **_context(customer, test_to=to, test_error=exc.message))
    return render("customers/detail.html", "customers/_test_email.html",
                  **_context(customer, test_to=to, test_message=message,
                             test_url=_log_url(message)))


@bp.route("/<code>/sending", methods=["POST"])
@roles("admin")
def sending(code: str):
    """Turn this customer's sending on or off (off holds its mail, never loses it)."""
    customer = _customer(code)
    enabled = request.form.get("enabled") == "1"
    released = sending_service.set_customer(customer, enabled, current_user)
    message = (ngettext("Sending is on for this customer; %(num)d held message went back to "
                        "the queue.", "Sending is on for this customer; %(num)d held messages "
                        "went back to the queue.", released) if enabled else
               _("Sending is off for this customer: its messages are held."))
    return _switches_response(customer, message)


@bp.route("/<code>/open-tracking", methods=["POST"])
@roles("admin")
def open_tracking(code: str):
    """Turn open tracking on or off for this customer."""
    customer = _customer(code)
    customer_settings.set_open_tracking(customer, request.form.get("enabled") == "1",
                                        current_user)
    return _switches_response(customer, _("Open tracking saved."))


@bp.route("/<code>/resume", methods=["POST"])
@roles("admin")
def resume(code: str):
    """Resume a paused customer: its held mail goes back to the queue (audited)."""
    customer = _customer(code)
    released = sending_service.resume_customer(customer, current_user)
    message = ngettext("%(name)s resumed; %(num)d held message went back to the queue.",
                       "%(name)s resumed; %(num)d held messages went back to the queue.",
                       released, name=customer.name)
    return _switches_response(customer, message)


def _switches_response(customer: Customer, message: str):
    """The switches fragment for htmx (banners refreshed), else back to the page."""
    if request.headers.get("HX-Request"):
        response = render("customers/detail.html", "customers/_switches.html",
                          **_context(customer, switches_saved=message))
        return trigger(response, "banners")
    flash(message, "success")
    return redirect(request.referrer or url_for("customers.detail", code=customer.code))


@bp.route("/<code>/keys", methods=["POST"])
@roles("admin")
def create_key(code: str):
    """Issue a new API key, shown this once."""
    customer = _customer(code)
    raw = customers.create_api_key(customer, current_user, request.form.get("label"))
    return render("customers/detail.html", "customers/_keys.html",
                  **_context(customer, new_key=raw))


@bp.route("/<code>/keys/<int:key_id>/revoke", methods=["POST"])
@roles("admin")
def revoke_key(code: str, key_id: int):
    """Revoke an API key (kept for the record)."""
    customer = _customer(code)
    key = db.get_or_404(ApiKey, key_id)
    if key.customer_id != customer.id:
        abort(404)
    customers.revoke_api_key(key, current_user)
    return render("customers/detail.html", "customers/_keys.html", **_context(customer))
