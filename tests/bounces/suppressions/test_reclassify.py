"""Reclassify: entries the old rules created are re-read with the current classifier; those it
would not create are lifted as "reclassified" (audited, never billable)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry, BounceReport, JobRun, Suppression, utcnow
from dashboard.services.bounces import reclassify, suppressions

CORPUS = Path(__file__).parent.parent / "corpus" / "eml"


def old_entry(address: str, reason: str, customer, *, raw: str | None = None,
              message=None, smtp_code=None, diagnostic=None, trusted: bool = True,
              kind: str = "hard") -> Suppression:
    """An entry as the old rules made it: no verdict, its report (if any) unclassified."""
    entry = suppressions.suppress(address, reason, customer, smtp_code=smtp_code,
                                  diagnostic=diagnostic, message=message)
    if raw is not None:
        db.session.add(BounceReport(
            message_id=message.id if (message is not None and trusted) else None,
            customer_id=customer.id if trusted else None, recipient=address, kind=kind,
            raw=raw, suppression_id=entry.id, received_at=utcnow()))
    db.session.commit()
    return entry


def corpus(name: str, old: str, new: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8").replace(old, new)


@pytest.fixture
def old_entries(customer, make_message):
    """One entry of each kind the old rules created, wrong or right."""
    return {
        "dmarc": old_entry("d@example.org", "hard_bounce", customer,
                           raw=corpus("postfix_dsn_dmarc.eml", "mario.rossi@example.org",
                                      "d@example.org"), message=make_message("d@example.org")),
        "unknown_user": old_entry("u@example.org", "hard_bounce", customer,
                                  raw=corpus("postfix_dsn_user_unknown.eml",
                                             "mario.rossi@example.org", "u@example.org"),
                                  message=make_message("u@example.org")),
        "blocklist_at_send": old_entry("b@example.org", "hard_bounce", customer,
                                       smtp_code="550", diagnostic="5.7.1 Service unavailable; "
                                       "Client host [192.0.2.1] blocked using zen.spamhaus.org"),
        "purged": old_entry("p@example.org", "hard_bounce", customer,
                            raw=corpus("postfix_dsn_user_unknown.eml",
                                       "mario.rossi@example.org", "p@example.org"),
                            trusted=False),
        "complaint": old_entry("c@example.org", "complaint", customer,
                               raw=corpus("arf_aol_abuse.eml", "someone@aol.example",
                                          "c@example.org"),
                               message=make_message("c@example.org"), kind="complaint"),
        "manual": suppressions.add_manual("m@example.org", "asked by the customer",
                                          _admin()),
        "no_evidence": old_entry("n@example.org", "hard_bounce", customer),
    }


def _admin():
    from dashboard.models import User

    admin = db.session.scalar(select(User).where(User.role == "admin"))
    if admin is None:
        from dashboard.services.accounts import users

        admin = users.create_user("reclassify-admin@staff.example.com", "admin",
                                  "correct horse battery")
    return admin


def lifted(entries: dict) -> set[str]:
    db.session.expire_all()
    return {name for name, entry in entries.items()
            if db.session.get(Suppression, entry.id).lifted_at is not None}


def test_entries_the_current_rules_would_not_create_are_lifted_as_reclassified(old_entries):
    """DMARC, a blocklist at send time and a report for a message we did not hold are lifted;
    a real unknown user, a complaint, manual and evidence-less entries stay."""
    summary = reclassify.run()
    assert lifted(old_entries) == {"dmarc", "blocklist_at_send", "purged"}
    assert (summary.examined, summary.lifted, summary.kept, summary.no_evidence) == (6, 3, 2, 1)
    kept = db.session.get(Suppression, old_entries["unknown_user"].id)
    assert (kept.fault_class, kept.fault_reason) == ("recipient_permanent", "unknown_user")
    removal = db.session.get(Suppression, old_entries["dmarc"].id).removals[0]
    assert (removal.reason, removal.automatic, removal.billable) == ("reclassified", True, False)
    audit = db.session.scalar(select(AuditEntry).where(
        AuditEntry.action == "suppression.reclassify",
        AuditEntry.target_id == str(old_entries["dmarc"].id)))
    assert "dmarc" in audit.note and audit.after["fault_reason"] == "dmarc"


def test_a_dry_run_changes_nothing_and_says_what_it_would_lift(old_entries):
    """Dry run: the same verdicts, nothing lifted, nothing written."""
    summary = reclassify.run(dry_run=True)
    assert summary.lifted == 3 and lifted(old_entries) == set()
    assert {c["address"] for c in summary.changes} == {"d@example.org", "b@example.org",
                                                       "p@example.org"}
    assert db.session.get(Suppression, old_entries["unknown_user"].id).fault_class is None


def test_the_cli_prints_each_change_and_the_counts(old_entries, runner):
    """`flask reclassify-suppressions --dry-run` prints, then the real run lifts."""
    result = runner.invoke(args=["reclassify-suppressions", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would lift" in result.output and "d@example.org" in result.output
    assert result.output.strip().splitlines()[-1] == (
        "examined=6 would lift=3 kept=2 no_evidence=1")
    assert lifted(old_entries) == set()
    result = runner.invoke(args=["reclassify-suppressions"])
    assert result.output.strip().splitlines()[-1] == "examined=6 lifted=3 kept=2 no_evidence=1"
    assert lifted(old_entries) == {"dmarc", "blocklist_at_send", "purged"}


def test_soft_entries_made_of_delay_warnings_are_lifted(customer, make_message):
    """Three delayed DSNs counted as soft bounces by the old rules: no longer soft."""
    raw = corpus("postfix_dsn_delay_timeout.eml", "x@slow.example", "s@example.org")
    for _ in range(3):
        message = make_message("s@example.org")
        db.session.add(BounceReport(message_id=message.id, customer_id=customer.id,
                                    recipient="s@example.org", kind="delayed", raw=raw,
                                    received_at=utcnow()))
    entry = old_entry("s@example.org", "soft_bounce", customer)
    entry.expires_at = utcnow().replace(year=utcnow().year + 1)
    db.session.commit()
    assert reclassify.run().lifted == 1
    assert db.session.get(Suppression, entry.id).lifted_at is not None


def test_removing_an_entry_the_rules_would_not_create_is_never_billable(old_entries, customer,
                                                                       make_user):
    """A DMARC entry lifted twice by staff inside the window: still not billable."""
    support = make_user("support")
    entry = old_entries["dmarc"]
    suppressions.lift(entry, customer, "asked", None, 5, support)
    again = old_entry("d@example.org", "hard_bounce", customer,
                      raw=corpus("postfix_dsn_dmarc.eml", "mario.rossi@example.org",
                                 "d@example.org"))
    preview = suppressions.preview_lift(again)
    assert preview.previous is not None and not preview.billable
    assert not preview.recipient_fault
    assert not suppressions.lift(again, customer, "asked again", None, 5, support).billable


def test_a_reclassified_removal_does_not_make_the_next_lift_billable(old_entries, customer,
                                                                    make_user):
    """The reclassify lift is not a staff intervention: a real bounce later, lifted once,
    is the first (free) removal."""
    reclassify.run()
    entry = suppressions.suppress("d@example.org", "hard_bounce", customer,
                                  verdict=suppressions.fault.Verdict(
                                      "recipient_permanent", "unknown_user", True))
    db.session.commit()
    assert not entry.repeated
    assert not suppressions.lift(entry, customer, "asked", None, 5, make_user("support")).billable


def test_admins_reclassify_from_the_page_with_progress_and_a_summary(old_entries, admin_client,
                                                                     support_client):
    """The button: support may not; an admin's run reports progress, then its summary."""
    assert support_client.post("/suppressions/reclassify").status_code == 403
    page = admin_client.get("/suppressions/").get_data(as_text=True)
    assert "Reclassify now" in page and "Preview (dry run)" in page
    response = admin_client.post("/suppressions/reclassify", data={"dry_run": "0"},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200
    run = db.session.scalar(select(JobRun).where(JobRun.job == reclassify.JOB))
    db.session.commit()  # end the test's read, so the run's thread may write (SQLite)
    reclassify.wait_for(run.id)
    db.session.expire_all()
    done = admin_client.get(f"/suppressions/reclassify/{run.id}",
                            headers={"HX-Request": "true"})
    body = done.get_data(as_text=True)
    assert done.status_code == 286
    assert "3 lifted as reclassified" in body and "d@example.org" in body
    assert lifted(old_entries) == {"dmarc", "blocklist_at_send", "purged"}


def test_the_suppressions_page_says_why_each_address_is_there(support_client, bounce):
    """Reason, who is at fault in words, and an old entry marked as not classified."""
    bounce("postfix_hard.eml", "a@one.example")
    page = support_client.get("/suppressions/?q=a@one.example").get_data(as_text=True)
    assert "Recipient&#39;s address (permanent)" in page
    assert "the address does not exist" in page
