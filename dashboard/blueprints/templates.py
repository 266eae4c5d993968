"""Templates (gear menu → Templates): per-customer overrides of the six notifications, with a
live preview, versions with diffs, restore, reset to default and a test send. Admins only."""
from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from ..auth import roles
from ..extensions import db, htmx
from ..htmx import client_redirect, render
from ..models import Customer, Message, TemplateVersion
from ..notifications import CATALOG, LANGUAGES, required_variables
from ..services import ServiceError
from ..services.accounts import customers
from ..services.content import templates as service
from ..services.messages import trial

bp = Blueprint("templates", __name__, url_prefix="/templates")


def _customer(code: str) -> Customer:
    """The customer with this code, or 404."""
    customer = customers.by_code(code)
    if customer is None:
        abort(404)
    return customer


def _slot_args(event: str, language: str) -> None:
    """404 for an event or language that does not exist."""
    if event not in CATALOG or language not in LANGUAGES:
        abort(404)


def _version(customer: Customer, event: str, language: str, number: int) -> TemplateVersion:
    """A version of this customer's override by number, or 404."""
    template = service.get_template(customer, event, language)
    if template is None:
        abort(404)
    return db.first_or_404(select(TemplateVersion).where(
        TemplateVersion.template_id == template.id, TemplateVersion.number == number))


def _log_url(message: Message) -> str:
    """The message's page in the log."""
    return url_for("log.message", public_id=message.public_id)


def _errors_by_part(errors) -> dict[str, list]:
    """Render errors grouped under the editor field they belong to."""
    grouped: dict[str, list] = {"subject": [], "html": [], "text": [], "sample": [], "to": []}
    for error in errors or []:
        grouped.setdefault(getattr(error, "part", None) or error.field or "html", []).append(error)
    return grouped


def _editor_context(customer: Customer, event: str, language: str, *, source: dict | None = None,
                    sample_raw: str | None = None, errors=None, preview=None,
                    test_to: str = "", test_message: Message | None = None) -> dict:
    """Everything the editor page and its fragments need, built in one place."""
    template = service.get_template(customer, event, language)
    slot = service.Slot(event, language, template)
    if source is None:
        source = service.current_source(customer, event, language)
    if sample_raw is None:
        sample_raw = json.dumps(service.sample_data(event), indent=2, ensure_ascii=False)
    if preview is None and not errors:
        try:
            data = service.parse_sample(sample_raw, event)
        except ServiceError as exc:
            errors = [exc]
        else:
            preview = service.preview(event, source, data)
    if preview is None:
        preview = service.Preview(errors=list(errors or []))
    return {
        "customer": customer,
        "event": event,
        "language": language,
        "slot": slot,
        "versions": list(template.versions) if template is not None else [],
        "source": {**source, "text": source.get("text") or ""},
        "sample_raw": sample_raw,
        "variables": CATALOG[event]["variables"],
        "required": set(required_variables(event)),
        "sample": CATALOG[event]["sample"],
        "preview": preview,
        "errors": _errors_by_part(list(errors or []) or preview.errors),
        "test_to": test_to or current_user.email,
        "test_message": test_message,
        "test_url": _log_url(test_message) if test_message is not None else None,
        "languages": LANGUAGES,
        "events": list(CATALOG),
    }


def _posted_source() -> dict:
    """The subject, HTML and text typed in the editor."""
    form = request.form
    return service.clean_source(form.get("subject"), form.get("html"), form.get("text"))


@bp.route("/")
@roles("admin")
def index():
    """Customers and, for the chosen one, each event × language: default or override vN."""
    all_customers = db.session.scalars(select(Customer).order_by(Customer.code)).all()
    code = request.args.get("customer") or ""
    chosen = customers.by_code(code) if code else None
    slots = service.slots(chosen) if chosen is not None else []
    return render("templates/index.html", "templates/_slots.html", customers=all_customers,
                  chosen=chosen, slots=slots, catalog=CATALOG, languages=LANGUAGES)


@bp.route("/<code>/<event>/<language>")
@roles("admin")
def editor(code: str, event: str, language: str):
    """The editor of one customer's event in one language, with its preview and history."""
    _slot_args(event, language)
    customer = _customer(code)
    return render("templates/editor.html", **_editor_context(customer, event, language))


@bp.route("/<code>/<event>/<language>/preview", methods=["POST"])
@roles("admin")
def preview(code: str, event: str, language: str):
    """Re-render the preview from the typed source and sample (htmx: the preview fragment)."""
    _slot_args(event, language)
    customer = _customer(code)
    source = _posted_source()
    sample_raw = request.form.get("sample")
    try:
        data = service.parse_sample(sample_raw, event)
    except ServiceError as exc:
        result = service.Preview(errors=[exc])
    else:
        result = service.preview(event, source, data)
    context = _editor_context(customer, event, language, source=source, sample_raw=sample_raw,
                              preview=result)
    oob = bool(htmx) and not htmx.boosted  # field errors ride along out of band
    return render("templates/editor.html", "templates/_preview.html", oob=oob, **context)


