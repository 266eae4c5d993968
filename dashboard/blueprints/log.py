"""Log (support): search messages, read one message's timeline, resend, bulk resend, export."""
from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, flash, redirect, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from .. import reasons
from ..auth import roles
from ..extensions import db, htmx
from ..htmx import render, stop_polling, trigger
from ..models import EVENTS, SENDING_MODES, STATUSES, Customer, JobRun, Message, utcnow
from ..services import ServiceError
from ..services.core import settings
from ..services.messages import log_search
from ..services.messages import resend as resend_service

bp = Blueprint("log", __name__, url_prefix="/log")

CSV_COLUMNS = ("created_at", "message_id", "customer", "event", "reference", "recipient",
               "subject", "status", "status_reason", "attempts", "last_smtp_code",
               "last_smtp_text", "sent_at", "transport", "resend_of", "fault_class",
               "fault_reason")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _log_search(url: str | None) -> str | None:
    """`url` when it is a search of the Log on this site (path and query only), else None."""
    if not url or any(c == "\\" or ord(c) < 32 or ord(c) == 127 for c in url):
        return None
    parts = urlsplit(url)
    if parts.scheme or (parts.netloc and parts.netloc != request.host):
        return None
    if parts.path != url_for("log.index"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


@bp.context_processor
def _back_to_search():
    """`log_back`: the Log search on screen, for links to a message that lead back to it."""
    if request.endpoint == "log.index":
        return {"log_back": request.full_path if request.query_string else None}
    return {"log_back": _log_search(request.headers.get("HX-Current-URL"))}


def _field_errors(errors: dict[str, str]) -> dict[str, str]:
    """Search errors in the user's language."""
    texts = {"unknown value": _("Unknown value."), "not a date (YYYY-MM-DD)":
             _("Not a date (YYYY-MM-DD)."), "before the start date":
             _("The end date is before the start date.")}
    return {name: texts.get(text, text) for name, text in errors.items()}


def _page_context(search: log_search.Search, errors: dict[str, str]) -> dict:
    """Everything the Log page and its results fragment need, built in one place."""
    results = None if errors else log_search.run(search)
    return {
        "search": search,
        "results": results,
        "errors": _field_errors(errors),
        "customers": log_search.customer_choices(),
        "events": EVENTS,
        "statuses": STATUSES,
        "modes": SENDING_MODES,
        "retention_days": settings.get("retention_days"),
        "bulk_cap": resend_service.BULK_CAP,
        "default_from": log_search.default_from(),
    }


@bp.route("/")
@roles("support")
def index():
    """The Log page: one search box, filters, newest first, keyset pages."""
    search, errors = log_search.parse(request.args)
    context = _page_context(search, errors)
    return render("log/index.html", "log/_results.html", 422 if errors else 200, **context)


def _get_message(public_id: str) -> Message:
    message = db.session.scalar(select(Message).where(Message.public_id == public_id[:64]))
    if message is None:
        abort(404)
    return message


def _timeline(message: Message, resends: list[Message]) -> list[dict]:
    """The message's events, plus its resends, in time order."""
    items = [{"at": e.at, "type": e.type, "event": e, "resend": None} for e in message.events]
    items += [{"at": r.created_at, "type": "resent_as", "event": None, "resend": r}
              for r in resends]
    return sorted(items, key=lambda item: item["at"])


def _message_context(message: Message, **extra) -> dict:
    resends = resend_service.resends_of(message)
    return {
        # the search the user came from ("← Log" returns to it); safe same-site paths only
        "back": _log_search(request.values.get("back")),
        "message": message,
        "resends": resends,
        "timeline": _timeline(message, resends),
        "suppression": resend_service.blocking_suppression(message),
        "retention_days": settings.get("retention_days"),
        **extra,
    }


@bp.route("/<public_id>")
@roles("support")
def message(public_id: str):
    """One message: headers sent, transport, content, attachments and its timeline."""
    found = db.session.scalar(select(Message).where(Message.public_id == public_id[:64]))
    if found is None:
        return render("log/missing.html", status=404, public_id=public_id,
                      retention_days=settings.get("retention_days"),
                      back=_log_search(request.args.get("back")))
    return render("log/message.html", **_message_context(found))


@bp.route("/<public_id>/resend", methods=["POST"])
@roles("support")
def resend(public_id: str):
    """Resend one message (optionally re-rendered); answers the updated row or page part."""
    original = _get_message(public_id)
    note = request.form.get("note")
    rerender = request.form.get("rerender") in ("1", "on", "true")
    target = request.form.get("target", "page")
    try:
        copy = resend_service.resend(original, current_user, note=note, rerender=rerender)
    except ServiceError as exc:
        db.session.rollback()
        suppression = getattr(exc, "suppression", None)
        if not htmx:
            flash(_("Not resent: %(address)s is on the suppression list.",
                    address=original.recipient) if suppression is not None
                  else _("Not resent: %(error)s", error=exc.message), "error")
            return redirect(url_for("log.message", public_id=original.public_id,
                                    back=_log_search(request.form.get("back"))))
        return _resend_answer(original, None, target, 422, refused=True,
                              suppression=suppression, error=exc.message)
    if not htmx:
        flash(_("Resent as a new message."), "success")
        return redirect(url_for("log.message", public_id=copy.public_id,
                                back=_log_search(request.form.get("back"))))
    return trigger(_resend_answer(original, copy, target), "message-resent",
                   {"id": copy.public_id})


def _resend_answer(original: Message, copy: Message | None, target: str, status: int = 200,
                   **extra) -> Response:
    """The part a resend replaces: the table row(s) or the message page's resend box."""
    if target == "row":
        customers = {original.customer_id: original.customer}
        resent = {original.id} if (copy or resend_service.resends_of(original)) else set()
        return render("log/_resent_rows.html", status=status, original=original, copy=copy,
                      customers=customers, resent_ids=resent, **extra)
    context = _message_context(original)
    context.update(extra)
    return render("log/_resends.html", status=status, just_resent=copy, **context)


@bp.route("/export.csv")
@roles("support")
def export():
    """The current search as CSV, streamed row by row (UTF-8, header row)."""
    search, errors = log_search.parse(request.args)
    if errors:
        abort(422)
    codes = dict(db.session.execute(select(Customer.id, Customer.code)).all())
    columns = log_search.LIST_COLUMNS + (Message.transport,)

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        yield "\ufeff" + buffer.getvalue()
        resend_ids: dict[int, str] = {}
        words: dict[str, str] = {}  # stored reason → English, once per distinct reason
        for row in log_search.iter_matches(search, columns=columns):
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([_cell(v) for v in (
                row.created_at.isoformat(), row.public_id, codes.get(row.customer_id, ""),
                row.event, row.reference, row.recipient, row.subject, row.status,
                _reason(row.status_reason, words), row.attempts, row.last_smtp_code,
                row.last_smtp_text,
                row.sent_at.isoformat() if row.sent_at else "", row.transport,
                _public_id(row.resend_of_id, resend_ids), row.fault_class,
                row.fault_reason)])
            yield buffer.getvalue()

    filename = f"postino-log-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "Content-Type": "text/csv; charset=utf-8"})


def _reason(stored: str | None, words: dict[str, str]) -> str:
    """A status reason in English, like the other machine-readable columns of the export."""
    if not stored:
        return ""
    if stored not in words:
        words[stored] = reasons.english(stored)
    return words[stored]


def _cell(value) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with an apostrophe."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _public_id(message_id: int | None, cache: dict[int, str]) -> str:
    if message_id is None:
        return ""
    if message_id not in cache:
        cache[message_id] = db.session.scalar(
            select(Message.public_id).where(Message.id == message_id)) or ""
    return cache[message_id]


@bp.route("/bulk-resend", methods=["GET"])
@roles("support")
def bulk_confirm():
    """Ask before a bulk resend: how many messages of the current search would go again."""
    search, errors = log_search.parse(request.args)
    total = 0 if errors else log_search.count(search, resend_service.BULK_CAP)
    return render("log/bulk.html", "log/_bulk_confirm.html", search=search,
                  total=min(total, resend_service.BULK_CAP),
                  capped=total > resend_service.BULK_CAP, cap=resend_service.BULK_CAP)


@bp.route("/bulk-resend", methods=["POST"])
@roles("support")
def bulk_start():
    """Start a bulk resend of the current search in the background; answer its progress."""
    search, errors = log_search.parse(request.form)
    if errors:
        abort(422)
    rerender = request.form.get("rerender") in ("1", "on", "true")
    try:
        run = resend_service.start_bulk(search, current_user, note=request.form.get("note"),
                                        rerender=rerender)
    except ServiceError as exc:
        db.session.rollback()
        return render("log/bulk.html", "log/_bulk_confirm.html", 422, search=search, total=0,
                      capped=False, cap=resend_service.BULK_CAP, error=exc.message)
    if not htmx:
        return redirect(url_for("log.bulk_progress", run_id=run.id))
    return render("log/bulk.html", "log/_bulk_progress.html", run=run, search=search)


@bp.route("/bulk-resend/<int:run_id>")
@roles("support")
def bulk_progress(run_id: int):
    """The progress of a bulk resend; polls itself and stops (286) once the run has ended."""
    run = db.get_or_404(JobRun, run_id)
    if run.job != "bulk_resend":
        abort(404)
    search, _errors = log_search.parse((run.params or {}).get("search") or {})
    response = render("log/bulk.html", "log/_bulk_progress.html", run=run, search=search)
    if run.status != "running" and htmx:
        return trigger(stop_polling(response), "log-changed")
    return response
