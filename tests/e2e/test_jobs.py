"""Browser: on the Jobs page, "Run now" on the purge shows progress, then the new last run."""
from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.models import Message, MessageEvent, utcnow
from dashboard.worker import scheduler

from .helpers import log_in

pytestmark = pytest.mark.e2e


def test_run_now_shows_progress_then_the_new_last_run(app, page, live_server, make_user,
                                                      make_customer):
    """Confirm the purge, watch the progress fragment, then read the counts of the new run."""
    admin = make_user("admin")
    customer = make_customer()[0]
    old = utcnow() - timedelta(days=45)
    for n in range(3):
        message = Message(customer=customer, event="order_closed", recipient=f"u{n}@example.com",
                          subject="Ordine", status="sent", created_at=old, updated_at=old,
                          attempts=1)
        db.session.add(message)
        db.session.flush()
        db.session.add(MessageEvent(message_id=message.id, type="sent", at=old))
    db.session.commit()

    log_in(page, live_server, admin.email)
    page.goto(f"{live_server}/jobs/")
    card = page.locator("#job-purge")
    expect(card).to_contain_text("never")
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Run now").click()
    expect(page.locator("#job-purge.job-progress")).to_be_visible()
    expect(page.locator("#job-purge:not(.job-progress)")).to_be_visible(timeout=15_000)
    card = page.locator("#job-purge")
    expect(card.locator(".badge-run-ok").first).to_be_visible()
    expect(card).to_contain_text("messages=3")
    expect(card).to_contain_text("events=3")
    scheduler.wait_for_background()
    assert db.session.scalar(db.select(db.func.count(Message.id))) == 0
