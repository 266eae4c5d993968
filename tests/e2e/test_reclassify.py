"""Browser: an admin reclassifies the suppression list: a confirmation first, then the run's
progress and its summary replace each other in place."""
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard.extensions import db
from dashboard.models import BounceReport, Suppression, utcnow
from dashboard.services.bounces import suppressions
from dashboard.services.messages import intake

from ..bounces.conftest import ORDER_DATA
from .helpers import log_in

pytestmark = pytest.mark.e2e
DMARC_DSN = Path(__file__).parent.parent / "bounces" / "corpus" / "eml" / "postfix_dsn_dmarc.eml"


def test_an_admin_reclassifies_after_confirming_and_reads_the_summary(
        app, live_server, page, make_user, make_customer):
    """An entry the old rules made for a DMARC refusal is lifted; the page says so."""
    admin = make_user("admin", language="en")
    customer, _ = make_customer("ACME", "Acme S.p.A.")
    [message] = intake.enqueue(customer, "order_closed", "d@example.org", data=ORDER_DATA)
    entry = suppressions.suppress("d@example.org", "hard_bounce", customer, message=message)
    db.session.add(BounceReport(
        message_id=message.id, customer_id=customer.id, recipient="d@example.org",
        kind="hard", suppression_id=entry.id, received_at=utcnow(),
        raw=DMARC_DSN.read_text().replace("mario.rossi@example.org", "d@example.org")))
    db.session.commit()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    log_in(page, live_server, admin.email)

    page.goto(f"{live_server}/suppressions/")
    page.get_by_text("Reclassify automatic entries").click()
    page.get_by_role("button", name="Reclassify now").click()
    summary = page.locator("#reclassify-run")
    expect(summary).to_contain_text("1 lifted as reclassified", timeout=15000)
    expect(summary).to_contain_text("d@example.org")
    expect(summary).to_contain_text("the sender's domain does not authorise us (DMARC)")
    assert dialogs and "not billable" in dialogs[0]
    db.session.expire_all()
    assert db.session.get(Suppression, entry.id).lifted_at is not None
