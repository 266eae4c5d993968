"""Reasons stored as a code and its parameters are shown in the reader's language; texts stored
before codes existed still display."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from dashboard import reasons
from dashboard.extensions import db
from dashboard.models import Alert, JobRun, Message, utcnow
from dashboard.notifications import CATALOG
from dashboard.services.core import settings
from dashboard.services.delivery import sending
from dashboard.services.delivery.sweep import hold_blocked
from dashboard.services.messages import intake
from dashboard.services.operations import health


def _order(customer, reference="ORD-7", to="mario.rossi@example.com") -> Message:
    """An order_closed notification through the real intake."""
    data = dict(CATALOG["order_closed"]["sample"], order_number=reference)
    [message] = intake.enqueue(customer, "order_closed", to, reference, "it", data)
    return message


def _italian(client):
    """Make a test client's browser Italian (its user never picked a language)."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "it"
    return client


def test_a_hold_reason_is_stored_as_a_code_and_read_in_each_readers_language(
        app, make_customer, make_user, login):
    """Sending off for NERI: the stored reason names the code and the customer; the Log and the
    message page say it in English to one reader and in Italian to another."""
    customer, _ = make_customer("NERI", "Neri Ricambi Auto")
    sending.set_customer(customer, False)
    message = _order(customer)
    assert message.status == "held"
    assert json.loads(message.status_reason) == {"code": "customer_sending_off",
                                                 "params": {"customer": "NERI"}}
    english = login(app.test_client(), make_user("support"))
    italian = _italian(login(app.test_client(), make_user("support")))
    for path in ("/log/?q=ORD-7", f"/log/{message.public_id}"):
        assert "sending is off for customer NERI" in english.get(path).get_data(as_text=True)
        html = italian.get(path).get_data(as_text=True)
        assert "invio disattivato per il cliente NERI" in html
        assert "sending is off" not in html and '{"code"' not in html


def test_the_sweep_holds_with_a_code_when_sending_is_off_for_everyone(app, make_customer):
    """The sweep's hold (no reader, no language) stores a code; it reads well in both."""
    customer, _ = make_customer()
    message = _order(customer)
    settings.put("sending_enabled", False)
    assert hold_blocked() == 1
    db.session.refresh(message)
    assert reasons.decode(message.status_reason) == ("sending_off", {})
    assert reasons.english(message.status_reason) == "sending is off for everyone (Settings)"
    assert reasons.in_language(message.status_reason, "it") == (
        "invio disattivato per tutti (Impostazioni)")
    assert message.events[-1].detail == message.status_reason


def test_a_suppressed_message_names_the_list_reason_in_words(app, make_customer):
    """'recipient on the suppression list (hard bounce)', the reason itself translated."""
    from dashboard.services.bounces import suppressions

    customer, _ = make_customer()
    suppressions.suppress("gone@example.com", "hard_bounce", customer)
    db.session.commit()
    message = _order(customer, to="gone@example.com")
    assert message.status == "suppressed"
    assert reasons.english(message.status_reason) == (
        "recipient on the suppression list (hard bounce)")
    assert reasons.in_language(message.status_reason, "it") == (
        "destinatario nella lista di soppressione (rifiuto definitivo)")


def test_free_text_written_before_codes_still_displays(app, support_client, make_customer):
    """A server's words are shown as they are; the sentences Postino used to store are
    recognised and translated."""
    customer, _ = make_customer("ACME", "Acme")
    first = _order(customer, "ORD-1")
    first.status, first.status_reason = "failed", "550 5.1.1 user unknown"
    second = _order(customer, "ORD-2", to="anna@example.com")
    second.status, second.status_reason = "held", "sending is off for customer ACME"
    db.session.commit()
    _italian(support_client)
    html = support_client.get("/log/?q=ORD-").get_data(as_text=True)
    assert "550 5.1.1 user unknown" in html
    assert "invio disattivato per il cliente ACME" in html
    assert reasons.text("") == "" and reasons.text(None) == ""
    assert reasons.text('{"code": broken') == '{"code": broken'  # never a 500


def test_a_scheduler_alert_is_stored_with_its_figures_and_read_in_italian(app, make_user,
                                                                          login):
    """The health check (no reader) stores the backlog alert as a code with its minutes;
    the banner of an unknown cause reads the stored text in the reader's language."""
    now = utcnow()
    db.session.add(JobRun(job="sweep", status="ok", started_at=now, finished_at=now))
    db.session.commit()
    alert = Alert(cause="disk_full", text=reasons.encode("queue_backlog", minutes=42),
                  raised_at=now)
    db.session.add(alert)
    db.session.commit()
    italian = _italian(login(app.test_client(), make_user("admin")))
    html = italian.get("/").get_data(as_text=True)
    assert "aspetta da 42 minuti" in html
    english = login(app.test_client(), make_user("admin"))
    assert "has waited 42 minutes" in english.get("/").get_data(as_text=True)


def test_the_backlog_and_heartbeat_alerts_store_codes(app):
    """What the health check writes in Alert.text is a code with its figures, not English."""
    from dashboard.services.operations import jobs

    old = utcnow() - timedelta(minutes=20)
    db.session.add(JobRun(job="sweep", status="ok", started_at=old, finished_at=old))
    db.session.commit()
    assert jobs.heartbeat_age_seconds() > health.HEARTBEAT_ALERT_SECONDS
    health.check()
    [alert] = db.session.scalars(select(Alert).where(Alert.cleared_at.is_(None))).all()
    code, params = reasons.decode(alert.text)
    assert code == "worker_heartbeat" and params["minutes"] >= 19


def test_a_paused_customer_alert_email_speaks_the_staff_language(app, make_customer, admin):
    """The processing_blocked email to admins carries the reason in the email's language."""
    from dashboard.services.operations import alerts

    customer, _ = make_customer("VERDI", "Verdi Arredamenti")
    sending.pause_customer(customer, reasons.encode("auth_failures", answer="535 5.7.8"))
    db.session.commit()
    [mail] = db.session.scalars(select(Message).where(
        Message.event == "processing_blocked")).all()
    assert mail.language == alerts.staff_customer().default_language == "it"
    assert mail.data["reason"] == "autenticazione SMTP fallita ripetutamente (535 5.7.8)"


def test_the_api_and_the_csv_export_give_reasons_in_english(app, api_post, make_customer,
                                                           support_client, client):
    """Machine readers get English sentences, not codes, whatever the staff language."""
    customer, key = make_customer("NERI", "Neri")
    sending.set_customer(customer, False)
    body = {"event": "order_closed", "to": "a@example.com", "reference": "ORD-9",
            "data": dict(CATALOG["order_closed"]["sample"], order_number="ORD-9")}
    [created] = api_post(key, body).get_json()["messages"]
    shown = client.get(f"/api/v1/notifications/{created['id']}",
                       headers={"Authorization": f"Bearer {key}"}).get_json()
    assert shown["events"][-1]["detail"] == "sending is off for customer NERI"
    _italian(support_client)
    csv = support_client.get("/log/export.csv?q=ORD-9").get_data(as_text=True)
    assert "sending is off for customer NERI" in csv and '{"code"' not in csv
