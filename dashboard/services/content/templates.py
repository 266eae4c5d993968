"""Template overrides: one per customer × event × language, every save a new version.

The shipped defaults (dashboard/notifications/defaults) are used wherever a customer has no
active override. Saving validates the source exactly as sending will render it (the same
`render.render_source`), so a template that does not render is never stored. Reset turns
the override off and keeps its history; restore saves an old version as the newest one.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from flask_babel import gettext as _
from sqlalchemy import select

from ...extensions import db
from ...models import Customer, Template, TemplateVersion, User
from ...notifications import (
    CATALOG,
    LANGUAGES,
    default_source,
    known_variables,
    required_variables,
)
from .. import ServiceError
from ..core import audit
from . import render

MAX_SAMPLE_BYTES = 64 * 1024
TEST_REFERENCE = "template-test"


class TemplateInvalid(ServiceError):
    """A template that cannot be saved: every problem found, each with part and line."""

    def __init__(self, errors: list[render.RenderError]):
        super().__init__(_("The template has errors: nothing was saved."))
        self.errors = errors


@dataclass
class Preview:
    """What the editor shows: the rendered parts, or the problems that stop them."""

    subject: str = ""
    html: str = ""
    text: str = ""
    errors: list[render.RenderError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the template rendered."""
        return not self.errors


@dataclass
class Slot:
    """One event × language of a customer: the default, or its override and current version."""

    event: str
    language: str
    template: Template | None

    @property
    def version(self) -> TemplateVersion | None:
        """The version in use, None when the default is used."""
        if self.template is None or not self.template.active:
            return None
        return self.template.current_version


def check_event(event: str, language: str) -> None:
    """Refuse an unknown event or language."""
    if event not in CATALOG:
        raise ServiceError(_("Unknown event."), "event")
    if language not in LANGUAGES:
        raise ServiceError(_("Unknown language."), "language")


def get_template(customer: Customer, event: str, language: str) -> Template | None:
    """The customer's override row for this event and language, active or reset."""
    return db.session.scalar(select(Template).where(
        Template.customer_id == customer.id, Template.event == event,
        Template.language == language))


def slots(customer: Customer) -> list[Slot]:
    """Every event × language for a customer, in catalog order."""
    rows = db.session.scalars(select(Template).where(Template.customer_id == customer.id)).all()
    by_key = {(t.event, t.language): t for t in rows}
    return [Slot(event, language, by_key.get((event, language)))
            for event in CATALOG for language in LANGUAGES]


def current_source(customer: Customer, event: str, language: str) -> dict:
    """The source in use: the active override's current version, else the default."""
    check_event(event, language)
    version = Slot(event, language, get_template(customer, event, language)).version
    if version is not None:
        return source_of(version)
    source = default_source(event, language)
    return {**source, "text": source["text"] or ""}


def source_of(version: TemplateVersion) -> dict:
    """A version's parts as a source dict."""
    return {"subject": version.subject, "html": version.html, "text": version.text or ""}


def clean_source(subject: str | None, html: str | None, text: str | None) -> dict:
    """Normalise the editor's fields: CRLF to LF, the subject trimmed, an empty text is None."""

    def norm(value: str | None) -> str:
        """Unix line ends."""
        return (value or "").replace("\r\n", "\n").replace("\r", "\n")

    return {"subject": norm(subject).strip(), "html": norm(html),
            "text": norm(text) if norm(text).strip() else None}


def sample_data(event: str) -> dict:
    """The catalog's sample data of an event (a fresh copy)."""
    return json.loads(json.dumps(CATALOG[event]["sample"]))


def parse_sample(raw: str | None, event: str) -> dict:
    """The editor's sample data: a JSON object, or the catalog sample when left empty."""
    if raw is None or not raw.strip():
        return sample_data(event)
    if len(raw.encode("utf-8")) > MAX_SAMPLE_BYTES:
        raise ServiceError(_("The sample data is larger than 64 KB."), "sample")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(_("The sample data is not valid JSON: %(error)s", error=str(exc)),
                           "sample") from None
    if not isinstance(value, dict):
        raise ServiceError(_("The sample data must be a JSON object."), "sample")
    return value


def validate(event: str, source: dict, data: dict | None = None) -> list[render.RenderError]:
    """Every reason this source cannot be saved; empty when it renders like sending will."""
    errors = render.check_source(source, known_variables(event))
    if errors:
        return errors
    sample = sample_data(event)
    required_only = {name: sample[name] for name in required_variables(event)}
    for values in ([data] if data is not None else []) + [sample, required_only]:
        try:
            render.render_source(source, values)
        except render.RenderError as exc:
            return [exc]
    return []


