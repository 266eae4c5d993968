"""Configuration interventions: what a change of the sending configuration records, when it
is billable, estimates, the customer_smtp periods, and their billing (summary, CSV, minutes to
be completed, invoiced marks)."""
from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import (
    AuditEntry,
    ConfigurationIntervention,
    CustomerSmtpPeriod,
)
from dashboard.services import ServiceError
from dashboard.services.accounts import customer_settings
from dashboard.services.billing import billing, interventions
from dashboard.services.billing.interventions import Request

PASSWORD = "Top-Secret-Pw-77"
SMTP = {"sending_mode": "customer_smtp", "from_address": "notifiche@verdi.example",
        "from_name": "Verdi", "smtp_host": "smtp.verdi.example", "smtp_port": "587",
        "smtp_security": "starttls", "smtp_auth": "login",
        "smtp_username": "notifiche@verdi.example", "smtp_password": PASSWORD}


def recorded() -> list[ConfigurationIntervention]:
    """Every intervention, oldest first."""
    return db.session.scalars(select(ConfigurationIntervention)
                              .order_by(ConfigurationIntervention.id)).all()


def this_month() -> billing.Filters:
    """The current month only."""
    today = date.today().replace(day=1)
    return billing.Filters(today, today)


def test_a_switch_to_customer_smtp_is_a_billable_intervention_with_field_names_only(
        make_customer, admin):
    """Who, when, ticket, minutes, billable, and the fields changed by name: the password's
    value is in neither the intervention nor its audit entry."""
    customer, _ = make_customer("VERDI", "Verdi Arredamenti")
    result = customer_settings.save(customer, SMTP, admin,
                                    intervention=Request(minutes="45", ticket="T-5120"))
    [item] = recorded()
    assert result["intervention"] is item
    assert (item.customer_id, item.actor_id, item.actor_label) == (customer.id, admin.id,
                                                                   admin.email)
    assert (item.mode_before, item.mode_after, item.minutes, item.ticket, item.billable) == (
        "standard", "customer_smtp", 45, "T-5120", True)
    assert "smtp_password" in item.fields and "sending_mode" in item.fields
    assert item.fields == sorted(item.fields)
    stored = json.dumps([item.fields, item.ticket, item.waived_reason])
    entry = db.session.scalar(select(AuditEntry).where(
        AuditEntry.action == "customer.intervention"))
    assert PASSWORD not in stored and PASSWORD not in json.dumps([entry.before, entry.after,
                                                                  entry.note])
    assert customer.smtp_password_encrypted not in stored


def test_changes_within_custom_from_are_billable_and_a_return_to_standard_is_not(
        make_customer):
    """custom_from → new From: billable; → standard: not billable; nothing changed: nothing."""
    customer, _ = make_customer(sending_mode="custom_from", from_address="a@alfa.example")
    customer_settings.save(customer, {"sending_mode": "custom_from",
                                      "from_address": "ordini@alfa.example"},
                           check_dns=False, intervention=Request(minutes="10"))
    customer_settings.save(customer, {"sending_mode": "standard"})
    customer_settings.save(customer, {"sending_mode": "standard"})
    first, back = recorded()
    assert (first.fields, first.billable, first.minutes) == (["from_address"], True, 10)
    assert (back.fields, back.billable, back.minutes, back.mode_after) == (
        ["sending_mode"], False, None, "standard")
    assert not back.minutes_pending


def test_the_form_refuses_a_billable_change_without_minutes_and_saves_nothing(make_customer,
                                                                              admin):
    """require_minutes (the web form): no minutes, or 0, is an error beside `minutes`; the
    customer, the audit log and the interventions are untouched."""
    customer, _ = make_customer()
    for minutes in ("", "0"):
        with pytest.raises(customer_settings.SettingsInvalid) as refused:
            customer_settings.save(customer, SMTP, admin, intervention=Request(
                minutes=minutes, require_minutes=True))
        assert "minutes" in refused.value.errors
        db.session.rollback()
    db.session.refresh(customer)
    assert customer.sending_mode == "standard" and customer.smtp_password_encrypted is None
    assert recorded() == [] and db.session.scalar(select(AuditEntry).where(
        AuditEntry.action.in_(("customer.sending_mode", "customer.intervention")))) is None


def test_field_errors_and_the_missing_minutes_are_reported_together(make_customer):
    """A bad port and no minutes: both errors at once, nothing saved."""
    customer, _ = make_customer()
    with pytest.raises(customer_settings.SettingsInvalid) as refused:
        customer_settings.save(customer, {**SMTP, "smtp_port": "99999"},
                               intervention=Request(require_minutes=True))
    assert {"smtp_port", "minutes"} <= set(refused.value.errors)


def test_without_required_minutes_a_billable_change_waits_for_them(make_customer):
    """Outside the form (the CLI) the change is saved, its minutes to be completed."""
    customer, _ = make_customer()
    customer_settings.save(customer, SMTP)
    [item] = recorded()
    assert item.billable and item.minutes is None and item.minutes_pending


