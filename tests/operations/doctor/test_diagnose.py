"""The doctor's verdicts, cause by cause, on messages built through the real pipeline."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard import reasons
from dashboard.extensions import db
from dashboard.models import AuditEntry, Message, Suppression, SuppressionRemoval, utcnow
from dashboard.services import ServiceError
from dashboard.services.bounces import suppressions
from dashboard.services.core import settings
from dashboard.services.delivery import sending
from dashboard.services.delivery.sweep import sweep
from dashboard.services.operations import doctor


def colours(diagnosis) -> dict:
    """cause -> colour, for short assertions."""
    return {v.cause: v.colour for v in diagnosis.verdicts}


def test_the_doctor_needs_an_address_or_a_reference(app):
    """Asking about nothing is a field error, not an empty diagnosis."""
    with pytest.raises(ServiceError) as error:
        doctor.diagnose("", "  ")
    assert error.value.field == "address"


def test_a_bad_address_is_refused_with_its_field(app):
    """A malformed address names the address field."""
    with pytest.raises(ServiceError) as error:
        doctor.diagnose("not an address", None)
    assert error.value.field == "address"


def test_sending_off_for_everyone_is_cause_a_in_red(app, make_customer, notify):
    """With the global switch off, the message is held and cause (a) is red with a fix."""
    customer, _ = make_customer()
    sending.set_global(False)
    message = notify(customer, "Anna@Example.com")
    assert message.status == "held"
    result = doctor.diagnose("anna@example.com")
    verdict = result.verdict("sending")
    assert verdict.colour == "red" and "everyone" in verdict.title
    assert [a.kind for a in verdict.actions] == ["turn_on"]
    assert verdict.actions[0].roles == ("admin",)
    assert message in verdict.messages and result.primary is verdict


def test_a_customer_switched_off_is_cause_a_for_that_customer(app, make_customer, notify):
    """A customer's own switch off: no user of this customer receives notifications."""
    customer, _ = make_customer(name="Ferramenta Bianchi")
    sending.set_customer(customer, False)
    notify(customer, "anna@example.com")
    verdict = doctor.diagnose(None, "ORD-7").verdict("sending")
    assert verdict.colour == "red"
    assert "Ferramenta Bianchi" in verdict.title
    assert "no user of this customer" in verdict.text.lower()
    assert verdict.actions[0].values == {"scope": "customer", "code": customer.code}


def test_a_paused_customer_is_cause_a_with_a_resume_button(app, make_customer, notify):
    """A paused customer (processing blocked) shows the reason and a resume action."""
    customer, _ = make_customer()
    sending.pause_customer(customer, "repeated SMTP authentication failures")
    db.session.commit()
    notify(customer, "anna@example.com")
    verdict = doctor.diagnose("anna@example.com", customer=customer).verdict("sending")
    assert verdict.colour == "red"
    assert "repeated SMTP authentication failures" in verdict.text
    assert verdict.actions[0].kind == "resume"
    sending.resume_customer(customer)
    assert doctor.diagnose("anna@example.com").verdict("sending").colour == "green"


def test_an_accepted_message_points_to_the_spam_folder(app, relay, make_customer, notify):
    """Cause (b): accepted by the recipient's server, with its answer and time: check spam."""
    customer, _ = make_customer()
    message = notify(customer, "anna@example.com")
    assert message.status == "sent"
    result = doctor.diagnose("anna@example.com")
    verdict = result.verdict("spam")
    assert verdict.colour == "amber"
    assert "spam" in verdict.text and "Gmail" in verdict.text and "Yahoo" in verdict.text
    assert any("250" in line and message.sent_at.strftime("%Y-%m-%d %H:%M") in line
               for line in verdict.evidence)
    assert any("Not opened" in line for line in verdict.evidence)
    assert colours(result) == {"sending": "green", "spam": "amber", "suppression": "green",
                               "temporary": "green"}
    assert result.primary is verdict


def test_an_opened_message_is_green_and_says_opens_are_approximate(app, relay, make_customer,
                                                                   notify):
    """An open recorded on the message turns (b) green, with the approximation noted."""
    customer, _ = make_customer()
    message = notify(customer, "anna@example.com")
    message.status, message.opened_at, message.open_count = "opened", utcnow(), 2
    db.session.commit()
    verdict = doctor.diagnose("anna@example.com").verdict("spam")
    assert verdict.colour == "green"
    assert any("Opened 2 times" in line and "approximate" in line for line in verdict.evidence)


