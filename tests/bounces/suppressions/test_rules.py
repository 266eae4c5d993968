"""Suppression rules: hard, soft threshold and expiry, complaints, scopes, lifts and billing."""
from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard.extensions import db
from dashboard.models import AuditEntry, BounceReport, JobRun, Message, Suppression, utcnow
from dashboard.services import ServiceError
from dashboard.services.bounces import suppressions
from dashboard.services.bounces.suppressions import NotAllowed
from dashboard.services.core import settings
from dashboard.services.messages import resend


def active(address="mario.rossi@example.org"):
    """The active relay entry for an address."""
    return suppressions.active_entry(address, "relay", None)


def test_a_hard_bounce_suppresses_at_once_with_code_and_diagnostic(bounce):
    """One 5.x.x report is enough; the entry keeps the status and the diagnostic."""
    message = bounce("gmail_dsn.eml")
    entry = active()
    assert entry.reason == "hard_bounce" and entry.smtp_code == "5.1.1"
    assert "does not exist" in entry.diagnostic and entry.message_id == message.id
    assert db.session.scalar(db.select(AuditEntry.target_id).where(
        AuditEntry.action == "suppression.add")) == str(entry.id)


def test_soft_bounces_suppress_at_the_threshold_with_an_expiry(bounce):
    """Three soft bounces (distinct messages) within 7 days → a 7-day entry; a delay
    warning is not a bounce and counts nothing."""
    bounce("soft_dsn.eml")
    bounce("delayed_dsn.eml")
    bounce("qmail_mailbox_full.eml")
    assert active() is None
    bounce("soft_dsn.eml")
    entry = active()
    assert entry.reason == "soft_bounce"
    assert entry.expires_at - utcnow() > timedelta(days=6, hours=23)


def test_repeated_reports_for_one_message_count_once(bounce, make_message):
    """Three soft bounces reported for the same message are one soft bounce, not three."""
    message = make_message()
    for _ in range(3):
        bounce("soft_dsn.eml", message=message)
    assert active() is None


def test_soft_bounces_outside_the_window_do_not_count(bounce):
    """Old soft bounces fall out of the window (Settings: soft_bounce_window_days)."""
    bounce("soft_dsn.eml")
    bounce("soft_dsn.eml")
    for row in db.session.scalars(db.select(BounceReport)):
        row.received_at = utcnow() - timedelta(days=8)
    db.session.commit()
    bounce("soft_dsn.eml")
    assert active() is None


def test_the_soft_threshold_comes_from_settings(bounce):
    """With a threshold of 1, the first soft bounce suppresses, for the configured days."""
    settings.put("soft_bounce_threshold", 1)
    settings.put("soft_suppression_days", 2)
    bounce("soft_dsn.eml")
    assert active().expires_at - utcnow() < timedelta(days=2, minutes=1)


def test_expired_soft_entries_stop_applying_and_are_lifted_automatically(app, bounce,
                                                                          make_message):
    """The scheduled job lifts expired entries as automatic, audited removals."""
    from dashboard.worker import scheduler

    settings.put("soft_bounce_threshold", 1)
    bounce("soft_dsn.eml")
    entry = active()
    entry.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert make_message().status == "queued"  # expired: no longer applies
    assert "suppression_expiry" in {j["id"] for j in scheduler.job_definitions(app)}
    scheduler.make_scheduler(app, background=True)
    scheduler.run_suppression_expiry()
    db.session.expire_all()
    entry = db.session.get(Suppression, entry.id)
    [removal] = entry.removals
    assert entry.lifted_at is not None and removal.automatic and not removal.billable
    run = db.session.scalar(db.select(JobRun).where(JobRun.job == "suppression_expiry"))
    assert run.status == "ok" and run.counts == {"lifted": 1}
    audit = db.session.scalar(db.select(AuditEntry).where(
        AuditEntry.action == "suppression.expire"))
    assert audit.actor_label == "system (automatic)"


def test_a_hard_bounce_makes_a_soft_entry_permanent(bounce):
    """A permanent reason outranks a temporary entry for the same address."""
    settings.put("soft_bounce_threshold", 1)
    bounce("soft_dsn.eml")
    bounce("postfix_hard.eml")
    entry = active()
    assert entry.reason == "hard_bounce" and entry.expires_at is None
    assert db.session.scalar(db.select(db.func.count(Suppression.id))) == 1