def test_waiving_records_the_reason_and_is_not_billable(make_customer, admin):
    """A waived change is not billable, keeps its reason, and needs no minutes."""
    customer, _ = make_customer()
    customer_settings.save(customer, SMTP, admin, intervention=Request(
        waive="set-up promised in the contract", require_minutes=True))
    [item] = recorded()
    assert (item.billable, item.waived_reason, item.minutes) == (
        False, "set-up promised in the contract", None)
    assert not item.minutes_pending


def test_a_waiver_needs_a_reason_and_a_billable_change(make_customer):
    """An empty reason, or waiving a return to standard, is refused; nothing is saved."""
    customer, _ = make_customer(sending_mode="custom_from", from_address="a@alfa.example")
    with pytest.raises(customer_settings.SettingsInvalid) as refused:
        customer_settings.save(customer, SMTP, intervention=Request(waive="  "))
    assert "waive" in refused.value.errors
    db.session.rollback()
    with pytest.raises(customer_settings.SettingsInvalid) as refused:
        customer_settings.save(customer, {"sending_mode": "standard"},
                               intervention=Request(waive="kind"))
    assert "waive" in refused.value.errors
    db.session.rollback()
    assert recorded() == []


def test_bad_minutes_are_refused(make_customer):
    """Minutes are a whole number up to the limit."""
    customer, _ = make_customer()
    for bad in ("ten", "-5", "1.5", str(interventions.MAX_MINUTES + 1)):
        with pytest.raises(customer_settings.SettingsInvalid) as refused:
            customer_settings.save(customer, SMTP, intervention=Request(minutes=bad))
        assert "minutes" in refused.value.errors
        db.session.rollback()


def test_an_estimate_is_linked_to_the_change_it_was_given_for(make_customer, admin):
    """The latest open estimate goes with the next billable change (once); a withdrawn one
    never does; another customer's estimate is refused."""
    customer, _ = make_customer()
    other, _ = make_customer()
    old = interventions.add_estimate(customer, "2026-03-01", "30", "", "first idea", admin)
    interventions.withdraw_estimate(old, admin)
    given = interventions.add_estimate(customer, "2026-03-10", "60", "150,50",
                                       "switch to own SMTP", admin)
    foreign = interventions.add_estimate(other, "", "", "99", "theirs", admin)
    assert (given.minutes, given.amount_cents) == (60, 15050)
    assert interventions.open_estimates(customer) == [given]
    with pytest.raises(customer_settings.SettingsInvalid) as refused:
        customer_settings.save(customer, SMTP, intervention=Request(minutes="5",
                                                                   estimate=foreign.id))
    assert "estimate" in refused.value.errors
    db.session.rollback()
    customer_settings.save(customer, SMTP, intervention=Request(minutes="75"))
    [item] = recorded()
    assert item.estimate_id == given.id and item.minutes == 75
    assert interventions.open_estimates(customer) == []
    with pytest.raises(ServiceError):
        interventions.withdraw_estimate(given, admin)


def test_an_estimate_needs_minutes_or_an_amount_and_a_note(make_customer, admin):
    """Every error at once; nothing stored."""
    customer, _ = make_customer()
    with pytest.raises(ServiceError) as refused:
        interventions.add_estimate(customer, "yesterday", "", "12,345", "", admin)
    assert set(refused.value.errors) == {"estimated_on", "amount", "note"}
    with pytest.raises(ServiceError) as refused:
        interventions.add_estimate(customer, "", "", "", "something", admin)
    assert refused.value.field == "minutes"
    assert interventions.estimates(customer) == []


def test_customer_smtp_periods_follow_the_mode_changes(make_customer):
    """Entering opens a period, leaving closes it; the Billing list shows each with the
    months of the period it covers."""
    customer, _ = make_customer("VERDI")
    customer_settings.save(customer, SMTP, intervention=Request(minutes="30"))
    customer_settings.save(customer, {**SMTP, "smtp_port": "2525"},
                           intervention=Request(minutes="5"))
    [period] = db.session.scalars(select(CustomerSmtpPeriod)).all()
    entered, within = recorded()
    assert period.ended_at is None and period.start_intervention_id == entered.id
    assert period.start_evidence == "change"
    customer_settings.save(customer, {"sending_mode": "standard"})
    left = recorded()[-1]
    db.session.refresh(period)
    assert period.ended_at == left.changed_at and period.end_intervention_id == left.id
    [row] = billing.customer_smtp_option(this_month())
    assert row.customer == customer and row.months == [this_month().from_month]
    assert row.ended_at is not None


def test_a_customer_on_customer_smtp_without_a_recorded_start_is_listed_to_check(
        make_customer):
    """Set on customer_smtp outside the service (no period): still listed, start unknown."""
    customer, _ = make_customer("NORECORD", sending_mode="customer_smtp",
                                from_address="a@n.example", smtp_host="smtp.n.example")
    [row] = billing.customer_smtp_option(this_month())
    assert (row.customer, row.started_at, row.evidence) == (customer, None, "unrecorded")


