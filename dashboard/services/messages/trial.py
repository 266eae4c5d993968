"""Test emails: a staff member's message through the real queue and the customer's own
transport, now (one sweep pass of that one message), shown as a test on its timeline."""
from __future__ import annotations

from flask_babel import gettext as _

from ...extensions import db
from ...models import Customer, Message, User
from ...notifications import known_variables
from .. import ServiceError
from ..content import render, templates
from ..core import audit
from ..delivery import sweep
from . import intake


def send_template_test(customer: Customer, event: str, language: str, source: dict,
                       data: dict, to: str, actor: User | None) -> Message:
    """Send the editor's rendered sample to one address through the customer's real queue and
    transport, now (one sweep pass of this one message); returns it with its outcome."""
    templates.check_event(event, language)
    recipients = intake.parse_recipients((to or "").strip())
    if len(recipients) != 1:
        raise ServiceError(_("Type one address."), "to")
    address = recipients[0]
    errors = render.check_source(source, known_variables(event))
    if errors:
        raise templates.TemplateInvalid(errors)
    try:
        subject, html, text = render.render_source(source, data)
    except render.RenderError as exc:
        raise templates.TemplateInvalid([exc]) from None
    current = templates.Slot(event, language,
                             templates.get_template(customer, event, language)).version
    unchanged = {**source, "text": source.get("text") or ""}
    if current is not None and templates.source_of(current) == unchanged:
        origin, version_id = f"test of override v{current.number}", current.id
    elif current is None and templates.same_as_default(source, event, language):
        origin, version_id = "test of default", None
    else:
        origin, version_id = "test of unsaved edit", None
    rendered = render.Rendered(subject, html, text, version_id, origin)
    [message] = intake.store(customer, event, [address], templates.TEST_REFERENCE, language,
                             data, rendered, [], actor=actor, commit=False, test=True)
    audit.record("template.test", actor, "message", message.public_id,
                 after={"to": address, "source": origin}, note=f"{event}/{language}",
                 customer_id=customer.id)
    db.session.commit()
    return sweep.send_now(message)