def test_addresses_are_normalised(customer, make_message):
    """Case and whitespace do not make another address."""
    suppressions.suppress("  Mario.Rossi@EXAMPLE.org ", "hard_bounce", customer)
    db.session.commit()
    assert active("mario.rossi@example.org") is not None
    assert make_message("MARIO.ROSSI@example.org").status == "suppressed"


def test_customer_smtp_entries_apply_to_that_customer_only(make_customer, make_message):
    """A customer-scope entry stops that customer's own SMTP, not the relay or others."""
    own, _ = make_customer("OWN", sending_mode="customer_smtp", smtp_host="127.0.0.1",
                           smtp_port=1)
    other, _ = make_customer("OTHER", sending_mode="customer_smtp", smtp_host="127.0.0.1",
                             smtp_port=1)
    entry = suppressions.suppress("a@example.org", "hard_bounce", own)
    db.session.commit()
    assert (entry.scope, entry.customer_id) == ("customer", own.id)
    assert make_message("a@example.org", owner=own).status == "suppressed"
    assert make_message("a@example.org", owner=other).status != "suppressed"
    assert make_message("a@example.org").status == "queued"  # relay customer


def test_a_5xx_at_send_time_is_a_hard_bounce_in_the_messages_scope(customer, make_message):
    """The pipeline's synchronous 5xx suppresses in the scope the message went out in."""
    message = make_message()
    entry = suppressions.record_send_failure(message, 550, "5.1.1 No such user")
    assert (entry.reason, entry.scope, entry.smtp_code) == ("hard_bounce", "relay", "550")
    assert suppressions.record_send_failure(message, 451, "later") is None


def test_manual_add_needs_a_reason_and_support(customer, make_user):
    """Staff add by hand with a reason; billing staff may not."""
    support = make_user("support")
    with pytest.raises(ServiceError) as exc:
        suppressions.add_manual("x@example.org", " ", support)
    assert exc.value.field == "reason"
    with pytest.raises(NotAllowed):
        suppressions.add_manual("x@example.org", "asked", make_user("billing"))
    entry = suppressions.add_manual("X@Example.org", "customer asked, ticket 12", support)
    assert (entry.address, entry.reason, entry.note) == ("x@example.org", "manual",
                                                         "customer asked, ticket 12")
    with pytest.raises(ServiceError) as exc:
        suppressions.add_manual("x@example.org", "again", support)
    assert exc.value.field == "address"


def test_lifting_a_suppression_requires_a_reason_and_the_customer(bounce, customer, make_user):
    """No reason, no customer, or bad minutes: refused, and nothing changes."""
    support = make_user("support")
    bounce("postfix_hard.eml")
    entry = active()
    for kwargs, field in (({"reason": ""}, "reason"), ({"customer": None}, "customer"),
                          ({"minutes": "ten"}, "minutes"), ({"minutes": -1}, "minutes")):
        args = {"customer": customer, "reason": "ticket", "ticket": None, "minutes": 5,
                "actor": support} | kwargs
        with pytest.raises(ServiceError) as exc:
            suppressions.lift(entry, **args)
        assert exc.value.field == field
    db.session.rollback()
    assert active() is not None


def test_only_an_admin_may_lift_a_complaint(bounce, customer, make_user):
    """Support is refused on a complaint entry; an admin lifts it."""
    bounce("arf_complaint.eml")
    entry = active()
    assert not suppressions.can_lift(entry, make_user("support"))
    with pytest.raises(NotAllowed):
        suppressions.lift(entry, customer, "asked", None, 5, make_user("support"))
    removal = suppressions.lift(entry, customer, "asked", "T-1", 5, make_user("admin"))
    assert removal.suppression.lifted_at is not None


def test_a_second_lift_inside_the_billing_window_is_billable(bounce, customer, make_user):
    """First lift free; the same address lifted again within 90 days is billable."""
    support = make_user("support")
    bounce("postfix_hard.eml")
    first = suppressions.lift(active(), customer, "asked", "T-1", 10, support)
    assert not first.billable
    bounce("postfix_hard.eml")
    entry = active()
    assert entry.repeated  # suppressed again shortly after a removal
    assert suppressions.preview_lift(entry).billable
    second = suppressions.lift(entry, customer, "asked again", "T-2", 25, support)
    assert second.billable and second.minutes_spent == 25
    audit = db.session.scalar(db.select(AuditEntry).where(
        AuditEntry.action == "suppression.lift").order_by(AuditEntry.id.desc()))
    assert audit.after["billable"] is True and audit.customer_id == customer.id


