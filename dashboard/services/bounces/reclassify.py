"""Reclassify: re-read the evidence behind every automatic suppression with the current rules.

Entries created before the rules looked at who is at fault (a DMARC refusal, a blocklist,
our own sending quota, a report for a purged message…) are lifted with the reason
"reclassified": automatic, audited, never billable, and they do not count as a previous
removal for the billing rule. Entries the rules would still create are kept (and get their
class and reason when they had none). Entries without any evidence left are kept: nothing
says they were wrong. Manual entries are never touched.

`flask reclassify-suppressions [--dry-run]` and the admin button on the Suppressions page
both call `run`, which works in small batches with a commit (and a progress update) each.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import or_, select

from ...extensions import db
from ...models import JobRun, Suppression, SuppressionRemoval, User, utcnow
from ..core import audit
from ..core.process import worker_name
from . import suppressions
from .evidence import RECIPIENT_REASONS, Judgement, judge

log = logging.getLogger(__name__)

JOB = "reclassify_suppressions"
BATCH = 200
SHOWN = 50  # changes kept in the run's summary (all of them are audited)
_threads: dict[int, threading.Thread] = {}


@dataclass
class Summary:
    """What a run looked at and what it changed (or would change, in a dry run)."""

    dry_run: bool
    examined: int = 0
    lifted: int = 0
    kept: int = 0
    no_evidence: int = 0
    changes: list[dict] = field(default_factory=list)

    def counts(self) -> dict:
        """The figures, for the job run and the CLI's last line."""
        return {"examined": self.examined, "lifted": self.lifted, "kept": self.kept,
                "no_evidence": self.no_evidence, "dry_run": self.dry_run}

    def line(self) -> str:
        """The CLI's last line."""
        verb = "would lift" if self.dry_run else "lifted"
        return (f"examined={self.examined} {verb}={self.lifted} kept={self.kept} "
                f"no_evidence={self.no_evidence}")


def _candidates(after_id: int, limit: int, now: datetime) -> list[Suppression]:
    return list(db.session.scalars(
        select(Suppression).where(
            Suppression.id > after_id, Suppression.lifted_at.is_(None),
            or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
            Suppression.reason.in_(RECIPIENT_REASONS),
            Suppression.created_by_id.is_(None))
        .order_by(Suppression.id).limit(limit)))


def lift_reclassified(entry: Suppression, judgement: Judgement, actor: User | None,
                      now: datetime) -> SuppressionRemoval:
    """Lift an entry the current rules would not create: automatic, audited, not billable."""
    entry.lifted_at = now
    removal = SuppressionRemoval(
        suppression=entry, address=entry.address, customer_id=entry.customer_id,
        reason=suppressions.RECLASSIFIED_REASON, minutes_spent=0, billable=False,
        automatic=True, removed_at=now, removed_by_id=actor.id if actor else None)
    db.session.add(removal)
    audit.record("suppression.reclassify", actor, "suppression", entry.id,
                 customer_id=entry.customer_id,
                 actor_label=None if actor else "system (reclassify)",
                 before={"lifted_at": None, "reason": entry.reason,
                         "fault_class": entry.fault_class},
                 after={"lifted_at": now.isoformat(), "billable": False,
                        "fault_class": judgement.verdict.fault_class
                        if judgement.verdict else None,
                        "fault_reason": judgement.verdict.reason
                        if judgement.verdict else None},
                 note=f"reclassified: {judgement.why}")
    return removal