@pytest.mark.parametrize("verdict, colour, words", [
    ("reject", "red", "refuse our mail"),
    ("risk", "amber", "does not authorise our relay"),
    ("pass", "amber", "found our relay authorised"),
])
def test_a_custom_from_customer_shows_its_dns_verdict(app, relay, make_customer, notify,
                                                      verdict, colour, words):
    """For custom_from, the stored DNS verdict is evidence; a rejecting DMARC makes (b) red."""
    customer, _ = make_customer(sending_mode="custom_from", from_address="info@bianchi.example")
    customer.dns_check = {"domain": "bianchi.example", "verdict": verdict,
                          "spf": {"result": "fail" if verdict != "pass" else "pass"},
                          "dmarc": {"policy": "reject" if verdict == "reject" else "none"},
                          "errors": []}
    customer.dns_checked_at = utcnow()
    db.session.commit()
    notify(customer, "anna@example.com")
    result = doctor.diagnose("anna@example.com").verdict("spam")
    assert result.colour == colour
    assert any(words in line and "SPF: " in line for line in result.evidence)


def test_a_custom_from_customer_never_checked_is_a_warning(app, relay, make_customer, notify):
    """Without a stored DNS check, custom_from mail stays amber with the antispam risk."""
    customer, _ = make_customer(sending_mode="custom_from", from_address="info@bianchi.example")
    notify(customer, "anna@example.com")
    verdict = doctor.diagnose("anna@example.com").verdict("spam")
    assert verdict.colour == "amber"
    assert any("never checked" in line for line in verdict.evidence)


def test_a_hard_bounce_is_cause_c_with_reason_since_and_lift(app, fault_relay, make_customer,
                                                            notify):
    """Cause (c): a 550 at send time suppresses; the doctor shows the entry and a lift."""
    fault_relay({"gone@example.com": "550"})
    customer, _ = make_customer()
    message = notify(customer, "gone@example.com")
    assert message.status == "failed"
    result = doctor.diagnose("gone@example.com")
    verdict = result.verdict("suppression")
    assert verdict.colour == "red"
    assert any("hard bounce" in line and "550" in line for line in verdict.evidence)
    [lift] = [a for a in verdict.actions if a.kind == "lift"]
    assert lift.roles == ("support",) and lift.values["billable"] is False
    assert lift.values["customer"] == customer.code  # the sender, pre-selected
    # the failed send itself is cause (d), resendable once the address is lifted
    assert result.verdict("temporary").colour == "red"
    assert result.primary.cause == "suppression"


def test_a_suppressed_address_stops_new_messages(app, relay, make_customer, notify):
    """A message to a suppressed address is recorded as suppressed and counted as evidence."""
    customer, _ = make_customer()
    suppressions.suppress("anna@example.com", "complaint", customer)
    db.session.commit()
    message = notify(customer, "anna@example.com")
    assert message.status == "suppressed"
    verdict = doctor.diagnose("anna@example.com", customer=customer).verdict("suppression")
    assert verdict.colour == "red" and message in verdict.messages
    assert any("spam complaint" in line for line in verdict.evidence)
    [lift] = [a for a in verdict.actions if a.kind == "lift"]
    assert lift.roles == ("admin",)  # a complaint is lifted by an admin only
    assert lift.values["customer"] == customer.code


def test_a_previous_removal_in_the_billing_window_warns_billable(app, make_customer, make_user):
    """A second lift inside the billing window is flagged billable, with the history shown."""
    customer, _ = make_customer()
    agent = make_user("support")
    first = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    doctor.lift(first, "mailbox fixed", customer, 10, agent)
    suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    verdict = doctor.diagnose("anna@example.com").verdict("suppression")
    assert verdict.colour == "red"
    assert any(line.startswith("Billable") for line in verdict.evidence)
    assert any("mailbox fixed" in line for line in verdict.evidence)
    [lift] = [a for a in verdict.actions if a.kind == "lift"]
    assert lift.values["billable"] is True
    window = settings.get("billing_window_days")
    assert any(f"{window}-day" in line for line in verdict.evidence)


def test_lifting_records_a_removal_and_an_audit_entry(app, make_customer, make_user):
    """A lift keeps the removal (reason, customer, minutes) and is audited; then (c) is green."""
    customer, _ = make_customer()
    agent = make_user("support")
    entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    removal = doctor.lift(entry, "customer fixed the mailbox", customer, 15, agent)
    assert (removal.reason, removal.customer_id, removal.minutes_spent, removal.billable) == (
        "customer fixed the mailbox", customer.id, 15, False)
    assert db.session.get(Suppression, entry.id).lifted_at is not None
    audit = db.session.scalar(db.select(AuditEntry).where(AuditEntry.action == "suppression.lift"))
    assert audit is not None and audit.actor_id == agent.id
    assert doctor.diagnose("anna@example.com").verdict("suppression").colour == "green"


def test_lifting_requires_a_reason_and_the_customer(app, make_customer, make_user):
    """A lift without a reason or without the requesting customer changes nothing."""
    customer, _ = make_customer()
    agent = make_user("support")
    entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    with pytest.raises(ServiceError) as error:
        doctor.lift(entry, "  ", customer, 5, agent)
    assert error.value.field == "reason"
    with pytest.raises(ServiceError) as error:
        doctor.lift(entry, "fixed", None, 5, agent)
    assert error.value.field == "customer"
    db.session.rollback()
    assert db.session.scalar(db.select(db.func.count(SuppressionRemoval.id))) == 0