def test_a_lift_after_the_billing_window_is_not_billable(bounce, customer, make_user):
    """A previous removal older than the window does not make the next one billable."""
    support = make_user("support")
    bounce("postfix_hard.eml")
    first = suppressions.lift(active(), customer, "asked", None, 10, support)
    first.removed_at = utcnow() - timedelta(days=91)
    db.session.commit()
    bounce("postfix_hard.eml")
    entry = active()
    assert not entry.repeated
    assert not suppressions.lift(entry, customer, "asked", None, 5, support).billable


def test_automatic_removals_do_not_make_a_lift_billable(bounce, customer, make_user):
    """Only staff interventions count for billing."""
    settings.put("soft_bounce_threshold", 1)
    bounce("soft_dsn.eml")
    suppressions.expire_due(utcnow() + timedelta(days=8))
    bounce("postfix_hard.eml")
    entry = active()
    assert entry.repeated
    assert not suppressions.lift(entry, customer, "asked", None, 5, make_user("support")).billable


def test_a_lift_can_resend_the_last_suppressed_message(bounce, customer, make_message,
                                                        make_user):
    """Resend now: a new message, linked to the suppressed one, with its content; queued."""
    bounce("postfix_hard.eml")
    held_back = make_message()
    assert held_back.status == "suppressed"
    support = make_user("support")
    resend.lift_and_resend(active(), customer, "asked", None, 5, support)
    resent = db.session.scalar(db.select(Message).where(Message.resend_of_id == held_back.id))
    assert resent.status == "queued" and resent.subject == held_back.subject
    assert resent.resent_by_id == support.id and held_back.status == "suppressed"


def test_the_requesting_customer_is_preselected_only_when_one_customer_wrote_to_the_address(
        bounce, make_customer, make_message):
    """One sender: pre-selected. A second customer writing to the address makes it ambiguous:
    nothing is pre-selected (the latest sender was billed for another customer's request)."""
    bounce("postfix_hard.eml")
    [only] = suppressions.senders(active().address)
    assert suppressions.suggested_customer(active()) == only
    later, _ = make_customer("LATER")
    make_message(owner=later)
    assert set(suppressions.senders(active().address)) == {later, only}
    assert suppressions.suggested_customer(active()) is None


def test_search_by_address_domain_reason_and_state(customer, make_user):
    """The page's search: exact address, a domain, a reason, active or lifted."""
    support = make_user("support")
    suppressions.suppress("a@one.example", "hard_bounce", customer)
    suppressions.suppress("b@one.example", "complaint", customer)
    lifted = suppressions.suppress("c@two.example", "hard_bounce", customer)
    suppressions.lift(lifted, customer, "asked", None, 1, support)
    F = suppressions.Filters
    assert [e.address for e in suppressions.search(F(q="A@one.example"))] == ["a@one.example"]
    assert {e.address for e in suppressions.search(F(q="one.example"))} == {"a@one.example",
                                                                           "b@one.example"}
    assert [e.address for e in suppressions.search(F(q="@one.example", reason="complaint"))] \
        == ["b@one.example"]
    assert [e.address for e in suppressions.search(F(state="lifted"))] == ["c@two.example"]
    assert len(suppressions.search(F(state="all"))) == 3
    assert suppressions.search(F(q="%")) == []


def test_a_billable_lift_needs_minutes_spent(bounce, customer, make_user):
    """A repeated removal is invoiced by the time spent: 0 minutes is refused, nothing lifted."""
    support = make_user("support")
    bounce("postfix_hard.eml")
    suppressions.lift(active(), customer, "asked", None, 0, support)  # the first is free
    bounce("postfix_hard.eml")
    entry = active()
    for minutes in (0, "", "0"):
        with pytest.raises(ServiceError) as refused:
            suppressions.lift(entry, customer, "asked again", None, minutes, support)
        assert refused.value.field == "minutes"
        db.session.rollback()
    assert active() is not None and entry.lifted_at is None
    assert suppressions.lift(entry, customer, "asked again", None, 15, support).billable
