"""Billing (billing, admin): suppression removals and configuration interventions per customer
per month, the customers on the paid customer_smtp option, CSV, invoiced marks."""
from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_babel import format_currency, format_date
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from ..auth import roles
from ..extensions import db
from ..htmx import render
from ..models import ConfigurationEstimate, ConfigurationIntervention, Customer, SuppressionRemoval
from ..services import ServiceError
from ..services.billing import billing
from ..services.core import settings

bp = Blueprint("billing", __name__, url_prefix="/billing")

# The sending fields an intervention may name, in the user's language (never their values).
FIELD_LABELS = {
    "sending_mode": _l("sending mode"),
    "from_address": _l("From address"),
    "from_name": _l("From name"),
    "smtp_host": _l("SMTP server"),
    "smtp_port": _l("port"),
    "smtp_security": _l("security"),
    "smtp_auth": _l("authentication"),
    "smtp_username": _l("user name"),
    "smtp_password": _l("password"),
    "smtp_verify_tls": _l("TLS verification"),
    "smtp_ca_pem": _l("trusted certificate"),
    "smtp_timeout": _l("timeout"),
}
EVIDENCE_LABELS = {
    "change": _l("recorded change"),
    "audit": _l("from the audit log"),
    "created": _l("estimated: the customer's creation date, check before invoicing"),
    "unrecorded": _l("start not recorded: check before invoicing"),
}
DETAILS = ("removals", "interventions")


def euros(cents: int | None) -> str:
    """Euro cents as an amount in the user's language (150,00 € / €150.00)."""
    return format_currency((cents or 0) / 100, "EUR") if cents is not None else ""


def estimate_text(estimate: ConfigurationEstimate, dated: bool = True) -> str:
    """An estimate in one line: its date (unless `dated` is False), minutes and/or amount."""
    parts = [format_date(estimate.estimated_on, "short")] if dated else []
    if estimate.minutes:
        parts.append(_("%(minutes)d min", minutes=estimate.minutes))
    if estimate.amount_cents:
        parts.append(euros(estimate.amount_cents))
    return " · ".join(parts)


def month_name(month) -> str:
    """'November 2026' in the user's language."""
    return format_date(month, "MMMM yyyy")


@bp.app_context_processor
def _helpers():
    """Billing words shared with the customer page (interventions, estimates)."""
    return {"euros": euros, "estimate_text": estimate_text, "month_name": month_name,
            "field_label": lambda name: str(FIELD_LABELS.get(name, name)),
            "evidence_label": lambda e: str(EVIDENCE_LABELS.get(e, e))}


def _filters(args) -> tuple[billing.Filters, dict]:
    """The period, customer and flags from the query string, with errors per field."""
    filters = billing.default_filters()
    errors: dict[str, str] = {}
    for name, attr in (("from", "from_month"), ("to", "to_month"), ("month", "month")):
        try:
            value = billing.parse_month(args.get(name))
        except ServiceError as exc:
            errors[name] = exc.message
            continue
        if value is not None:
            setattr(filters, attr, value)
    if filters.from_month > filters.to_month:
        errors["to"] = _("The end of the period is before its start.")
    customer = args.get("customer") or ""
    if customer:
        if not customer.isdigit() or db.session.get(Customer, int(customer)) is None:
            errors["customer"] = _("Unknown customer.")
        else:
            filters.customer_id = int(customer)
    filters.billable_only = args.get("billable") == "1"
    return filters, errors


def _query(filters: billing.Filters, **extra) -> dict:
    """The filters as query-string arguments (for links and the CSV)."""
    args = {"from": filters.from_month.strftime("%Y-%m"), "to": filters.to_month.strftime("%Y-%m")}
    if filters.customer_id:
        args["customer"] = filters.customer_id
    if filters.billable_only:
        args["billable"] = "1"
    args.update(extra)
    return args


def _detail(args, filters: billing.Filters) -> tuple[str, billing.Filters] | None:
    """The list shown under the figures (the page's `show` arguments), if any and valid."""
    kind = args.get("show")
    if kind not in DETAILS:
        return None
    detail = billing.Filters(filters.from_month, filters.to_month, filters.customer_id,
                             args.get("show_billable") == "1")
    try:
        detail.month = billing.parse_month(args.get("show_month"))
    except ServiceError:
        return None
    customer = args.get("show_customer") or ""
    if customer.isdigit() and db.session.get(Customer, int(customer)) is not None:
        detail.customer_id = int(customer)
    return kind, detail


def _links(filters: billing.Filters):
    """link(kind, month, customer, billable) → (fragment URL, page URL) of a figure's list.

    The fragment fills the detail below the figures; the page URL (pushed into the history)
    is the Billing page with the same list open, so reload and Back keep it.
    """
    endpoints = {"removals": "billing.removals", "interventions": "billing.interventions"}

    def link(kind: str, month, customer, billable: bool = False) -> tuple[str, str]:
        code = customer.id if customer else ""
        fragment = {"month": month.strftime("%Y-%m"), "customer": code}
        page = {"show": kind, "show_month": fragment["month"], "show_customer": code}
        if billable:
            fragment["billable"] = page["show_billable"] = "1"
        return (url_for(endpoints[kind], **_query(filters, **fragment)),
                url_for("billing.index", **_query(filters, **page)))

    return link