def test_a_deferred_message_is_cause_d_with_its_next_retry(app, fault_relay, make_customer,
                                                           notify):
    """Cause (d): a 451 defers the message; the doctor shows the answer and the next retry."""
    fault_relay({"busy@example.com": "451"})
    customer, _ = make_customer()
    message = notify(customer, "busy@example.com")
    assert message.status == "deferred"
    verdict = doctor.diagnose("busy@example.com").verdict("temporary")
    assert verdict.colour == "amber"
    [line] = verdict.evidence
    assert "451" in line and message.next_attempt_at.strftime("%Y-%m-%d %H:%M") in line
    assert verdict.actions == []


def test_a_message_failed_after_retries_is_cause_d_with_resend(app, fault_relay, make_customer,
                                                                notify, make_user):
    """Retries exhausted: (d) is red with a resend; after the resend the original is settled."""
    fault_relay({"busy@example.com": "451"})
    customer, _ = make_customer()
    message = notify(customer, "busy@example.com")
    assert message.status == "deferred"
    # nearly a day old and due again: the next 451 exhausts the retries
    message.created_at = utcnow() - timedelta(hours=23, minutes=59)
    message.next_attempt_at = utcnow()
    db.session.commit()
    sweep()
    message = db.session.get(Message, message.id)
    assert message.status == "failed"
    assert "retries exhausted" in reasons.english(message.status_reason)
    verdict = doctor.diagnose("busy@example.com").verdict("temporary")
    assert verdict.colour == "red"
    [resend] = verdict.actions
    assert resend.kind == "resend" and resend.values == {"public_id": message.public_id}
    copy = doctor.resend(message, make_user("support"))
    assert copy.resend_of_id == message.id and copy.status == "queued"
    assert copy.subject == message.subject and copy.html_body == message.html_body
    verdict = doctor.diagnose("busy@example.com").verdict("temporary")
    assert verdict.colour == "green" and copy in verdict.messages
    assert db.session.scalar(db.select(AuditEntry).where(AuditEntry.action == "message.resend"))


def test_sending_off_and_a_suppression_are_both_reported_in_order(app, make_customer, notify):
    """Combined causes: (a) and (c) both red, (a) first as the most likely."""
    customer, _ = make_customer()
    suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    sending.set_global(False)
    notify(customer, "anna@example.com")
    notify(customer, "other@example.com")
    result = doctor.diagnose(None, "ORD-7")
    assert [v.cause for v in result.verdicts] == ["sending", "spam", "suppression", "temporary"]
    assert colours(result)["sending"] == "red" and colours(result)["suppression"] == "red"
    assert result.primary.cause == "sending"
    assert {m.recipient for m in result.messages} == {"anna@example.com", "other@example.com"}


def test_a_deferred_retry_and_an_earlier_accepted_message_both_show(app, fault_relay,
                                                                    make_customer, notify):
    """Combined causes: one message accepted (b amber), a later one deferred (d amber)."""
    fault_relay({"busy@example.com": "451"})
    customer, _ = make_customer()
    notify(customer, "anna@example.com", reference="ORD-9")
    notify(customer, "busy@example.com", reference="ORD-9")
    result = doctor.diagnose(reference="ORD-9")
    assert colours(result) == {"sending": "green", "spam": "amber", "suppression": "green",
                               "temporary": "amber"}


def test_nothing_found_names_the_retention_period(app, relay, make_customer, notify):
    """No message within the retention period: say so, with the period and a hint."""
    customer, _ = make_customer()
    old = notify(customer, "anna@example.com")
    old.created_at = utcnow() - timedelta(days=45)
    db.session.commit()
    result = doctor.diagnose("anna@example.com")
    assert not result.found
    verdict = result.verdict("nothing")
    assert verdict.colour == "amber"
    assert "last 30 days" in verdict.text and "never have reached Postino" in verdict.text
    settings.put("retention_days", 60)
    assert doctor.diagnose("anna@example.com").found


def test_nothing_found_still_checks_the_suppression_list(app, make_customer):
    """Even with no message left, a suppressed address is reported (c)."""
    customer, _ = make_customer()
    suppressions.suppress("anna@example.com", "hard_bounce", customer)
    db.session.commit()
    result = doctor.diagnose("anna@example.com")
    assert not result.found
    assert colours(result)["suppression"] == "red" and colours(result)["nothing"] == "amber"


def test_a_customer_narrows_the_search(app, relay, make_customer, notify):
    """With a customer given, other customers' messages are not read."""
    first, _ = make_customer()
    second, _ = make_customer()
    notify(first, "anna@example.com")
    notify(second, "anna@example.com")
    result = doctor.diagnose("anna@example.com", customer=second)
    assert {m.customer_id for m in result.messages} == {second.id}
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 2
