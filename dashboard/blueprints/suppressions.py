"""Suppressions (support, admin): search the list, read why, add by hand, lift in place."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select

from ..auth import roles
from ..extensions import db
from ..htmx import render, stop_polling, trigger
from ..models import BounceReport, Customer, JobRun, Message, Suppression
from ..services import ServiceError
from ..services.bounces import reclassify, suppressions
from ..services.bounces.suppressions import NotAllowed
from ..services.core import settings
from ..services.messages import resend

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")

REASON_LABELS = {
    "hard_bounce": _l("Hard bounce"),
    "soft_bounce": _l("Soft bounces"),
    "complaint": _l("Complaint"),
    "manual": _l("Added by staff"),
}
SCOPE_LABELS = {"relay": _l("Our relay"), "customer": _l("Customer's own SMTP")}
STATE_LABELS = {"active": _l("Active"), "lifted": _l("Lifted or expired"), "all": _l("All")}
KIND_LABELS = {"hard": _l("hard bounce"), "soft": _l("soft bounce"),
               "failed": _l("not delivered"), "delayed": _l("delayed"),
               "delivered": _l("delivered"), "auto_reply": _l("automatic reply"),
               "complaint": _l("complaint"), "unknown": _l("unrecognised")}


@bp.context_processor
def _labels():
    """Labels and links used by this area's templates."""

    def message_url(public_id: str) -> str:
        return url_for("log.message", public_id=public_id)

    return {"reason_label": lambda r: str(REASON_LABELS.get(r, r)),
            "scope_label": lambda s: str(SCOPE_LABELS.get(s, s)),
            "kind_label": lambda k: str(KIND_LABELS.get(k, k)),
            "reason_labels": REASON_LABELS, "scope_labels": SCOPE_LABELS,
            "state_labels": STATE_LABELS, "message_url": message_url}


def _parse_date(value: str | None, field: str, errors: dict) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = _("Use the format YYYY-MM-DD.")
        return None


def _filters(args) -> tuple[suppressions.Filters, dict]:
    """The search from the query string, with errors per field."""
    errors: dict[str, str] = {}
    since = _parse_date(args.get("since"), "since", errors)
    until = _parse_date(args.get("until"), "until", errors)
    state = args.get("state") or "active"
    filters = suppressions.Filters(
        q=(args.get("q") or "").strip()[:320],
        reason=args.get("reason") if args.get("reason") in REASON_LABELS else "",
        scope=args.get("scope") if args.get("scope") in SCOPE_LABELS else "",
        since=datetime.combine(since, time.min, UTC) if since else None,
        until=datetime.combine(until, time.min, UTC) + timedelta(days=1)
        if until else None,
        state=state if state in STATE_LABELS else "active")
    filters.since_date, filters.until_date = since, until
    return filters, errors


def _entry_context(entry: Suppression) -> dict:
    """Everything one row shows: reports, removal history, the lift preview."""
    reports = suppressions.reports_for(entry)
    ids = {r.message_id for r in reports if r.message_id} | (
        {entry.message_id} if entry.message_id else set())
    message_ids = dict(db.session.execute(
        select(Message.id, Message.public_id).where(Message.id.in_(ids))).all()) if ids else {}
    return {"entry": entry, "reports": reports, "message_ids": message_ids,
            "removals": suppressions.history(entry.address),
            "preview": suppressions.preview_lift(entry),
            "can_lift": suppressions.can_lift(entry, current_user),
            "is_active": entry.lifted_at is None and (
                entry.expires_at is None or entry.expires_at > datetime.now(UTC))}


def _page_context(filters: suppressions.Filters, errors: dict, add_errors: dict | None = None,
                  add_values: dict | None = None) -> dict:
    """The Suppressions page's context, built in one place."""
    entries = suppressions.search(filters) if not errors else []
    return {"filters": filters, "errors": errors, "rows": [_entry_context(e) for e in entries],
            "counts": suppressions.counts(),
            "customers": db.session.scalars(select(Customer).order_by(Customer.code)).all(),
            "add_errors": add_errors or {}, "add_values": add_values or {},
            "window_days": settings.get("billing_window_days")}


@bp.route("/")
@roles("support")
def index():
    """The list, searchable by address or domain and filterable; htmx gets the results only."""
    filters, errors = _filters(request.args)
    return render("suppressions/index.html", "suppressions/_results.html",
                  status=422 if errors else 200, **_page_context(filters, errors))


