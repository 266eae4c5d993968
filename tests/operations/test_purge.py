"""Retention purge: what goes, what stays, in small transactions, recorded as a job run."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from dashboard.extensions import db
from dashboard.models import (
    PENDING_STATUSES,
    AuditEntry,
    BounceReport,
    IdempotencyKey,
    JobRun,
    Message,
    MessageAttachment,
    MessageEvent,
    Suppression,
    SuppressionRemoval,
    utcnow,
)
from dashboard.services.core import settings
from dashboard.services.operations import purge


def count(model) -> int:
    """Rows in a table."""
    return db.session.scalar(select(func.count()).select_from(model))


def test_messages_past_retention_are_purged_with_their_events_and_attachments(make_message):
    """A 31-day-old sent message goes with its timeline and files; a 29-day-old one stays."""
    old = make_message(31, events=3, attachments=1).id
    young = make_message(29).id
    result = purge.purge(pause=0)
    assert (result.messages, result.events, result.attachments) == (1, 3, 1)
    assert db.session.scalars(select(Message.id)).all() == [young]
    assert count(MessageEvent) == 2 and count(MessageAttachment) == 0
    assert old not in db.session.scalars(select(MessageEvent.message_id)).all()


@pytest.mark.parametrize("status", PENDING_STATUSES)
def test_a_message_that_can_still_leave_is_never_purged(make_message, status):
    """Queued, deferred, sending and held messages stay however old they are."""
    kept = make_message(400, status=status).id
    make_message(400, status="failed")
    result = purge.purge(pause=0)
    assert result.messages == 1
    assert db.session.scalars(select(Message.id)).all() == [kept]


def test_retention_follows_the_setting_and_the_customer_override(make_message, make_customer):
    """The global setting moves the cutoff; a customer's own retention wins for its mail."""
    settings.put("retention_days", 10)
    long_keeper = make_customer(retention_days=90)[0]
    short_keeper = make_customer(retention_days=3)[0]
    make_message(11)
    kept = make_message(9).id
    kept_by_override = make_message(60, customer=long_keeper).id
    make_message(4, customer=short_keeper)
    purge.purge(pause=0)
    assert set(db.session.scalars(select(Message.id))) == {kept, kept_by_override}


def test_older_than_replaces_the_global_retention_only(make_message, make_customer):
    """--older-than 5 purges a 6-day-old message but not a customer's contractual 90 days."""
    keeper = make_customer(retention_days=90)[0]
    make_message(6)
    kept = make_message(4).id
    kept_by_override = make_message(6, customer=keeper).id
    purge.purge(older_than_days=5, pause=0)
    assert set(db.session.scalars(select(Message.id))) == {kept, kept_by_override}


def test_suppressions_removals_bounces_and_audit_survive_the_purge(make_message):
    """Billing evidence stays; links to purged messages become NULL instead."""
    message = make_message(45, status="bounced").id
    suppression = Suppression(address="buyer@example.com", reason="hard_bounce",
                              message_id=message, created_at=utcnow() - timedelta(days=45))
    db.session.add(suppression)
    db.session.flush()
    db.session.add(SuppressionRemoval(suppression_id=suppression.id, address="buyer@example.com",
                                      reason="asked by the customer",
                                      removed_at=utcnow() - timedelta(days=44)))
    db.session.add(BounceReport(message_id=message, recipient="buyer@example.com",
                                kind="hard", suppression_id=suppression.id,
                                received_at=utcnow() - timedelta(days=45)))
    db.session.add(AuditEntry(action="suppression.lift", at=utcnow() - timedelta(days=44)))
    db.session.commit()
    assert purge.purge(pause=0).messages == 1
    db.session.expire_all()
    assert count(Suppression) == count(SuppressionRemoval) == count(BounceReport) == 1
    assert count(AuditEntry) >= 1
    assert db.session.scalar(select(Suppression.message_id)) is None
    report = db.session.scalar(select(BounceReport))
    assert report.message_id is None and report.suppression_id == suppression.id


def test_a_newer_resend_loses_only_its_link_to_a_purged_original(make_message):
    """The original goes; its recent resend stays, unlinked, with its own timeline."""
    original = make_message(40).id
    resend = make_message(1, resend_of_id=original).id
    purge.purge(pause=0)
    db.session.expire_all()
    left = db.session.get(Message, resend)
    assert left is not None and left.resend_of_id is None
    assert db.session.get(Message, original) is None


def test_no_transaction_deletes_more_rows_than_the_batch_size(app, make_message):
    """Rows deleted between two commits never exceed the batch size."""
    for index in range(12):
        make_message(31 + index, events=3 + index % 3, attachments=index % 2)
    make_message(50, events=9)  # a message alone bigger than the batch
    batch_size = 7
    deleted = {"open": 0, "max": 0, "commits": 0}

    def after_execute(conn, clauseelement, multiparams, params, execution_options, result):
        if getattr(clauseelement, "is_delete", False):
            deleted["open"] += max(result.rowcount, 0)

    def on_commit(conn):
        deleted["max"] = max(deleted["max"], deleted["open"])
        deleted["open"] = 0
        deleted["commits"] += 1

    engine = db.engine
    event.listen(engine, "after_execute", after_execute)
    event.listen(engine, "commit", on_commit)
    try:
        result = purge.purge(batch_size=batch_size, pause=0)
    finally:
        event.remove(engine, "after_execute", after_execute)
        event.remove(engine, "commit", on_commit)
    assert result.messages == 13
    assert 0 < deleted["max"] <= batch_size
    assert result.batches >= (13 + result.events + result.attachments) // batch_size
    assert count(Message) == count(MessageEvent) == count(MessageAttachment) == 0


