"""Resend: a new message linked to its original (never edited), one at a time or in bulk.

A resend carries the original's rendered content, or a fresh rendering with the customer's
current template, and goes through the normal queue: held when sending is off, refused when
the recipient is on the suppression list (the support person must lift the entry first).
"""
from __future__ import annotations

import logging
import threading

from flask import Flask, current_app
from sqlalchemy import select

from ...extensions import db
from ...models import Customer, JobRun, Message, Suppression, SuppressionRemoval, User, utcnow
from .. import ServiceError
from ..bounces import suppressions
from ..content import render
from ..core import audit
from ..core.process import worker_name
from . import intake, log_search

log = logging.getLogger(__name__)

BULK_CAP = 1000
PROGRESS_EVERY = 20
_threads: dict[int, threading.Thread] = {}


class ResendRefused(ServiceError):
    """The recipient is suppressed: carries the suppression entry that blocks the resend."""

    def __init__(self, message: str, suppression: Suppression):
        super().__init__(message)
        self.suppression = suppression


def blocking_suppression(message: Message) -> Suppression | None:
    """The active suppression entry that would stop a resend of this message, if any."""
    return suppressions.active_for(message.recipient, message.customer)


def resend(message: Message, actor: User | None, note: str | None = None,
           rerender: bool = False, commit: bool = True) -> Message:
    """Resend one message; refuses (ResendRefused) when its recipient is suppressed."""
    entry = blocking_suppression(message)
    if entry is not None:
        raise ResendRefused(
            f"{message.recipient} is on the suppression list ({entry.reason}); "
            "lift the entry first, then resend", entry)
    customer = message.customer
    if rerender:
        rendered = render.render_notification(customer, message.event, message.language,
                                              message.data or {})
    else:
        rendered = render.Rendered(message.subject, message.html_body or "",
                                   message.text_body or "", message.template_version_id,
                                   message.template_source or "default")
    files = [intake.Attachment(a.filename, a.content_type, a.content)
             for a in message.attachments]
    note = (note or "").strip()[:500] or None
    (copy,) = intake.store(customer, message.event, [message.recipient], message.reference,
                             message.language, message.data or {}, rendered, files,
                             resend_of=message, actor=actor, commit=False, test=message.test)
    audit.record("message.resend", actor, "message", copy.public_id,
                 before={"original": message.public_id},
                 after={"message": copy.public_id, "status": copy.status,
                        "rerendered": bool(rerender), "template": rendered.source},
                 note=note, customer_id=customer.id)
    if commit:
        db.session.commit()
    return copy


def lift_and_resend(entry: Suppression, customer: Customer | None, reason: str,
                    ticket: str | None, minutes, actor: User | None) -> SuppressionRemoval:
    """Lift an entry (suppressions.lift) and, in the same transaction, resend the last
    message it held back: a new message with the original's rendered content, linked to it."""
    removal = suppressions.lift(entry, customer, reason, ticket, minutes, actor, commit=False)
    original = suppressions.last_suppressed_message(entry)
    if original is not None:
        try:
            resend(original, actor, note="resent after lifting a suppression", commit=False)
        except ResendRefused:
            pass  # still suppressed in another scope: nothing to resend
    db.session.commit()
    return removal


def resends_of(message: Message) -> list[Message]:
    """The messages that resent this one, oldest first."""
    return list(db.session.scalars(
        select(Message).where(Message.resend_of_id == message.id).order_by(Message.id)))


# --- bulk -----------------------------------------------------------------------------------


def bulk_candidates(search: log_search.Search) -> list[int]:
    """Ids of the newest messages the search matches, at most BULK_CAP."""
    return [row.id for row in log_search.iter_matches(
        search, limit=BULK_CAP, columns=(Message.id, Message.created_at))]


def start_bulk(search: log_search.Search, actor: User, note: str | None = None,
               rerender: bool = False, app: Flask | None = None,
               background: bool = True) -> JobRun:
    """Record a bulk resend of the current search (capped) and run it in a thread."""
    ids = bulk_candidates(search)
    if not ids:
        raise ServiceError("nothing matches this search")
    note = (note or "").strip()[:500] or None
    run = JobRun(job="bulk_resend", status="running", worker=worker_name(),
                 progress=0, total=len(ids), requested_by_id=actor.id,
                 counts={"resent": 0, "suppressed": 0, "errors": 0},
                 params={"search": search.args(), "note": note, "rerender": bool(rerender)})
    db.session.add(run)
    db.session.flush()
    audit.record("message.bulk_resend", actor, "job_run", run.id,
                 after={"total": len(ids), "search": search.args(), "rerender": bool(rerender)},
                 note=note, customer_id=search.customer_id)
    db.session.commit()
    run_id = run.id
    if not background:
        run_bulk(run_id, ids, actor.id, note, rerender)
        return db.session.get(JobRun, run_id)
    app = app or current_app._get_current_object()
    thread = threading.Thread(target=_bulk_thread, args=(app, run_id, ids, actor.id, note,
                                                         rerender),
                              name=f"bulk-resend-{run_id}", daemon=True)
    _threads[run_id] = thread
    thread.start()
    return run


def _bulk_thread(app: Flask, run_id: int, ids: list[int], actor_id: int, note, rerender):
    with app.app_context():
        try:
            run_bulk(run_id, ids, actor_id, note, rerender)
        finally:
            db.session.remove()


def run_bulk(run_id: int, ids: list[int], actor_id: int, note: str | None,
             rerender: bool) -> dict:
    """Resend each message, skipping and counting suppressed recipients; updates progress."""
    counts = {"resent": 0, "suppressed": 0, "errors": 0}
    actor = db.session.get(User, actor_id)
    try:
        for done, message_id in enumerate(ids, start=1):
            message = db.session.get(Message, message_id)
            if message is None:  # purged meanwhile
                counts["errors"] += 1
            else:
                try:
                    resend(message, actor, note=note, rerender=rerender, commit=True)
                    counts["resent"] += 1
                except ResendRefused:
                    db.session.rollback()
                    counts["suppressed"] += 1
                except ServiceError as exc:
                    db.session.rollback()
                    counts["errors"] += 1
                    log.warning("bulk resend %s: %s not resent: %s", run_id, message_id, exc)
            if done % PROGRESS_EVERY == 0 or done == len(ids):
                run = db.session.get(JobRun, run_id)
                run.progress, run.counts = done, dict(counts)
                db.session.commit()
        run = db.session.get(JobRun, run_id)
        run.status, run.finished_at, run.counts = "ok", utcnow(), dict(counts)
        db.session.commit()
    except Exception as exc:
        log.exception("bulk resend %s failed", run_id)
        db.session.rollback()
        run = db.session.get(JobRun, run_id)
        if run is not None:
            run.status, run.finished_at = "error", utcnow()
            run.error, run.counts = f"{type(exc).__name__}: {exc}"[:2000], dict(counts)
            db.session.commit()
    return counts


def wait_for(run_id: int, timeout: float = 30.0) -> None:
    """Wait for a background bulk resend to finish (tests, CLI)."""
    thread = _threads.get(run_id)
    if thread is not None:
        thread.join(timeout)
        _threads.pop(run_id, None)
