"""Doctor (support, admin): ask about an address or a reference, read the verdicts, fix in place."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import select

from ..auth import roles
from ..extensions import db
from ..htmx import render, trigger
from ..models import Customer, Message, Suppression
from ..services import ServiceError
from ..services.accounts import customers
from ..services.delivery import sending
from ..services.operations import doctor

bp = Blueprint("doctor", __name__, url_prefix="/doctor")


def _query(source) -> dict:
    """The question (address, reference, customer code) from query args or form fields."""
    return {key: (source.get(key) or "").strip() for key in ("address", "reference", "customer")}


def _customer(code: str) -> Customer | None:
    """The customer named by code, None for 'any'; an unknown code is a field error."""
    if not code:
        return None
    customer = customers.by_code(code)
    if customer is None:
        raise ServiceError(_("Unknown customer %(code)s.", code=code), "customer")
    return customer


def _context(query: dict, errors: dict | None = None, lift_errors: dict | None = None,
             notice: str | None = None, problem: str | None = None) -> tuple[dict, int]:
    """Everything the doctor page needs, built in one place; returns (context, status)."""
    errors = dict(errors or {})
    diagnosis = None
    if any(query.values()) and not errors:
        try:
            diagnosis = doctor.diagnose(query["address"], query["reference"],
                                        _customer(query["customer"]))
        except ServiceError as exc:
            errors[exc.field or "address"] = exc.message
    all_customers = db.session.scalars(select(Customer).order_by(Customer.name)).all()
    status = 422 if (errors or lift_errors or problem) else 200
    return {"query": query, "errors": errors, "diagnosis": diagnosis, "customers": all_customers,
            "lift_errors": lift_errors or {}, "notice": notice, "problem": problem,
            "message_url": lambda m: doctor.url_or_none("log.message",
                                                        public_id=m.public_id)}, status


def _answer(query: dict, notice: str | None = None, lift_errors: dict | None = None,
            problem: str | None = None):
    """The page (or its htmx partial) after an action; plain posts redirect back."""
    if not request.headers.get("HX-Request") and not lift_errors:
        if notice or problem:
            flash(notice or problem, "success" if notice else "error")
        return redirect(url_for("doctor.index", **{k: v for k, v in query.items() if v}))
    context, status = _context(query, lift_errors=lift_errors, notice=notice, problem=problem)
    response = render("doctor/index.html", "doctor/_doctor.html", status=status, **context)
    return trigger(response, "banners") if notice else response


@bp.route("/")
@roles("support")
def index():
    """Ask the doctor: verdicts for an address and/or a reference (422 on bad input)."""
    context, status = _context(_query(request.args))
    return render("doctor/index.html", "doctor/_doctor.html", status=status, **context)


@bp.route("/turn-on", methods=["POST"])
@roles("admin")
def turn_on():
    """Cause (a): turn sending on for everyone or for one customer, then ask again."""
    query = _query(request.form)
    if request.form.get("scope") == "customer":
        customer = _customer_or_404(request.form.get("code", ""))
        released = sending.set_customer(customer, True, actor=current_user)
    else:
        released = sending.set_global(True, actor=current_user)
    return _answer(query, ngettext("Sending is on: %(num)d held message released.",
                                   "Sending is on: %(num)d held messages released.", released))


@bp.route("/resume", methods=["POST"])
@roles("admin")
def resume():
    """Cause (a): resume a paused customer, then ask again."""
    query = _query(request.form)
    customer = _customer_or_404(request.form.get("code", ""))
    released = sending.resume_customer(customer, actor=current_user)
    return _answer(query, ngettext("%(name)s resumed: %(num)d held message released.",
                                   "%(name)s resumed: %(num)d held messages released.",
                                   released, name=customer.name))


@bp.route("/lift", methods=["POST"])
@roles("support")
def lift():
    """Cause (c): lift a suppression with a reason, the customer who asked and the minutes."""
    query = _query(request.form)
    entry = db.get_or_404(Suppression, request.form.get("suppression_id", type=int) or 0)
    if entry.reason == "complaint" and current_user.role != "admin":
        abort(403)  # a complaint is lifted by an admin only
    minutes = request.form.get("minutes", "0").strip() or "0"
    try:
        requester = _customer(request.form.get("requester", "").strip())
        if requester is None:
            raise ServiceError(_("Choose the customer who asked."), "requester")
        if not minutes.isdigit():
            raise ServiceError(_("Minutes must be between 0 and 1440."), "minutes")
        doctor.lift(entry, request.form.get("reason", ""), requester, int(minutes),
                    actor=current_user)
    except ServiceError as exc:
        db.session.rollback()
        field = "requester" if exc.field in ("customer", "requester") else (exc.field or "reason")
        return _answer(query, lift_errors={entry.id: {field: exc.message,
                                                      "values": dict(request.form)}})
    return _answer(query, _("%(address)s lifted from the suppression list.",
                            address=entry.address))


@bp.route("/resend", methods=["POST"])
@roles("support")
def resend():
    """Cause (d): resend a failed message (a new message linked to the original)."""
    query = _query(request.form)
    original = db.first_or_404(select(Message).where(
        Message.public_id == request.form.get("public_id", "")))
    try:
        message = doctor.resend(original, actor=current_user)
    except ServiceError as exc:  # e.g. the recipient is still suppressed
        db.session.rollback()
        return _answer(query, problem=exc.message)
    return _answer(query, _("Resent as %(id)s (%(status)s).", id=message.public_id,
                            status=message.status))


def _customer_or_404(code: str) -> Customer:
    """The customer named by an action's code, or 404."""
    customer = customers.by_code(code or "")
    if customer is None:
        abort(404)
    return customer