def test_the_option_lists_the_months_of_the_period_a_customer_was_on_it(make_customer):
    """A period from mid-February to mid-April, asked for March–May: March and April."""
    customer, _ = make_customer("VERDI")
    db.session.add(CustomerSmtpPeriod(customer_id=customer.id,
                                      started_at=datetime(2026, 2, 14, tzinfo=UTC),
                                      ended_at=datetime(2026, 4, 10, tzinfo=UTC),
                                      start_evidence="audit"))
    db.session.commit()
    [row] = billing.customer_smtp_option(billing.Filters(date(2026, 3, 1), date(2026, 5, 1)))
    assert row.months == [date(2026, 3, 1), date(2026, 4, 1)] and row.evidence == "audit"
    assert billing.customer_smtp_option(billing.Filters(date(2026, 5, 1), date(2026, 6, 1))) == []
    lines = list(csv.reader(io.StringIO(billing.customer_smtp_csv(
        billing.Filters(date(2026, 1, 1), date(2026, 12, 1))))))
    assert lines[1] == ["VERDI", customer.name, "2026-02-14", "2026-04-10", "audit", "3",
                        "2026-02 2026-03 2026-04"]


@pytest.fixture
def month_of_changes(make_customer, admin):
    """This month: Verdi switched to customer_smtp (45 min, estimate 60 min / € 150) and
    changed its password from the CLI (minutes to be completed); Alfa's waived change."""
    verdi, _ = make_customer("VERDI", "Verdi Arredamenti")
    alfa, _ = make_customer("ALFA", "Alfa Bevande")
    interventions.add_estimate(verdi, "", "60", "150", "own SMTP set-up", admin)
    customer_settings.save(verdi, SMTP, admin,
                           intervention=Request(minutes="45", ticket="=HYPERLINK(\"x\")"))
    customer_settings.save(verdi, {**SMTP, "smtp_password": "Another-Secret-88"},
                           actor_label="cli")
    customer_settings.save(alfa, {"sending_mode": "custom_from",
                                  "from_address": "ordini@alfa.example"}, admin,
                           check_dns=False, intervention=Request(waive="goodwill"))
    return {"verdi": verdi, "alfa": alfa}


def test_the_month_summary_counts_minutes_estimates_and_the_minutes_to_be_completed(
        month_of_changes):
    """Per customer per month: count, billable, minutes, estimate, to be completed."""
    rows = billing.intervention_summary(this_month())
    figures = {r.customer.code: (r.count, r.billable, r.minutes, r.billable_minutes,
                                 r.estimate_minutes, r.estimate_cents, r.pending)
               for r in rows}
    assert figures == {"VERDI": (2, 2, 45, 45, 60, 15000, 1), "ALFA": (1, 0, 0, 0, 0, 0, 0)}
    total = billing.intervention_totals(rows)
    assert (total.count, total.billable, total.pending) == (3, 2, 1)
    assert [i.ticket for i in billing.pending_interventions()] == [None]
    only = billing.Filters(*[this_month().from_month] * 2, billable_only=True,
                           customer_id=month_of_changes["verdi"].id)
    assert len(billing.configuration_interventions(only)) == 2


def test_the_csv_has_every_intervention_no_secret_and_defused_formulas(month_of_changes):
    """One line each, field names only, the ticket's formula quoted, 'to be completed' said."""
    text = billing.interventions_csv(this_month())
    assert PASSWORD not in text and "Another-Secret-88" not in text
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [line["customer_code"] for line in lines] == ["VERDI", "VERDI", "ALFA"]
    first, second, waived = lines
    assert first["ticket"] == "'=HYPERLINK(\"x\")" and first["minutes"] == "45"
    assert first["estimate_minutes"] == "60" and first["estimate_amount_eur"] == "150.00"
    assert "smtp_password" in first["fields"].split()
    assert (second["minutes"], second["minutes_to_be_completed"], second["changed_by"]) == (
        "", "yes", "cli")
    assert (waived["billable"], waived["waived_reason"]) == ("no", "goodwill")


def test_minutes_to_be_completed_are_filled_in_then_invoiced_once(month_of_changes,
                                                                  make_user):
    """Invoicing waits for the minutes; filling them in and invoicing are audited, once."""
    clerk = make_user("billing")
    [pending] = billing.pending_interventions()
    with pytest.raises(ServiceError):
        billing.mark_intervention_invoiced(pending, clerk)
    for bad in ("", "0", "many"):
        with pytest.raises(ServiceError):
            billing.complete_minutes(pending, bad, clerk)
    billing.complete_minutes(pending, "20", clerk)
    with pytest.raises(ServiceError):
        billing.complete_minutes(pending, "25", clerk)
    billing.mark_intervention_invoiced(pending, clerk)
    with pytest.raises(ServiceError):
        billing.mark_intervention_invoiced(pending, clerk)
    waived = [i for i in recorded() if not i.billable][0]
    with pytest.raises(ServiceError):
        billing.mark_intervention_invoiced(waived, clerk)
    actions = db.session.scalars(select(AuditEntry.action).where(
        AuditEntry.actor_id == clerk.id)).all()
    assert actions == ["intervention.minutes", "intervention.invoiced"]
    assert billing.pending_interventions() == []