def _page_context(filters: billing.Filters, errors: dict, args=None) -> dict:
    """The Billing page's context, built in one place."""
    rows = billing.summary(filters) if not errors else []
    changes = billing.intervention_summary(filters) if not errors else []
    detail = _detail(args or {}, filters) if not errors else None
    context = {
        "filters": filters, "errors": errors, "rows": rows, "total": billing.totals(rows),
        "intervention_rows": changes, "intervention_total": billing.intervention_totals(changes),
        "pending": billing.pending_interventions(filters.customer_id) if not errors else [],
        "smtp_option": billing.customer_smtp_option(filters) if not errors else [],
        "customers": db.session.scalars(select(Customer).order_by(Customer.code)).all(),
        "query": _query(filters), "query_for": lambda **kw: _query(filters, **kw),
        "link": _links(filters), "window_days": settings.get("billing_window_days"),
        "detail_kind": None,
    }
    if detail is not None:
        kind, detail_filters = detail
        context.update(_detail_context(kind, detail_filters))
    return context


def _detail_context(kind: str, filters: billing.Filters) -> dict:
    """The list behind one figure: removals or interventions, with its heading's customer."""
    items = (billing.removals(filters) if kind == "removals"
             else billing.configuration_interventions(filters))
    return {"detail_kind": kind, "detail_filters": filters,
            "removals": items if kind == "removals" else [],
            "interventions": items if kind == "interventions" else [],
            "detail_customer": db.session.get(Customer, filters.customer_id)
            if filters.customer_id else None}


@bp.route("/")
@roles("billing")
def index():
    """Removals and interventions per customer per month, the customer_smtp option; htmx gets
    the sections only. `show=…` opens the list behind one figure (a pushed URL)."""
    filters, errors = _filters(request.args)
    return render("billing/index.html", "billing/_sections.html",
                  status=422 if errors else 200,
                  **_page_context(filters, errors, request.args))


@bp.route("/removals")
@roles("billing")
def removals():
    """The removals behind one figure (a customer's month, all or billable only)."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return render("billing/removals.html", "billing/_removals.html",
                  **_detail_context("removals", filters), filters=filters)


@bp.route("/interventions")
@roles("billing")
def interventions():
    """The configuration interventions behind one figure (a customer's month)."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return render("billing/removals.html", "billing/_interventions.html",
                  **_detail_context("interventions", filters), filters=filters)


def _csv(text: str, name: str) -> Response:
    """A CSV download."""
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/export.csv")
@roles("billing")
def export():
    """The removals of the period as CSV."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return _csv(billing.csv_text(filters),
                f"removals-{filters.from_month:%Y-%m}-{filters.to_month:%Y-%m}.csv")


@bp.route("/interventions.csv")
@roles("billing")
def export_interventions():
    """The configuration interventions of the period as CSV (field names, never values)."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return _csv(billing.interventions_csv(filters),
                f"interventions-{filters.from_month:%Y-%m}-{filters.to_month:%Y-%m}.csv")


@bp.route("/customer-smtp.csv")
@roles("billing")
def export_customer_smtp():
    """The customers on the paid customer_smtp option in the period, month by month, as CSV."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return _csv(billing.customer_smtp_csv(filters),
                f"customer-smtp-{filters.from_month:%Y-%m}-{filters.to_month:%Y-%m}.csv")


@bp.route("/removals/<int:removal_id>/invoiced", methods=["POST"])
@roles("billing")
def invoiced(removal_id: int):
    """Mark one billable removal invoiced; htmx gets the updated row."""
    removal = db.get_or_404(SuppressionRemoval, removal_id)
    error = None
    try:
        billing.mark_invoiced(removal, current_user)
    except ServiceError as exc:
        db.session.rollback()
        error = exc.message
    if request.headers.get("HX-Request"):
        return render("billing/_removal_row.html", removal=removal, error=error,
                      status=422 if error else 200)
    flash(error or _("Marked invoiced."), "error" if error else "success")
    return redirect(request.referrer or url_for("billing.index"))


def _intervention_answer(intervention: ConfigurationIntervention, error: str | None,
                         done: str, **extra):
    """The updated intervention row for htmx, else back to the page with a flash."""
    if request.headers.get("HX-Request"):
        return render("billing/_intervention_row.html", intervention=intervention, error=error,
                      status=422 if error else 200, **extra)
    flash(error or done, "error" if error else "success")
    return redirect(request.referrer or url_for("billing.index"))


@bp.route("/interventions/<int:intervention_id>/invoiced", methods=["POST"])
@roles("billing")
def intervention_invoiced(intervention_id: int):
    """Mark one billable intervention invoiced (audited); htmx gets the updated row."""
    intervention = db.get_or_404(ConfigurationIntervention, intervention_id)
    error = None
    try:
        billing.mark_intervention_invoiced(intervention, current_user)
    except ServiceError as exc:
        db.session.rollback()
        error = exc.message
    return _intervention_answer(intervention, error, _("Marked invoiced."))


@bp.route("/interventions/<int:intervention_id>/minutes", methods=["POST"])
@roles("billing")
def intervention_minutes(intervention_id: int):
    """Fill in the minutes of an intervention recorded without them (audited)."""
    intervention = db.get_or_404(ConfigurationIntervention, intervention_id)
    error = None
    typed = request.form.get("minutes", "").strip()
    try:
        billing.complete_minutes(intervention, typed, current_user)
    except ServiceError as exc:
        db.session.rollback()
        error = exc.message
    return _intervention_answer(intervention, error, _("Minutes saved."), typed=typed)
