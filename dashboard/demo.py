"""`flask demo`: the whole product in one process, on believable demo data.

It creates the schema if missing, seeds customers in each sending mode, staff of each role and a
few hundred messages of the last weeks, starts local SMTP sinks (our relay, and one customer's
own server), the scheduler, the bounce listener when available, and serves the dashboard.
"""
from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes, policy

import click
from flask import Flask, current_app

from .notifications import CATALOG

log = logging.getLogger(__name__)

DEMO_PASSWORD = "postino-demo"
DEMO_USERS = (
    ("admin@demo.example.com", "admin", "Anna Amministratrice"),
    ("support@demo.example.com", "support", "Sergio Supporto"),
    ("billing@demo.example.com", "billing", "Bianca Fatturazione"),
)
CUSTOMER_SMTP_USER = "notifiche@verdi.example.com"
CUSTOMER_SMTP_PASSWORD = "demo-smtp-password"


@dataclass
class InboxItem:
    """A message the demo's SMTP sinks received."""

    server: str
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    from_header: str
    to_header: str
    received_at: datetime
    html: str | None
    text: str | None
    raw_size: int


class DemoInbox:
    """What the demo sinks received, newest first, kept in memory (last 500)."""

    def __init__(self):
        self.items: deque[InboxItem] = deque(maxlen=500)
        self.lock = threading.Lock()

    def add(self, item: InboxItem) -> None:
        with self.lock:
            self.items.appendleft(item)

    def list(self) -> list[InboxItem]:
        with self.lock:
            return list(self.items)


INBOX = DemoInbox()


