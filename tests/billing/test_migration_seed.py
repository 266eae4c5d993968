"""The 0003 migration seeds the customer_smtp periods of existing customers from the best
evidence: the audited mode changes, else the customer's creation date."""
from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from flask_migrate import upgrade
from sqlalchemy import insert, select

from dashboard.extensions import db
from dashboard.models import AuditEntry, Customer, CustomerSmtpPeriod
from tests.test_migrations import migration_app  # noqa: F401 - an empty database of its own


def at(month: int, day: int) -> datetime:
    """A moment in 2026 (UTC)."""
    return datetime(2026, month, day, 9, 30, tzinfo=UTC)


def switch(customer, when: datetime, old: str, new: str) -> AuditEntry:
    """The audit entry customer_settings.save wrote for a mode change before 0003."""
    return AuditEntry(action="customer.sending_mode", at=when, actor_label="admin@x.example",
                      target_type="customer", target_id=str(customer.id),
                      customer_id=customer.id, before={"sending_mode": old},
                      after={"sending_mode": new})


def test_existing_customer_smtp_customers_get_their_periods_from_the_audit_log(
        migration_app):  # noqa: F811
    """Audited switch → its date; no audit → creation date (flagged); earlier stretches that
    ended are seeded closed; standard customers that never switched get nothing."""
    upgrade(revision="0002")
    # rows as the 0002 schema holds them (the model has columns added by later revisions)
    table = Customer.__table__
    made = {code: SimpleNamespace(code=code, id=db.session.execute(
        insert(table).values(code=code, name=code, sending_mode=mode, created_at=at(1, 1),
                             updated_at=at(1, 1)).returning(table.c.id)).scalar_one())
            for code, mode in (("AUDITED", "customer_smtp"), ("SILENT", "customer_smtp"),
                               ("LEFT", "standard"), ("BACK", "customer_smtp"),
                               ("PLAIN", "standard"))}
    db.session.add_all([
        switch(made["AUDITED"], at(2, 3), "standard", "customer_smtp"),
        AuditEntry(action="customer.sending_mode", at=at(2, 20), customer_id=made["AUDITED"].id,
                   before={"smtp_port": 587}, after={"smtp_port": 2525}),  # not a mode change
        switch(made["LEFT"], at(3, 1), "custom_from", "customer_smtp"),
        switch(made["LEFT"], at(5, 15), "customer_smtp", "standard"),
        switch(made["BACK"], at(4, 2), "customer_smtp", "custom_from"),  # on it since creation
        switch(made["BACK"], at(6, 7), "custom_from", "customer_smtp"),
        switch(made["PLAIN"], at(4, 4), "standard", "custom_from"),
        switch(made["PLAIN"], at(4, 5), "custom_from", "standard"),
    ])
    db.session.commit()
    upgrade()
    periods = db.session.scalars(select(CustomerSmtpPeriod).order_by(
        CustomerSmtpPeriod.customer_id, CustomerSmtpPeriod.started_at)).all()
    code = {c.id: c.code for c in made.values()}
    assert [(code[p.customer_id], p.started_at, p.ended_at, p.start_evidence)
            for p in periods] == [
        ("AUDITED", at(2, 3), None, "audit"),
        ("SILENT", at(1, 1), None, "created"),
        ("LEFT", at(3, 1), at(5, 15), "audit"),
        ("BACK", at(1, 1), at(4, 2), "created"),
        ("BACK", at(6, 7), None, "audit"),
    ]