@bp.route("/<code>/<event>/<language>", methods=["POST"])
@roles("admin")
def save(code: str, event: str, language: str):
    """Save the typed source as a new version; 422 with the errors and nothing saved."""
    _slot_args(event, language)
    customer = _customer(code)
    source = _posted_source()
    current = service.Slot(event, language, service.get_template(customer, event, language))
    if current.version is not None and service.source_of(current.version) == {
            **source, "text": source["text"] or ""}:
        flash(_("No changes: version %(n)s is still in use.", n=current.version.number), "info")
        return redirect(url_for(".editor", code=code, event=event, language=language))
    try:
        version = service.save(customer, event, language, source, current_user,
                               request.form.get("note"))
    except service.TemplateInvalid as exc:
        context = _editor_context(customer, event, language, source=source,
                                  sample_raw=request.form.get("sample"), errors=exc.errors)
        context["form_error"] = exc.message
        return render("templates/editor.html", status=422, **context)
    flash(_("Saved as version %(n)s: new %(event)s messages in %(language)s use it now.",
            n=version.number, event=event, language=language), "success")
    return redirect(url_for(".editor", code=code, event=event, language=language))


@bp.route("/<code>/<event>/<language>/reset", methods=["POST"])
@roles("admin")
def reset(code: str, event: str, language: str):
    """Go back to the default template (the override's versions are kept)."""
    _slot_args(event, language)
    customer = _customer(code)
    if service.reset(customer, event, language, current_user):
        flash(_("Back to the default template. The saved versions are kept."), "success")
    url = url_for(".editor", code=code, event=event, language=language)
    return client_redirect(url) if htmx else redirect(url)


@bp.route("/<code>/<event>/<language>/versions/<int:number>")
@roles("admin")
def version(code: str, event: str, language: str, number: int):
    """One saved version: what changed from the version before it, and its full source."""
    _slot_args(event, language)
    customer = _customer(code)
    chosen = _version(customer, event, language, number)
    previous = service.previous_version(chosen)
    changes = service.diff(service.source_of(previous) if previous else None,
                           service.source_of(chosen),
                           f"v{previous.number}" if previous else "(none)", f"v{chosen.number}")
    return render("templates/version.html", customer=customer, event=event, language=language,
                  version=chosen, previous=previous, changes=changes,
                  slot=service.Slot(event, language, chosen.template))


@bp.route("/<code>/<event>/<language>/versions/<int:number>/restore", methods=["POST"])
@roles("admin")
def restore(code: str, event: str, language: str, number: int):
    """Save an earlier version again as the newest one."""
    _slot_args(event, language)
    customer = _customer(code)
    chosen = _version(customer, event, language, number)
    url = url_for(".editor", code=code, event=event, language=language)
    try:
        restored = service.restore(chosen, current_user)
    except service.TemplateInvalid as exc:
        flash(_("Version %(n)s cannot be restored: %(error)s", n=number,
                error=exc.errors[0].message), "error")
    else:
        flash(_("Version %(old)s restored as version %(new)s.", old=number, new=restored.number),
              "success")
    return client_redirect(url) if htmx else redirect(url)


@bp.route("/<code>/<event>/<language>/test", methods=["POST"])
@roles("admin")
def send_test(code: str, event: str, language: str):
    """Queue the previewed email to a typed address through the customer's real transport."""
    _slot_args(event, language)
    customer = _customer(code)
    source = _posted_source()
    to = (request.form.get("to") or "").strip()
    try:
        data = service.parse_sample(request.form.get("sample"), event)
        message = trial.send_template_test(customer, event, language, source, data, to,
                                           current_user)
    except service.TemplateInvalid as exc:
        db.session.rollback()
        errors = [ServiceError(_("Fix the template first: %(error)s",
                                 error=exc.errors[0].message), "to")]
        return _test_answer(customer, event, language, to, errors, status=422)
    except ServiceError as exc:
        db.session.rollback()
        return _test_answer(customer, event, language, to, [exc], status=422)
    return _test_answer(customer, event, language, to, [], message=message)


def _test_answer(customer: Customer, event: str, language: str, to: str, errors: list,
                 message: Message | None = None, status: int = 200):
    """The test-send fragment (or the editor page without htmx)."""
    context = _editor_context(customer, event, language, source=_posted_source(),
                              sample_raw=request.form.get("sample"), test_to=to,
                              test_message=message)
    context["test_errors"] = errors
    return render("templates/editor.html", "templates/_test.html", status=status, **context)
