"""Secure transports: STARTTLS with AUTH, implicit TLS, and certificates we must not trust."""
import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.delivery import credentials
from dashboard.services.delivery.sweep import sweep
from dashboard.services.delivery.transport import SmtpSettings, SmtpTransport
from dashboard.services.messages import intake

from .conftest import sample

RAW = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <t@x>\r\n\r\n"
       b"hello\r\n")


@pytest.fixture
def starttls_server(smtp_server, server_tls):
    """An SMTP server requiring STARTTLS, with AUTH for one user."""
    return smtp_server(starttls_context=server_tls, auth=("mailer", "s3cret"))


@pytest.fixture
def implicit_tls_server(smtp_server, server_tls):
    """A 465-style server: TLS from the first byte, with AUTH."""
    return smtp_server(tls_context=server_tls, auth=("mailer", "s3cret"))


@pytest.mark.parametrize("auth", ["plain", "login"])
def test_starttls_and_auth_deliver_with_a_pasted_ca(app, starttls_server, ca_pem, auth):
    """STARTTLS upgrades, the certificate is checked against the pasted CA, AUTH succeeds."""
    transport = SmtpTransport(SmtpSettings(
        host=starttls_server.host, port=starttls_server.port, security="starttls", auth=auth,
        username="mailer", password="s3cret", timeout=5, ca_pem=ca_pem))
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    transport.close()
    assert outcome.status == "sent" and outcome.code == 250
    [got] = starttls_server.wait_for(1)
    assert got.authenticated_as == "mailer"
    assert got.message["Subject"] == "hi"


def test_implicit_tls_delivers(app, implicit_tls_server, ca_pem):
    """An SSL-on-connect server (465) is reached with the pasted CA and AUTH."""
    transport = SmtpTransport(SmtpSettings(
        host=implicit_tls_server.host, port=implicit_tls_server.port, security="ssl",
        auth="login", username="mailer", password="s3cret", timeout=5, ca_pem=ca_pem))
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    transport.close()
    assert outcome.status == "sent"
    [got] = implicit_tls_server.wait_for(1)
    assert got.authenticated_as == "mailer"


def test_an_untrusted_certificate_is_refused_not_ignored(app, starttls_server):
    """Without the CA the self-signed certificate fails verification: deferred, nothing sent."""
    transport = SmtpTransport(SmtpSettings(
        host=starttls_server.host, port=starttls_server.port, security="starttls", auth="plain",
        username="mailer", password="s3cret", timeout=5))
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    assert outcome.status == "deferred"
    assert "certificate" in outcome.text.lower()
    assert starttls_server.received == []


def test_a_wrong_password_is_an_auth_failure(app, starttls_server, ca_pem):
    """A refused AUTH is reported as such, with the server's code."""
    transport = SmtpTransport(SmtpSettings(
        host=starttls_server.host, port=starttls_server.port, security="starttls", auth="login",
        username="mailer", password="wrong", timeout=5, ca_pem=ca_pem))
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    assert outcome.status == "auth_failed" and outcome.code == 535
    assert starttls_server.received == []


def _smtp_customer(make_customer, server, ca_pem, security, password="s3cret"):
    customer, _ = make_customer(
        sending_mode="customer_smtp", from_address="notifiche@cliente.example.com",
        from_name="Cliente", smtp_host=server.host, smtp_port=server.port,
        smtp_security=security, smtp_auth="login", smtp_username="mailer",
        smtp_password_encrypted=credentials.encrypt(password), smtp_ca_pem=ca_pem,
        smtp_timeout=5)
    return customer


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_a_customer_smtp_message_goes_through_the_customers_server(
        app, make_customer, smtp_server, server_tls, ca_pem, security):
    """customer_smtp: the customer's server, its From, its account as envelope sender."""
    if security == "ssl":
        server = smtp_server(tls_context=server_tls, auth=("mailer", "s3cret"))
    else:
        server = smtp_server(starttls_context=server_tls, auth=("mailer", "s3cret"))
    customer = _smtp_customer(make_customer, server, ca_pem, security)
    [message] = intake.enqueue(customer, "order_closed", "buyer@example.com",
                                 data=sample("order_closed"))
    assert sweep().sent == 1
    [got] = server.wait_for(1)
    assert got.authenticated_as == "mailer"
    assert got.mail_from == "notifiche@cliente.example.com"
    assert got.message["From"].addresses[0].addr_spec == "notifiche@cliente.example.com"
    message = db.session.scalar(select(Message).where(Message.id == message.id))
    assert message.status == "sent"


def test_repeated_auth_failures_pause_a_customer_smtp_customer(app, make_customer, starttls_server,
                                                               ca_pem):
    """Three refused logins pause the customer: the rest of its mail is held, not lost (a
    message already out on the customer's second lane is refused too)."""
    customer = _smtp_customer(make_customer, starttls_server, ca_pem, "starttls",
                              password="changed-by-the-customer")
    queued = intake.enqueue(customer, "order_closed",
                              [f"u{i}@example.com" for i in range(5)],
                              data=sample("order_closed"))
    result = sweep()
    assert result.deferred in (3, 4) and result.deferred + result.held == 5
    db.session.expire_all()
    assert db.session.get(type(customer), customer.id).paused
    statuses = sorted(db.session.get(Message, m.id).status for m in queued)
    assert statuses == ["deferred"] * result.deferred + ["held"] * result.held