@bp.route("/", methods=["POST"])
@roles("support")
def add():
    """Add an address by hand, with a reason (422 with errors beside the fields)."""
    form = request.form
    values = {k: (form.get(k) or "").strip() for k in ("address", "reason", "scope", "customer")}
    customer = None
    if values["customer"].isdigit():
        customer = db.session.get(Customer, int(values["customer"]))
    try:
        entry = suppressions.add_manual(values["address"], values["reason"], current_user,
                                        scope=values["scope"] or "relay", customer=customer)
    except NotAllowed:
        db.session.rollback()
        abort(403)
    except ServiceError as exc:
        db.session.rollback()
        filters, errors = _filters({})
        return render("suppressions/index.html", status=422,
                      **_page_context(filters, errors, {exc.field or "address": exc.message},
                                      values))
    flash(_("%(address)s added to the suppression list.", address=entry.address), "success")
    return redirect(url_for("suppressions.index", q=entry.address))


@bp.route("/<int:entry_id>")
@roles("support")
def row(entry_id: int):
    """One entry's row (the lift form's Cancel comes back here)."""
    entry = db.get_or_404(Suppression, entry_id)
    return render("suppressions/_row_page.html", "suppressions/_row.html",
                  **_entry_context(entry))


def _lift_context(entry: Suppression, errors: dict | None = None,
                  values: dict | None = None) -> dict:
    suggested = suppressions.suggested_customer(entry)
    values = values or {"customer": str(suggested.id) if suggested else "", "minutes": "",
                        "reason": "", "ticket": "", "resend": ""}
    last = suppressions.last_suppressed_message(entry)
    return {**_entry_context(entry), "errors": errors or {}, "values": values,
            "customers": db.session.scalars(select(Customer).order_by(Customer.code)).all(),
            "last_suppressed": last}


@bp.route("/<int:entry_id>/lift", methods=["GET", "POST"])
@roles("support")
def lift(entry_id: int):
    """GET: the lift form in place of the row. POST: lift (422 with errors, nothing changed)."""
    entry = db.get_or_404(Suppression, entry_id)
    if not suppressions.can_lift(entry, current_user):
        abort(403)
    if request.method == "GET":
        return render("suppressions/_lift_page.html", "suppressions/_lift.html",
                      **_lift_context(entry))
    form = request.form
    values = {k: (form.get(k) or "").strip() for k in ("customer", "reason", "ticket",
                                                       "minutes", "resend")}
    customer = db.session.get(Customer, int(values["customer"])) \
        if values["customer"].isdigit() else None
    try:
        lift_entry = resend.lift_and_resend if values["resend"] else suppressions.lift
        removal = lift_entry(entry, customer, values["reason"], values["ticket"],
                             values["minutes"] or "0", current_user)
    except NotAllowed:
        db.session.rollback()
        abort(403)
    except ServiceError as exc:
        db.session.rollback()
        return render("suppressions/_lift_page.html", "suppressions/_lift.html", status=422,
                      **_lift_context(entry, {exc.field or "reason": exc.message}, values))
    if request.headers.get("HX-Request"):
        response = render("suppressions/_row_page.html", "suppressions/_row.html",
                          **_entry_context(entry), lifted=removal)
        return trigger(response, "suppression-lifted", {"id": entry.id})
    flash(_("Suppression lifted."), "success")
    return redirect(url_for("suppressions.index", q=entry.address, state="all"))


@bp.route("/reports/<int:report_id>")
@roles("support")
def report(report_id: int):
    """A received report as it arrived (size-capped), as evidence."""
    bounce = db.get_or_404(BounceReport, report_id)
    return render("suppressions/report.html", "suppressions/_report.html", bounce=bounce)


@bp.route("/reclassify", methods=["POST"])
@roles("admin")
def reclassify_start():
    """Re-read every automatic entry's evidence with the current rules (or only preview it):
    a background run whose progress the page polls."""
    dry_run = request.form.get("dry_run") in ("1", "on", "true")
    run = reclassify.start(current_user, dry_run)
    if not request.headers.get("HX-Request"):
        return redirect(url_for("suppressions.reclassify_progress", run_id=run.id))
    return render("suppressions/reclassify.html", "suppressions/_reclassify.html", run=run)


@bp.route("/reclassify/<int:run_id>")
@roles("admin")
def reclassify_progress(run_id: int):
    """A reclassify run: progress while it runs, then its summary (polling stops: 286)."""
    run = db.get_or_404(JobRun, run_id)
    if run.job != reclassify.JOB:
        abort(404)
    response = render("suppressions/reclassify.html", "suppressions/_reclassify.html", run=run)
    if run.status != "running" and request.headers.get("HX-Request"):
        return trigger(stop_polling(response), "suppressions-changed")
    return response
