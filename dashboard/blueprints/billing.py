"""Billing (billing, admin): suppression removals per customer per month, CSV, invoiced marks."""
from __future__ import annotations

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from ..auth import roles
from ..extensions import db
from ..htmx import render
from ..models import Customer, SuppressionRemoval
from ..services import ServiceError, billing, settings

bp = Blueprint("billing", __name__, url_prefix="/billing")


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


def _page_context(filters: billing.Filters, errors: dict) -> dict:
    """The Billing page's context, built in one place."""
    rows = billing.summary(filters) if not errors else []
    return {"filters": filters, "errors": errors, "rows": rows, "total": billing.totals(rows),
            "customers": db.session.scalars(select(Customer).order_by(Customer.code)).all(),
            "query": _query(filters), "query_for": lambda **kw: _query(filters, **kw),
            "window_days": settings.get("billing_window_days")}


@bp.route("/")
@roles("billing")
def index():
    """Removals per customer per month; htmx gets the summary only."""
    filters, errors = _filters(request.args)
    return render("billing/index.html", "billing/_summary.html",
                  status=422 if errors else 200, **_page_context(filters, errors))


@bp.route("/removals")
@roles("billing")
def removals():
    """The removals behind one figure (a customer's month, all or billable only)."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    return render("billing/removals.html", "billing/_removals.html",
                  removals=billing.removals(filters), filters=filters,
                  customer=db.session.get(Customer, filters.customer_id)
                  if filters.customer_id else None)


@bp.route("/export.csv")
@roles("billing")
def export():
    """The removals of the period as CSV."""
    filters, errors = _filters(request.args)
    if errors:
        abort(422)
    name = f"removals-{filters.from_month:%Y-%m}-{filters.to_month:%Y-%m}.csv"
    return Response(billing.csv_text(filters), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


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