def run(dry_run: bool = False, actor: User | None = None, batch: int = BATCH,
        progress=None, on_change=None) -> Summary:
    """Re-read every active automatic entry in batches; lift those the current rules would
    not create (unless `dry_run`). `progress(summary)` is called after each batch and
    `on_change(change)` for every entry lifted (or that would be)."""
    summary = Summary(dry_run)
    after_id = 0
    while True:
        now = utcnow()
        entries = _candidates(after_id, batch, now)
        if not entries:
            break
        for entry in entries:
            after_id = entry.id
            summary.examined += 1
            judgement = judge(entry)
            if judgement.keep is None:
                summary.no_evidence += 1
                continue
            if judgement.keep:
                summary.kept += 1
                if not dry_run and entry.fault_class is None and judgement.verdict:
                    entry.fault_class = judgement.verdict.fault_class
                    entry.fault_reason = judgement.verdict.reason
                continue
            summary.lifted += 1
            change = {
                "id": entry.id, "address": entry.address, "reason": entry.reason,
                "scope": entry.scope, "why": judgement.why,
                "fault_class": judgement.verdict.fault_class if judgement.verdict else None,
                "fault_reason": judgement.verdict.reason if judgement.verdict else None}
            if len(summary.changes) < SHOWN:
                summary.changes.append(change)
            if on_change is not None:
                on_change(change)
            if not dry_run:
                lift_reclassified(entry, judgement, actor, now)
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
        if progress is not None:
            progress(summary)
    return summary


def total() -> int:
    """How many entries a run will look at (for the progress bar)."""
    from sqlalchemy import func

    now = utcnow()
    return db.session.scalar(select(func.count(Suppression.id)).where(
        Suppression.lifted_at.is_(None),
        or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
        Suppression.reason.in_(RECIPIENT_REASONS),
        Suppression.created_by_id.is_(None))) or 0


# -- the admin button: a job run in a thread of its own ------------------------------------

def start(actor: User, dry_run: bool, app: Flask | None = None,
          background: bool = True) -> JobRun:
    """Record a run (audited) and do it in the background; the page polls its progress.
    A run still going is returned instead of starting a second one; with nothing to
    examine the run is done at once."""
    running = db.session.scalar(
        select(JobRun).where(JobRun.job == JOB, JobRun.status == "running",
                             JobRun.started_at > utcnow() - timedelta(hours=1))
        .order_by(JobRun.id.desc()).limit(1))
    if running is not None:
        return running
    run_row = JobRun(job=JOB, status="running", worker=worker_name(), progress=0,
                     total=total(), requested_by_id=actor.id, params={"dry_run": dry_run},
                     counts=Summary(dry_run).counts())
    db.session.add(run_row)
    db.session.flush()
    audit.record("suppression.reclassify_run", actor, "job_run", run_row.id,
                 after={"dry_run": dry_run, "total": run_row.total})
    db.session.commit()
    run_id = run_row.id
    if not background or not run_row.total:
        execute(run_id, actor.id)
        return db.session.get(JobRun, run_id)
    app = app or current_app._get_current_object()
    thread = threading.Thread(target=_thread, args=(app, run_id, actor.id),
                              name=f"reclassify-{run_id}", daemon=True)
    _threads[run_id] = thread
    thread.start()
    return run_row


def _thread(app: Flask, run_id: int, actor_id: int) -> None:
    with app.app_context():
        try:
            execute(run_id, actor_id)
        finally:
            db.session.remove()


def execute(run_id: int, actor_id: int | None) -> Summary | None:
    """Do a recorded run: progress after each batch, the summary in its counts at the end."""
    run_row = db.session.get(JobRun, run_id)
    dry_run = bool((run_row.params or {}).get("dry_run"))
    actor = db.session.get(User, actor_id) if actor_id else None

    def progress(summary: Summary) -> None:
        row = db.session.get(JobRun, run_id)
        row.progress = summary.examined
        row.counts = {**summary.counts(), "changes": summary.changes}
        db.session.commit()

    try:
        summary = run(dry_run, actor, progress=progress)
    except Exception as exc:  # recorded on the run: the page says it failed
        log.exception("reclassify run %s failed", run_id)
        db.session.rollback()
        row = db.session.get(JobRun, run_id)
        row.status, row.finished_at = "error", utcnow()
        row.error = f"{type(exc).__name__}: {exc}"[:2000]
        db.session.commit()
        return None
    row = db.session.get(JobRun, run_id)
    row.status, row.finished_at, row.progress = "ok", utcnow(), summary.examined
    row.counts = {**summary.counts(), "changes": summary.changes}
    db.session.commit()
    return summary


def wait_for(run_id: int, timeout: float = 30.0) -> None:
    """Wait for a background run to finish (tests)."""
    thread = _threads.pop(run_id, None)
    if thread is not None:
        thread.join(timeout)