class _SinkHandler:
    """aiosmtpd handler storing every message in the demo inbox."""

    def __init__(self, server_name: str):
        self.server_name = server_name

    async def handle_DATA(self, server, session, envelope):
        from .models import utcnow

        raw = envelope.original_content or envelope.content
        parsed = message_from_bytes(raw, policy=policy.default)
        html_part = parsed.get_body(("html",))
        text_part = parsed.get_body(("plain",))
        INBOX.add(InboxItem(
            server=self.server_name, mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos), subject=str(parsed.get("Subject", "")),
            from_header=str(parsed.get("From", "")), to_header=str(parsed.get("To", "")),
            received_at=utcnow(),
            html=html_part.get_content() if html_part is not None else None,
            text=text_part.get_content() if text_part is not None else None,
            raw_size=len(raw),
        ))
        return "250 2.0.0 Ok: queued by the Postino demo sink"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sinks():
    """Start the relay sink and a customer SMTP sink with AUTH; returns (relay, customer)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server, session, envelope, mechanism, auth_data):
        if (isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == CUSTOMER_SMTP_USER
                and auth_data.password.decode() == CUSTOMER_SMTP_PASSWORD):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    relay = Controller(_SinkHandler("relay"), hostname="127.0.0.1", port=_free_port())
    customer = Controller(_SinkHandler("customer SMTP"), hostname="127.0.0.1",
                          port=_free_port(), authenticator=authenticator,
                          auth_require_tls=False)
    relay.start()
    customer.start()
    return relay, customer


def seed(customer_smtp_port: int, messages: int = 360) -> bool:
    """Seed demo data into an empty database; returns False when data already exists."""
    from sqlalchemy import select

    from .extensions import db
    from .models import Customer, User
    from .services.accounts import customers, users
    from .services.delivery import credentials

    if db.session.scalar(select(User).limit(1)) is not None:
        return False
    for email, role, name in DEMO_USERS:
        users.create_user(email, role, DEMO_PASSWORD, name=name, language=None)

    specs = [
        ("ROSSI", "Ferramenta Rossi S.r.l.", "standard", {}),
        ("BIANCHI", "Bianchi Distribuzione S.p.A.", "standard", {"default_language": "en"}),
        ("ALFA", "Alfa Bevande S.r.l.", "custom_from",
         {"from_address": "ordini@alfabevande.example.com", "from_name": "Alfa Bevande"}),
        ("VERDI", "Verdi Arredamenti", "customer_smtp",
         {"from_address": CUSTOMER_SMTP_USER, "from_name": "Verdi Arredamenti",
          "smtp_host": "127.0.0.1", "smtp_port": customer_smtp_port, "smtp_security": "none",
          "smtp_auth": "login", "smtp_username": CUSTOMER_SMTP_USER, "smtp_verify_tls": True,
          "smtp_password_encrypted": credentials.encrypt(CUSTOMER_SMTP_PASSWORD)}),
        ("NERI", "Neri Ricambi Auto", "standard",
         {"open_tracking": False, "sending_enabled": False}),
    ]
    created: list[Customer] = []
    for code, name, mode, fields in specs:
        customer, key = customers.create_customer(code, name)
        customer.sending_mode = mode
        for field_name, value in fields.items():
            setattr(customer, field_name, value)
        created.append(customer)
        log.info("demo customer %s API key: %s", code, key)
    db.session.commit()
    _seed_history(created, messages)
    _seed_interventions({c.code: c for c in created})
    return True


def _seed_interventions(by_code: dict) -> None:
    """Billing's configuration side: Verdi's paid switch to its own SMTP (with the estimate it
    was given) and a later password change, Alfa's custom_from set up from the CLI with its
    minutes still to be completed."""
    from .extensions import db
    from .models import (
        ConfigurationEstimate,
        ConfigurationIntervention,
        CustomerSmtpPeriod,
        User,
        utcnow,
    )

    now = utcnow()
    admin = db.session.scalar(db.select(User).where(User.role == "admin"))
    verdi, alfa = by_code["VERDI"], by_code["ALFA"]
    estimate = ConfigurationEstimate(customer_id=verdi.id, estimated_on=(now - timedelta(
        days=45)).date(), minutes=60, amount_cents=15000, note="Own SMTP account (ticket 4802)",
        created_by_id=admin.id, created_at=now - timedelta(days=45))
    db.session.add(estimate)
    db.session.flush()
    smtp_fields = ["from_address", "from_name", "sending_mode", "smtp_auth", "smtp_host",
                   "smtp_password", "smtp_port", "smtp_security", "smtp_username"]
    switch = ConfigurationIntervention(
        customer_id=verdi.id, changed_at=now - timedelta(days=40), mode_before="standard",
        mode_after="customer_smtp", fields=smtp_fields, actor_id=admin.id,
        actor_label=admin.email, ticket="4802", minutes=75, billable=True,
        estimate_id=estimate.id)
    password = ConfigurationIntervention(
        customer_id=verdi.id, changed_at=now - timedelta(days=3), mode_before="customer_smtp",
        mode_after="customer_smtp", fields=["smtp_password"], actor_id=admin.id,
        actor_label=admin.email, ticket="5120", minutes=15, billable=True)
    alfa_setup = ConfigurationIntervention(
        customer_id=alfa.id, changed_at=now - timedelta(days=12), mode_before="standard",
        mode_after="custom_from", fields=["from_address", "from_name", "sending_mode"],
        actor_label="cli", ticket="5007", minutes=None, billable=True)
    db.session.add_all([switch, password, alfa_setup])
    db.session.flush()
    db.session.add(CustomerSmtpPeriod(customer_id=verdi.id, started_at=switch.changed_at,
                                      start_evidence="change", start_intervention_id=switch.id))
    db.session.commit()


# Rendering is the slow part of seeding: each (customer, event, language) is rendered once with
# this stand-in for the reference, which is then replaced by each message's own.
_STAND_IN = "REF-STAND-IN"


def _data(event: str, reference: str | None) -> dict:
    """The event's sample data, with the message's reference as its number (an order's email
    shows the number the Log knows it by, so the number a customer quotes is found)."""
    data = dict(CATALOG[event]["sample"])
    if event == "order_closed" and reference:
        data.update(order_number=reference, link=f"https://app.example.com/orders/{reference}")
    elif event == "activity_closed" and reference:
        data["link"] = f"https://app.example.com/activities/{reference}"
    elif event == "document_sent" and reference:
        data["link"] = f"https://app.example.com/documents/{reference}"
    return data


def _seed_history(customer_list, count: int = 360) -> None:
    """A few hundred messages over the last 25 days, in every status, with timelines."""
    from . import reasons
    from .extensions import db
    from .models import BounceReport, Message, MessageEvent, SuppressionRemoval, utcnow
    from .services.bounces import fault, suppressions
    from .services.content import render
    from .services.delivery import modes

    rng = random.Random(42)
    now = utcnow()
    first_names = ["giulia", "marco", "luca", "sara", "paolo", "elena", "andrea", "chiara",
                   "davide", "francesca", "matteo", "laura"]
    domains = ["gmail.example.com", "libero.example.com", "alice.example.com",
               "yahoo.example.com", "outlook.example.com", "aziendale.example.com"]
    statuses = (["sent"] * 40 + ["delivered"] * 25 + ["opened"] * 10 + ["deferred"] * 6
                + ["failed"] * 6 + ["bounced"] * 5 + ["suppressed"] * 4 + ["held"] * 2
                + ["queued"] * 2)
    events = ["order_closed"] * 5 + ["activity_closed"] * 3 + ["document_sent"] * 2 + [
        "user_invitation", "password_reset"]
    rendered_cache: dict = {}
    bounced_addresses: list[tuple[str, object, object]] = []
    unknown_user = fault.Verdict(fault.RECIPIENT_PERMANENT, "unknown_user", True)
    for n in range(count):
        customer = rng.choice(customer_list)
        event = rng.choice(events)
        language = customer.default_language
        status = rng.choice(statuses)
        if customer.code == "NERI":  # Neri's sending is off: its recent mail is held
            status = "held" if n % 3 == 0 else rng.choice(["sent", "delivered", "failed"])
        elif status == "held":
            status = "queued"
        created = now - timedelta(days=rng.uniform(0, 25), minutes=rng.randint(0, 600))
        if status in ("queued", "held"):
            created = now - timedelta(minutes=rng.randint(1, 50))
        if status == "deferred":
            created = now - timedelta(hours=rng.uniform(0.2, 12))
        address = f"{rng.choice(first_names)}.{rng.randint(1, 60)}@{rng.choice(domains)}"
        reference = (f"ORD-2026-{rng.randint(100, 9999):05d}" if event == "order_closed"
                     else f"ACT-{rng.randint(1000, 9999)}" if event == "activity_closed"
                     else f"DOC-{rng.randint(100, 999)}" if event == "document_sent" else None)
        data = _data(event, reference)
        key = (customer.id, event, language)
        if key not in rendered_cache:
            rendered_cache[key] = render.render_notification(
                customer, event, language, _data(event, _STAND_IN))
        rendered = rendered_cache[key]
        subject, html, text = (part.replace(_STAND_IN, reference or "")
                               for part in (rendered.subject, rendered.html, rendered.text))
        message = Message(
            customer_id=customer.id, event=event, reference=reference, language=language,
            recipient=address, from_header=modes.from_header(customer, event),
            subject=subject, html_body=html, text_body=text,
            data=data, transport=customer.sending_mode,
            template_source=rendered.source, status=status, created_at=created,
            updated_at=created, attempts=0,
        )
        db.session.add(message)
        db.session.flush()
        message.message_id_header = f"<{message.public_id}@demo.postino.example.com>"
        message.envelope_from = modes.envelope_from(customer, message)
        timeline = [("queued", created, None, None, None)]
        at = created + timedelta(seconds=rng.randint(2, 40))
        if status in ("sent", "delivered", "opened", "bounced"):
            message.attempts = 1
            message.sent_at = at
            message.last_smtp_code, message.last_smtp_text = 250, "2.0.0 Ok: queued as 4F1A2B"
            timeline.append(("sent", at, 250, "2.0.0 Ok: queued as 4F1A2B", None))
        if status in ("delivered", "opened"):
            message.delivered_at = at + timedelta(seconds=30)
            timeline.append(("delivered", message.delivered_at, None, "2.0.0",
                             "delivery status notification: delivered"))
        if status == "opened":
            message.opened_at = at + timedelta(hours=rng.uniform(0.1, 20))
            message.open_count = rng.randint(1, 4)
            timeline.append(("opened", message.opened_at, None, None, None))
        if status == "bounced":
            message.bounced_at = at + timedelta(minutes=2)
            timeline.append(("bounce", message.bounced_at, None, "5.1.1",
                             f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"))
            message.fault_class, message.fault_reason = fault.RECIPIENT_PERMANENT, "unknown_user"
            bounced_addresses.append((address, customer, message))
        if status == "deferred":
            message.attempts = rng.randint(1, 3)
            message.last_smtp_code, message.last_smtp_text = 451, "4.7.1 Greylisted, try again"
            message.next_attempt_at = now + timedelta(minutes=rng.randint(3, 60))
            timeline.append(("deferred", at, 451, "4.7.1 Greylisted, try again", None))
        if status == "failed":
            message.attempts = 1
            message.last_smtp_code, message.last_smtp_text = 550, "5.1.1 No such user"
            message.status_reason = reasons.encode("refused", stage="rcpt")
            message.fault_class, message.fault_reason = fault.RECIPIENT_PERMANENT, "unknown_user"
            timeline.append(("failed", at, 550, "5.1.1 No such user", message.status_reason))
        if status == "suppressed":
            entry = suppressions.suppress(address, "hard_bounce", customer, smtp_code="5.1.1",
                                          diagnostic="User unknown (demo)", verdict=unknown_user)
            message.suppression_id = entry.id
            message.status_reason = reasons.encode("suppressed",
                                                   reason=reasons.suppression("hard_bounce"))
            timeline = [("suppressed", created, None, None, message.status_reason)]
        if status == "held":
            message.status_reason = reasons.encode("customer_sending_off",
                                                   customer=customer.code)
            timeline = [("held", created, None, None, message.status_reason)]
        if status == "queued":
            message.next_attempt_at = created  # the worker sends these in its first sweep
        for type_, when, code, text, detail in timeline:
            db.session.add(MessageEvent(message_id=message.id, type=type_, at=when,
                                        smtp_code=code, smtp_text=text, detail=detail))
    for address, customer, message in bounced_addresses[:8]:
        entry = suppressions.suppress(address, "hard_bounce", customer, smtp_code="5.1.1",
                                      diagnostic="Recipient address rejected: User unknown",
                                      message=message, verdict=unknown_user)
        message.suppression_id = entry.id
        db.session.add(BounceReport(
            message_id=message.id, customer_id=customer.id, recipient=address, kind="hard",
            fault_class=unknown_user.fault_class, fault_reason=unknown_user.reason, source="dsn",
            status_code="5.1.1", action="failed", suppression_id=entry.id,
            diagnostic="smtp; 550 5.1.1 Recipient address rejected: User unknown",
            received_at=message.bounced_at,
            raw=("Content-Type: message/delivery-status\n\n"
                 "Reporting-MTA: dns; mx.demo.example.com\n\n"
                 f"Final-Recipient: rfc822; {address}\nAction: failed\nStatus: 5.1.1\n"
                 "Diagnostic-Code: smtp; 550 5.1.1 Recipient address rejected: User unknown\n")))
    if bounced_addresses:
        address, customer, _message = bounced_addresses[0]
        entry = suppressions.active_for(address, customer)
        if entry is not None:
            entry.lifted_at = now - timedelta(days=20)
            db.session.add(SuppressionRemoval(
                suppression_id=entry.id, address=address, customer_id=customer.id,
                reason="Mailbox fixed by the customer's IT (ticket 4711)", ticket="4711",
                minutes_spent=15, billable=False, removed_at=now - timedelta(days=20)))
            again = suppressions.suppress(address, "hard_bounce", customer, smtp_code="5.2.2",
                                          diagnostic="Mailbox full")
            again.repeated = True
    db.session.commit()


def _start_bounce_listener(app: Flask):
    """Start the bounce listener in this process on a free port; returns its controller."""
    from . import bounce_listener

    port = _free_port()
    try:
        return bounce_listener.start(app, "127.0.0.1", port)
    except Exception:  # the demo still runs without it, and says so
        log.exception("bounce listener did not start")
        return None


@click.command("demo")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
def demo_command(port: int, host: str) -> None:
    """Run everything in one process on demo data and print its URL and logins."""
    from flask_migrate import upgrade
    from werkzeug.serving import run_simple

    from .blueprints import demo as demo_blueprint
    from .extensions import db
    from .worker.scheduler import make_scheduler

    app = current_app._get_current_object()
    relay, customer_sink = start_sinks()
    url = f"http://{host}:{port}"
    app.config.update(
        POSTINO_DEMO=True, MAIL_SERVER="127.0.0.1", MAIL_PORT=relay.port, MAIL_USE_TLS=False,
        MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None, POSTINO_PUBLIC_URL=url,
        SESSION_COOKIE_SECURE=False, REMEMBER_COOKIE_SECURE=False,
    )
    if "demo" not in app.blueprints:
        app.extensions["postino_demo_inbox"] = INBOX
        app.register_blueprint(demo_blueprint.bp)
    upgrade()
    seeded = seed(customer_sink.port)
    if not seeded:
        from sqlalchemy import select

        from .models import Customer

        verdi = db.session.scalar(select(Customer).where(Customer.code == "VERDI"))
        if verdi is not None and verdi.smtp_host == "127.0.0.1":
            verdi.smtp_port = customer_sink.port  # the sink's port changes every run
            db.session.commit()
    bounce = _start_bounce_listener(app)
    scheduler = make_scheduler(app, background=True)
    scheduler.start()
    db.session.remove()
    click.echo("")
    click.echo("Postino demo is running.")
    click.echo(f"  Dashboard:   {url}/")
    click.echo(f"  Relay sink:  127.0.0.1:{relay.port} (see the Demo inbox page)")
    if bounce is not None:
        click.echo(f"  Bounces:     {bounce.hostname}:{bounce.port} (bounce listener, VERP only)")
    click.echo(f"  Logins (password '{DEMO_PASSWORD}'):")
    for email, role, _name in DEMO_USERS:
        click.echo(f"    {role:8} {email}")
    click.echo("  Ctrl+C stops it.")
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        scheduler.shutdown(wait=False)
        relay.stop()
        customer_sink.stop()
        if bounce is not None:
            bounce.stop()


def register_cli(app: Flask) -> None:
    """Register `flask demo`."""
    app.cli.add_command(demo_command)