def test_a_dry_run_counts_without_deleting(make_message):
    """--dry-run reports what would go and leaves every row in place."""
    make_message(31, events=2, attachments=1)
    make_message(32, events=1)
    make_message(1)
    result = purge.purge(dry_run=True)
    assert (result.messages, result.events, result.attachments) == (2, 3, 1)
    assert result.dry_run and count(Message) == 3 and count(MessageEvent) == 5


def test_old_job_runs_are_trimmed_keeping_each_jobs_latest(app):
    """Sweep runs older than 14 days go; the latest run of a long-silent job stays."""
    old = utcnow() - timedelta(days=20)
    db.session.add_all([JobRun(job="sweep", status="ok", started_at=old, finished_at=old),
                        JobRun(job="sweep", status="ok", started_at=utcnow()),
                        JobRun(job="rare", status="ok", started_at=old, finished_at=old)])
    db.session.commit()
    result = purge.purge(pause=0)
    assert result.job_runs == 1
    assert sorted(db.session.scalars(select(JobRun.job))) == ["rare", "sweep"]


def test_expired_idempotency_keys_are_trimmed(make_customer):
    """Keys are replayed for 24 hours: after two days they go."""
    customer = make_customer()[0]
    db.session.add_all([
        IdempotencyKey(customer_id=customer.id, key="old", status_code=202, response={},
                       created_at=utcnow() - timedelta(days=3)),
        IdempotencyKey(customer_id=customer.id, key="new", status_code=202, response={}),
    ])
    db.session.commit()
    assert purge.purge(pause=0).idempotency_keys == 1
    assert db.session.scalars(select(IdempotencyKey.key)).all() == ["new"]


def test_a_purge_is_recorded_as_a_job_run_with_its_counts(make_message):
    """run_job leaves an ok run with counts and progress."""
    make_message(31)
    result = purge.run_job(pause=0)
    run = db.session.scalar(select(JobRun).where(JobRun.job == "purge"))
    assert run.status == "ok" and run.finished_at is not None
    assert run.counts["messages"] == result.messages == 1
    assert run.total == 1 and run.progress == 1


def test_flask_purge_prints_counts_and_honours_dry_run(runner, make_message):
    """The CLI's last line carries the counts; --dry-run deletes nothing."""
    make_message(8, events=2)
    make_message(1)
    out = runner.invoke(args=["purge", "--older-than", "7", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1].startswith("dry run: would delete messages=1 ")
    assert count(Message) == 2
    out = runner.invoke(args=["purge", "--older-than", "7"])
    assert out.exit_code == 0, out.output
    assert out.output.strip().splitlines()[-1].startswith("messages=1 events=2 ")
    assert count(Message) == 1
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "purge.run"))
    assert entry.actor_label == "cli" and entry.after["messages"] == 1


def test_retention_notice_says_how_long_history_is_kept(app, make_customer):
    """The log pages' sentence follows the setting and the customer's override."""
    settings.put("retention_days", 45)
    assert "45" in purge.retention_notice()
    assert "90" in purge.retention_notice(make_customer(retention_days=90)[0])


@pytest.mark.pg
def test_two_purges_at_once_on_postgresql_one_skips(app, make_message):
    """The advisory lock lets one purge run; the other is recorded as skipped."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("advisory locks exist on PostgreSQL only (set TEST_DATABASE_URL)")
    from dashboard.services.operations import jobs

    make_message(31)
    key = jobs._advisory_key("purge")
    holder = db.engine.connect()  # another worker, in another session, holds the lock
    try:
        assert holder.scalar(select(func.pg_try_advisory_lock(key)))
        holder.commit()
        skipped = purge.run_job(pause=0)
    finally:
        holder.scalar(select(func.pg_advisory_unlock(key)))
        holder.commit()
        holder.close()
    assert skipped.skipped and count(Message) == 1
    done = purge.run_job(pause=0)
    assert not done.skipped and done.messages == 1
    runs = db.session.execute(select(JobRun.status).where(JobRun.job == "purge")
                              .order_by(JobRun.id)).scalars().all()
    assert runs == ["skipped", "ok"]


def test_two_purges_at_once_in_one_process_one_skips(app, make_message):
    """A second purge started while one runs is skipped and recorded, not run twice."""
    from dashboard.services.operations import jobs

    make_message(31)
    with jobs.singleton("purge") as first:
        assert first
        result = purge.run_job(pause=0)
    assert result.skipped and count(Message) == 1
    run = db.session.scalar(select(JobRun).where(JobRun.job == "purge"))
    assert run.status == "skipped" and "another purge" in run.error


def test_the_purge_hands_back_connections_as_it_found_them(app, make_message):
    """On SQLite the purge's own connection runs with foreign keys off and a larger WAL;
    no connection leaves the purge that way (the next user would lose its checks)."""
    for age in (40, 41, 42):
        make_message(age, events=2)
    assert purge.purge(pause=0).messages == 3
    if db.engine.dialect.name != "sqlite":
        return
    connections = [db.engine.connect() for _ in range(3)]  # the pool's recent connections
    try:
        for connection in connections:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    finally:
        for connection in connections:
            connection.close()


def test_every_foreign_key_to_a_message_is_handled_by_the_purge(app):
    """On SQLite the purge deletes with foreign keys off: each row that can point at a
    message must be deleted or unlinked by the purge itself, so a new reference to
    message.id must be added there (this fails until it is)."""
    pointing = {(fk.parent.table.name, fk.parent.name)
                for table in db.metadata.tables.values() for fk in table.foreign_keys
                if fk.column.table.name == "message" and fk.column.name == "id"}
    handled = {(model.__tablename__, "message_id")
               for model in (*purge.ROWS_DELETED, *purge.LINKS_KEPT)}
    assert pointing == handled | {("message", "resend_of_id")}
