"""A believable dashboard for the walk-through tests: the demo's data and a little more.

The demo seed gives customers in every sending mode, staff of each role and a few hundred
messages in every status with suppressions, reports and removals. On top of it: a paused
customer (its banner on every page), a template override with two versions, and a job run.
"""
from __future__ import annotations

from sqlalchemy import select

from dashboard.demo import DEMO_PASSWORD, DEMO_USERS, seed
from dashboard.extensions import db
from dashboard.models import Customer, Message, Suppression, User
from dashboard.notifications import CATALOG
from dashboard.services.content import templates
from dashboard.services.delivery import sending
from dashboard.services.operations import jobs

from ..conftest import free_port

PASSWORD = DEMO_PASSWORD
EMAILS = {role: email for email, role, _name in DEMO_USERS}


def build(messages: int = 40) -> dict:
    """Seed the demo data (fewer messages than the demo: every status, smaller pages) plus the
    extras; returns the staff by role, the customers, a suppressed address and an order."""
    seed(customer_smtp_port=free_port(), messages=messages)
    staff = {user.role: user for user in db.session.scalars(select(User))}
    customers = {c.code: c for c in db.session.scalars(select(Customer))}
    sending.pause_customer(customers["ALFA"], "repeated SMTP authentication failures (535)")
    source = templates.current_source(customers["ROSSI"], "order_closed", "it")
    templates.save(customers["ROSSI"], "order_closed", "it", source, staff["admin"],
                   note="as shipped")
    edited = dict(source, subject=source["subject"] + " ✓")
    templates.save(customers["ROSSI"], "order_closed", "it", edited, staff["admin"],
                   note="a tick in the subject")
    with jobs.recorded("purge") as run:
        run.counts = {"messages": 0, "events": 0}
    db.session.commit()
    suppressed = db.session.scalar(select(Suppression.address).where(
        Suppression.lifted_at.is_(None)).order_by(Suppression.id))
    order = db.session.scalar(select(Message.reference).where(
        Message.event == "order_closed").order_by(Message.id))
    return {"staff": staff, "customers": customers, "suppressed": suppressed, "order": order,
            "sample": CATALOG["order_closed"]["sample"]}
