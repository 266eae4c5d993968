"""Overrides per customer × event × language: precedence, versions, reset, restore, audit."""
from __future__ import annotations

import pytest

from dashboard.extensions import db
from dashboard.models import AuditEntry, Message, Template, TemplateVersion
from dashboard.notifications import CATALOG
from dashboard.services.content import render
from dashboard.services.content import templates as service
from dashboard.services.messages import intake, trial

SAMPLE = CATALOG["order_closed"]["sample"]


def override(subject="Custom {{ order_number }}", html="<p>Custom {{ total }}</p>", text=None):
    """An override source for order_closed."""
    return {"subject": subject, "html": html, "text": text}


def test_a_customer_override_wins_only_for_its_event_language_and_customer(app, make_customer,
                                                                          admin):
    """The override applies to that customer × event × language; everything else is default."""
    mine, _ = make_customer()
    other, _ = make_customer()
    service.save(mine, "order_closed", "it", override(), admin)
    assert render.render_notification(mine, "order_closed", "it", SAMPLE).subject == \
        "Custom ORD-2026-00421"
    assert render.render_notification(mine, "order_closed", "en", SAMPLE).subject == \
        "Order ORD-2026-00421 closed"
    assert render.render_notification(other, "order_closed", "it", SAMPLE).subject == \
        "Ordine ORD-2026-00421 chiuso"
    assert render.render_notification(mine, "activity_closed", "it",
                                      CATALOG["activity_closed"]["sample"]).source == "default"


def test_language_precedence_is_notification_then_customer_then_italian(app, make_customer):
    """pick_language: the request's language, else the customer's default, else Italian."""
    english, _ = make_customer(default_language="en")
    unknown, _ = make_customer(default_language="de")
    assert render.pick_language(english, "it") == "it"
    assert render.pick_language(english, None) == "en"
    assert render.pick_language(unknown, None) == "it"
    assert render.pick_language(None, "fr") == "it"


def test_a_message_records_the_template_version_that_produced_it(app, make_customer, admin):
    """Ingest stores the version id and 'override vN' (or 'default') on the message."""
    customer, _ = make_customer()
    [plain] = intake.enqueue(customer, "order_closed", "a@example.com", data=SAMPLE)
    assert (plain.template_version_id, plain.template_source) == (None, "default")
    version = service.save(customer, "order_closed", "it", override(), admin)
    [custom] = intake.enqueue(customer, "order_closed", "a@example.com", data=SAMPLE)
    assert custom.template_version_id == version.id
    assert custom.template_source == "override v1" and custom.subject == "Custom ORD-2026-00421"


def test_every_save_is_a_new_version_with_who_and_when(app, make_customer, admin):
    """Two saves make v1 and v2, each with its author; v2 is the one in use."""
    customer, _ = make_customer()
    first = service.save(customer, "order_closed", "it", override(), admin, note="first")
    second = service.save(customer, "order_closed", "it", override(subject="Second"), admin)
    template = db.session.get(Template, first.template_id)
    assert [v.number for v in template.versions] == [2, 1]
    assert template.current_version_id == second.id
    assert first.created_by_id == admin.id and first.note == "first"
    assert first.created_at is not None
    actions = db.session.scalars(db.select(AuditEntry.action)).all()
    assert actions.count("template.save") == 2


def test_a_template_that_does_not_render_is_not_saved(app, make_customer, admin):
    """Syntax errors, unknown variables and sandbox escapes are refused; nothing stored."""
    customer, _ = make_customer()
    for bad in (override(html="<p>{% if %}</p>"), override(html="{{ totale }}"),
                override(html="{{ ''.__class__.__mro__ }}"), override(subject="")):
        with pytest.raises(service.TemplateInvalid) as error:
            service.save(customer, "order_closed", "it", bad, admin)
        assert error.value.errors
    assert db.session.scalar(db.select(db.func.count(TemplateVersion.id))) == 0
    assert db.session.scalar(db.select(db.func.count(Template.id))) == 0


def test_an_optional_variable_must_be_tested_before_use(app, make_customer, admin):
    """Using `outcome` bare would fail for notifications without it, so saving is refused."""
    customer, _ = make_customer()
    source = {"subject": "s", "html": "<p>{{ outcome }}</p>", "text": None}
    with pytest.raises(service.TemplateInvalid) as error:
        service.save(customer, "activity_closed", "it", source, admin)
    assert "outcome" in error.value.errors[0].message
    source["html"] = "{% if outcome is defined %}<p>{{ outcome }}</p>{% endif %}"
    assert service.save(customer, "activity_closed", "it", source, admin).number == 1


def test_reset_goes_back_to_the_default_and_keeps_the_history(app, make_customer, admin):
    """After reset the default renders; saving again continues the numbering."""
    customer, _ = make_customer()
    service.save(customer, "order_closed", "it", override(), admin)
    assert service.reset(customer, "order_closed", "it", admin) is True
    assert service.reset(customer, "order_closed", "it", admin) is False
    rendered = render.render_notification(customer, "order_closed", "it", SAMPLE)
    assert rendered.source == "default" and rendered.template_version_id is None
    again = service.save(customer, "order_closed", "it", override(subject="Again"), admin)
    assert again.number == 2
    assert render.render_notification(customer, "order_closed", "it", SAMPLE).subject == "Again"


def test_restoring_a_version_saves_it_again_as_the_newest(app, make_customer, admin):
    """Restore v1 after v2: v3 has v1's content and is in use; v1 and v2 are untouched."""
    customer, _ = make_customer()
    v1 = service.save(customer, "order_closed", "it", override(subject="One"), admin)
    service.save(customer, "order_closed", "it", override(subject="Two"), admin)
    v3 = service.restore(v1, admin)
    assert (v3.number, v3.subject, v3.note) == (3, "One", "restored from v1")
    assert render.render_notification(customer, "order_closed", "it", SAMPLE).subject == "One"
    assert [v.subject for v in v3.template.versions] == ["One", "Two", "One"]
    assert db.session.scalars(db.select(AuditEntry.action).order_by(AuditEntry.id)).all()[-1] == (
        "template.restore")


def test_diff_shows_what_changed_per_part(app):
    """The diff marks removed and added lines of each part; an unchanged part has none."""
    changes = service.diff({"subject": "A", "html": "<p>x</p>\n<p>y</p>", "text": ""},
                           {"subject": "A", "html": "<p>x</p>\n<p>z</p>", "text": ""}, "v1", "v2")
    assert changes["subject"] == [] and changes["text"] == []
    kinds = [(line.kind, line.text) for line in changes["html"]]
    assert ("del", "-<p>y</p>") in kinds and ("add", "+<p>z</p>") in kinds


def test_send_test_goes_through_the_customer_transport(app, make_customer, admin, relay):
    """A test send renders the editor's source with the sample and the relay receives it."""
    customer, _ = make_customer()
    message = trial.send_template_test(customer, "order_closed", "en",
                                       override(subject="Try {{ total }}"), dict(SAMPLE),
                                       "qa@example.com", admin)
    [got] = relay.wait_for(1)
    assert got.message["Subject"] == "Try € 1.284,50"
    assert message.status == "sent" and message.template_source == "test of unsaved edit"
    assert message.reference == service.TEST_REFERENCE
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 1
