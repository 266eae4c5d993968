"""DKIM keys: the section of a customer's page (its own From domain) and of Settings (our
senders' domains). Support may read a customer's records; only admins act on keys."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from ..auth import roles
from ..extensions import db
from ..htmx import render
from ..models import Customer, DkimKey
from ..services import ServiceError
from ..services.accounts import customers
from ..services.delivery import dkim_keys

bp = Blueprint("dkim", __name__, url_prefix="/dkim")


@dataclass
class KeyView:
    """A key as the section shows it: never its private halves."""

    key: DkimKey
    records: list[dkim_keys.Record]
    signing: bool
    stale_domain: bool  # a customer's key for a domain its From address no longer uses


def section_context(customer: Customer | None, **extra) -> dict:
    """Everything the DKIM section needs, for a customer (None: our own senders' domains)."""
    if customer is not None:
        from_domain = dkim_keys.domain_of(customer.from_address)
        domains = [from_domain] if from_domain else []
    else:
        from_domain = None
        domains = dkim_keys.own_domains()
    views, retired = [], []
    for key in dkim_keys.keys_of(customer):
        if key.state == "retired":
            retired.append(key)
            continue
        views.append(KeyView(key, dkim_keys.records(key), dkim_keys.is_signing(key),
                             customer is not None and key.domain != from_domain))
    context = {
        "dkim_customer": customer,
        "dkim_keys": views,
        "dkim_retired": retired,
        "dkim_domains": domains,
        "dkim_from_domain": from_domain,
        "dkim_default_selector": dkim_keys.default_selector(domains[0]) if domains else "",
        "dkim_prepared": any(v.key.state == "prepared" for v in views),
        "dkim_can_edit": current_user.role == "admin",
        "dkim_mode": customer.sending_mode if customer is not None else "standard",
        "dkim_section_url": (url_for("dkim.customer_section", code=customer.code)
                             if customer is not None else url_for("dkim.own_section")),
        "dkim_generate_url": (url_for("dkim.generate_for_customer", code=customer.code)
                              if customer is not None else url_for("dkim.generate_own")),
        "dkim_errors": {},
        "dkim_values": {},
        "dkim_message": None,
        "dkim_confirm": None,
    }
    context.update(extra)
    return context


def _owner_page(customer: Customer | None) -> str:
    """Where the section lives, for requests without htmx."""
    if customer is not None:
        return url_for("customers.detail", code=customer.code) + "#dkim"
    return url_for("settings.index") + "#dkim"


def _respond(customer: Customer | None, status: int = 200, message: str | None = None,
             **extra):
    """The section for htmx; otherwise back to the owner's page with the message flashed."""
    if request.headers.get("HX-Request"):
        return render("dkim/_section.html", status=status,
                      **section_context(customer, dkim_message=message, **extra))
    if message or extra.get("dkim_errors"):
        flash(message or "; ".join(extra["dkim_errors"].values()),
              "success" if status == 200 else "error")
    return redirect(_owner_page(customer))


def _customer(code: str) -> Customer:
    """The customer with this code, or 404."""
    customer = customers.by_code(code)
    if customer is None:
        abort(404)
    return customer


def _key(key_id: int) -> DkimKey:
    """The key with this id, or 404."""
    return db.get_or_404(DkimKey, key_id)


@bp.route("/customers/<code>")
@roles("support")
def customer_section(code: str):
    """A customer's DKIM section (refreshed in place when its settings change)."""
    customer = _customer(code)
    if not request.headers.get("HX-Request"):
        return redirect(_owner_page(customer))
    return render("dkim/_section.html", **section_context(customer))


@bp.route("/own")
@roles("admin")
def own_section():
    """The DKIM section of our own senders' domains."""
    if not request.headers.get("HX-Request"):
        return redirect(_owner_page(None))
    return render("dkim/_section.html", **section_context(None))


def _generate(customer: Customer | None):
    """Generate a key from the posted form (selector, domain, Ed25519 too)."""
    values = {"selector": request.form.get("selector", "").strip(),
              "domain": request.form.get("domain", "").strip(),
              "ed25519": request.form.get("ed25519") == "1"}
    try:
        key = dkim_keys.generate(customer, current_user, domain=values["domain"] or None,
                                 selector=values["selector"] or None,
                                 ed25519=values["ed25519"])
    except ServiceError as exc:
        db.session.rollback()
        return _respond(customer, 422, dkim_errors={exc.field or "selector": exc.message},
                        dkim_values=values)
    if key.state == "active":
        message = _("Key %(selector)s generated: publish its record below, then check DNS. "
                    "Mail is signed once the record is found.", selector=key.selector)
    else:
        message = _("Key %(selector)s prepared: publish its record, check DNS, then switch "
                    "to it. The active key keeps signing until then.", selector=key.selector)
    return _respond(customer, message=message)


@bp.route("/customers/<code>/keys", methods=["POST"])
@roles("admin")
def generate_for_customer(code: str):
    """Generate a DKIM key for the customer's From domain (a prepared one when it has one)."""
    return _generate(_customer(code))


@bp.route("/own/keys", methods=["POST"])
@roles("admin")
def generate_own():
    """Generate a DKIM key for one of our senders' domains."""
    return _generate(None)


@bp.route("/keys/<int:key_id>/check", methods=["POST"])
@roles("admin")
def check(key_id: int):
    """Look the key's records up now: signing starts (or stops) with the answer."""
    key = _key(key_id)
    result = dkim_keys.check(key, current_user)
    if result["errors"]:
        message = _("The DNS lookup did not answer: nothing changed. Try again later.")
    elif key.verified_at is not None:
        message = _("DNS checked: the record of %(selector)s matches our key.",
                    selector=key.selector)
    else:
        message = _("DNS checked: the record of %(selector)s is not published as shown.",
                    selector=key.selector)
    return _respond(key.customer, message=message)


@bp.route("/keys/<int:key_id>/switch", methods=["POST"])
@roles("admin")
def switch(key_id: int):
    """Switch signing to a prepared key; an unverified one needs a confirmation."""
    key = _key(key_id)
    try:
        replaced = dkim_keys.activate(key, current_user,
                                      confirm_unverified=request.form.get("confirm") == "1")
    except dkim_keys.NeedsConfirmation as exc:
        db.session.rollback()
        return _respond(key.customer, 422, dkim_confirm={"key": key, "text": exc.message})
    except ServiceError as exc:
        db.session.rollback()
        return _respond(key.customer, 422, dkim_errors={"state": exc.message})
    if replaced is not None:
        message = _("Switched to %(selector)s. Keep the record of %(old)s published for a few "
                    "days, then retire it.", selector=key.selector, old=replaced.selector)
    else:
        message = _("Switched to %(selector)s.", selector=key.selector)
    return _respond(key.customer, message=message)


@bp.route("/keys/<int:key_id>/force", methods=["POST"])
@roles("admin")
def force(key_id: int):
    """Sign with a key whose record is not verified (confirmed in the page), or stop."""
    key = _key(key_id)
    forced = request.form.get("forced") == "1"
    try:
        dkim_keys.set_forced(key, forced, current_user)
    except ServiceError as exc:
        db.session.rollback()
        return _respond(key.customer, 422, dkim_errors={"state": exc.message})
    message = (_("Signing with %(selector)s is forced.", selector=key.selector) if forced
               else _("Signing with %(selector)s follows the DNS check again.",
                      selector=key.selector))
    return _respond(key.customer, message=message)


@bp.route("/keys/<int:key_id>/retire", methods=["POST"])
@roles("admin")
def retire(key_id: int):
    """Retire a key (confirmed in the page): it never signs again; its private key is wiped."""
    key = _key(key_id)
    dkim_keys.retire(key, current_user)
    return _respond(key.customer, message=_(
        "Key %(selector)s retired: its record can now be removed from DNS.",
        selector=key.selector))
