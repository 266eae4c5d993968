"""customer_smtp against real servers: STARTTLS+AUTH and implicit TLS with a private CA,
an untrusted certificate, and the authentication-failure flow down to the staff alert."""
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import Alert, AuditEntry, Customer, Message
from dashboard.services.accounts import customer_settings
from dashboard.services.delivery.sweep import sweep

from .conftest import SMTP_PASSWORD, SMTP_USER

ORDER = {"order_number": "ORD-7", "order_date": "1/1/2026", "total": "€ 5",
         "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/7"}


def configure(customer: Customer, server, security: str, ca_pem: str | None,
              password: str = SMTP_PASSWORD) -> None:
    """Put a customer on its own SMTP server through the same service as the page."""
    customer_settings.save(customer, {
        "sending_mode": "customer_smtp", "from_address": "notifiche@cliente.example",
        "from_name": "Cliente Notifiche", "smtp_host": server.host, "smtp_port": str(server.port),
        "smtp_security": security, "smtp_auth": "plain", "smtp_username": SMTP_USER,
        "smtp_password": password, "smtp_ca_pem": ca_pem or "", "smtp_timeout": "5",
    })


def test_starttls_with_auth_delivers_through_the_customers_server(
        make_customer, api_post, starttls_server, ca_pem):
    """STARTTLS with a pasted private CA: the mail arrives authenticated, From and envelope
    are the customer's."""
    customer, key = make_customer()
    configure(customer, starttls_server, "starttls", ca_pem)
    r = api_post(key, {"event": "order_closed", "to": "buyer@example.com", "reference": "ORD-7",
                       "data": ORDER})
    assert r.status_code == 202, r.json
    assert sweep().sent == 1
    [got] = starttls_server.wait_for(1)
    assert got.authenticated_as == SMTP_USER
    assert got.mail_from == "notifiche@cliente.example"
    assert got.rcpt_tos == ["buyer@example.com"]
    assert got.message["From"] == "Cliente Notifiche <notifiche@cliente.example>"
    message = db.session.scalar(select(Message))
    assert message.status == "sent" and message.transport == "customer_smtp"


def test_implicit_tls_with_auth_delivers(make_customer, api_post, implicit_tls_server, ca_pem):
    """Implicit TLS (465 style) with the private CA trusted also delivers, authenticated."""
    customer, key = make_customer()
    configure(customer, implicit_tls_server, "ssl", ca_pem)
    api_post(key, {"event": "order_closed", "to": "buyer@example.com", "data": ORDER})
    assert sweep().sent == 1
    [got] = implicit_tls_server.wait_for(1)
    assert got.authenticated_as == SMTP_USER and got.mail_from == "notifiche@cliente.example"


def test_an_untrusted_certificate_is_refused_with_a_clear_error(
        make_customer, api_post, starttls_server, admin_client):
    """Without the CA pasted, verification refuses the server: deferred, nothing sent, and the
    connection test says why."""
    customer, key = make_customer()
    configure(customer, starttls_server, "starttls", None)
    api_post(key, {"event": "order_closed", "to": "buyer@example.com", "data": ORDER})
    assert sweep().deferred == 1
    message = db.session.scalar(select(Message))
    assert message.status == "deferred"
    assert "certificate not trusted" in message.last_smtp_text
    assert starttls_server.received == []
    response = admin_client.post(f"/customers/{customer.code}/test-connection",
                                 data={"sending_mode": "customer_smtp"},
                                 headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "certificate not trusted" in body and "Connection failed" in body


def test_connection_test_shows_each_step_with_the_servers_answers(
        make_customer, admin_client, implicit_tls_server, ca_pem):
    """The unsaved form is tested: connect, EHLO, TLS, AUTH each with its answer."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}/test-connection", data={
        "sending_mode": "customer_smtp", "from_address": "notifiche@cliente.example",
        "smtp_host": implicit_tls_server.host, "smtp_port": str(implicit_tls_server.port),
        "smtp_security": "ssl", "smtp_auth": "login", "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD, "smtp_ca_pem": ca_pem, "smtp_verify_tls": "1",
        "smtp_timeout": "5"}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Connection works" in body and "235 authentication succeeded" in body
    assert "220 " in body
    assert SMTP_PASSWORD not in body
    db.session.refresh(customer)
    assert customer.sending_mode == "standard"  # testing saves nothing


def test_wrong_password_defers_then_pauses_after_three_and_alerts_via_the_relay(
        make_customer, make_user, api_post, starttls_server, ca_pem, relay, app):
    """535 is not a recipient failure: deferred; the third failure pauses the customer, holds
    its mail and sends administrators a processing_blocked email through our relay."""
    make_user("admin", email="boss@staff.example.com")
    customer, key = make_customer(name="Ferramenta Rossi")
    configure(customer, starttls_server, "starttls", ca_pem, password="changed-by-them")
    api_post(key, {"event": "order_closed", "to": "buyer@example.com", "data": ORDER})
    message = db.session.scalar(select(Message).where(Message.customer_id == customer.id))
    for attempt in range(1, 4):
        message.next_attempt_at = message.created_at  # due again now
        db.session.commit()
        sweep()
        db.session.refresh(message)
        db.session.refresh(customer)
        if attempt < 3:
            assert message.status == "deferred" and message.last_smtp_code == 535
            assert customer.auth_failures == attempt and not customer.paused
    assert customer.paused and "authentication" in customer.paused_reason
    assert db.session.scalar(select(Alert).where(Alert.cause == f"paused:{customer.id}"))
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.pause"))
    # the next sweep holds the customer's mail and delivers the alert through the relay
    message.next_attempt_at = message.created_at
    db.session.commit()
    sweep()
    db.session.refresh(message)
    assert message.status == "held"
    [alert_mail] = relay.wait_for(1)
    assert alert_mail.rcpt_tos == ["boss@staff.example.com"]
    assert "Ferramenta Rossi" in alert_mail.message.get_body(("plain", "html")).get_content()
    assert starttls_server.received == []


def test_the_banner_resume_button_resumes_and_releases_held_mail(
        make_customer, admin_client):
    """POST /customers/<code>/resume clears the pause, audited, and releases held mail."""
    customer, _ = make_customer(paused=True, paused_reason="repeated SMTP authentication "
                                "failures", auth_failures=3)
    page = admin_client.get("/customers/").get_data(as_text=True)
    assert f"/customers/{customer.code}/resume" in page  # the banner's button
    response = admin_client.post(f"/customers/{customer.code}/resume")
    assert response.status_code == 302
    db.session.refresh(customer)
    assert not customer.paused and customer.auth_failures == 0
    assert db.session.scalar(select(AuditEntry).where(AuditEntry.action == "customer.resume"))


def test_send_test_email_goes_through_the_customers_transport(
        make_customer, admin_client, starttls_server, ca_pem):
    """The test email is queued, sent by the customer's server and linked to the log."""
    customer, _ = make_customer()
    configure(customer, starttls_server, "starttls", ca_pem)
    response = admin_client.post(f"/customers/{customer.code}/test-email",
                                 data={"to": "me@example.com"}, headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    [got] = starttls_server.wait_for(1)
    assert got.rcpt_tos == ["me@example.com"] and got.authenticated_as == SMTP_USER
    message = db.session.scalar(select(Message))
    assert message.status == "sent" and message.reference == "test-email"
    assert f"/log/{message.public_id}" in body


def test_send_test_email_with_a_bad_address_is_refused(make_customer, admin_client):
    """A typo in the address answers 422 and queues nothing."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}/test-email",
                                 data={"to": "not an address"}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert db.session.scalar(select(Message)) is None