def preview(event: str, source: dict, data: dict) -> Preview:
    """Render the editor's source with its sample data, or collect why it cannot render."""
    errors = render.check_source(source, known_variables(event))
    if errors:
        return Preview(errors=errors)
    try:
        subject, html, text = render.render_source(source, data)
    except render.RenderError as exc:
        return Preview(errors=[exc])
    return Preview(subject, html, text)


def _next_number(template: Template) -> int:
    """The number the next version of this template gets."""
    numbers = [v.number for v in template.versions]
    return max(numbers, default=0) + 1


def _add_version(template: Template, source: dict, actor: User | None,
                 note: str | None) -> TemplateVersion:
    """Append a version with the next number and make it the one in use."""
    version = TemplateVersion(template=template, number=_next_number(template),
                              subject=source["subject"], html=source["html"],
                              text=source.get("text") or None, note=note,
                              created_by_id=actor.id if actor else None)
    db.session.add(version)
    db.session.flush()
    template.current_version = version
    template.active = True
    return version


def save(customer: Customer, event: str, language: str, source: dict, actor: User | None,
         note: str | None = None) -> TemplateVersion:
    """Save the source as a new version of the override (validated first; nothing on error)."""
    check_event(event, language)
    errors = validate(event, source)
    if errors:
        raise TemplateInvalid(errors)
    template = get_template(customer, event, language)
    if template is None:
        template = Template(customer_id=customer.id, event=event, language=language,
                            active=True)
        db.session.add(template)
        db.session.flush()
    before = _state(template)
    version = _add_version(template, source, actor, (note or "").strip()[:200] or None)
    audit.record("template.save", actor, "template", template.id, before=before,
                 after=_state(template), note=f"{event}/{language}", customer_id=customer.id)
    db.session.commit()
    return version


def reset(customer: Customer, event: str, language: str, actor: User | None) -> bool:
    """Go back to the default (the override's history is kept); False when already default."""
    check_event(event, language)
    template = get_template(customer, event, language)
    if template is None or not template.active:
        return False
    before = _state(template)
    template.active = False
    audit.record("template.reset", actor, "template", template.id, before=before,
                 after=_state(template), note=f"{event}/{language}", customer_id=customer.id)
    db.session.commit()
    return True


def restore(version: TemplateVersion, actor: User | None) -> TemplateVersion:
    """Save an earlier version again as the newest one (history never rewritten)."""
    template = version.template
    source = source_of(version)
    errors = validate(template.event, source)
    if errors:  # the catalog changed since: restoring would break sending
        raise TemplateInvalid(errors)
    before = _state(template)
    restored = _add_version(template, source, actor, f"restored from v{version.number}")
    audit.record("template.restore", actor, "template", template.id, before=before,
                 after=_state(template), note=f"{template.event}/{template.language} "
                 f"v{version.number}", customer_id=template.customer_id)
    db.session.commit()
    return restored


def _state(template: Template) -> dict:
    """What the audit log records of a template: active, and the version in use."""
    current = template.current_version
    return {"active": bool(template.active),
            "version": current.number if current is not None else None}


@dataclass
class DiffLine:
    """One line of a unified diff, with its kind for styling: add, del, hunk or same."""

    kind: str
    text: str


def diff(old: dict | None, new: dict, old_label: str, new_label: str) -> dict[str, list[DiffLine]]:
    """Unified diffs per part (subject, html, text) between two sources; unchanged parts empty."""
    old = old or {"subject": "", "html": "", "text": ""}
    result: dict[str, list[DiffLine]] = {}
    for part in render.PARTS:
        a = (old.get(part) or "").splitlines()
        b = (new.get(part) or "").splitlines()
        lines = []
        for line in difflib.unified_diff(a, b, old_label, new_label, lineterm="", n=3):
            if line.startswith(("---", "+++")):
                continue
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
            lines.append(DiffLine(kind, line))
        result[part] = lines
    return result


def previous_version(version: TemplateVersion) -> TemplateVersion | None:
    """The version saved just before this one, if any."""
    return db.session.scalar(
        select(TemplateVersion).where(TemplateVersion.template_id == version.template_id,
                                      TemplateVersion.number < version.number)
        .order_by(TemplateVersion.number.desc()).limit(1))


def same_as_default(source: dict, event: str, language: str) -> bool:
    """True when the source is exactly the shipped default."""
    default = default_source(event, language)
    return (source["subject"] == default["subject"] and source["html"] == default["html"]
            and (source.get("text") or None) == (default["text"] or None))
