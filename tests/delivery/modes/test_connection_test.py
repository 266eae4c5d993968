"""The connection test (customer page → Test connection) against real servers: the saved
password never goes to another server or unencrypted without a confirmation, a silent
server is given up on quickly, and every failure is a sentence in the admin's language."""
from __future__ import annotations

import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from dashboard.services.accounts import customer_settings

from ...conftest import free_port
from ...smtp_servers import RecordingHandler
from .conftest import SMTP_PASSWORD, SMTP_USER

HX = {"HX-Request": "true"}


class CredentialRecorder:
    """An authenticator that accepts anything and keeps every password it was sent."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            self.seen.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True, auth_data=auth_data)


@pytest.fixture
def plain_auth_server():
    """A server offering AUTH without any encryption, recording the passwords it gets."""
    recorder = CredentialRecorder()
    port = free_port()
    controller = Controller(RecordingHandler([]), hostname="127.0.0.1", port=port,
                            authenticator=recorder, auth_require_tls=False, ready_timeout=10)
    controller.start()
    controller.recorder = recorder
    controller.port = port
    yield controller
    controller.stop()


@pytest.fixture
def saved_customer(make_customer, starttls_server, ca_pem):
    """A customer whose saved server is the STARTTLS one, with its real password stored."""
    customer, _ = make_customer()
    customer_settings.save(customer, {
        "sending_mode": "customer_smtp", "from_address": "notifiche@cliente.example",
        "smtp_host": starttls_server.host, "smtp_port": str(starttls_server.port),
        "smtp_security": "starttls", "smtp_auth": "plain", "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD, "smtp_ca_pem": ca_pem, "smtp_timeout": "5"})
    return customer


def probe(client, customer, **fields):
    """POST the connection test with the form's fields; (status, body)."""
    data = {"sending_mode": "customer_smtp", **fields}
    response = client.post(f"/customers/{customer.code}/test-connection", data=data, headers=HX)
    return response.status_code, response.get_data(as_text=True)


def test_the_saved_password_is_never_sent_to_a_typed_in_host(admin_client, saved_customer,
                                                             plain_auth_server):
    """Typing another host and testing with the password left empty used to log in there
    with the saved password: now the password must be typed again, and nothing connects."""
    status, body = probe(admin_client, saved_customer, smtp_host="127.0.0.1",
                         smtp_port=str(plain_auth_server.port), smtp_security="none",
                         smtp_auth="plain", smtp_username=SMTP_USER, smtp_password="",
                         confirm_plaintext="1")
    assert status == 422
    assert "Type the password again" in body
    time.sleep(0.2)
    assert plain_auth_server.recorder.seen == []


def test_the_saved_password_still_works_for_the_saved_server(admin_client, saved_customer):
    """Testing the saved settings (password left empty) logs in with the stored password."""
    status, body = probe(admin_client, saved_customer, smtp_password="")
    assert status == 200 and "Connection works" in body, body


def test_a_login_without_encryption_needs_the_confirmation(admin_client, make_customer,
                                                           plain_auth_server):
    """Security None with a login is refused until confirmed; then it logs in and says the
    password crossed the network unencrypted."""
    customer, _ = make_customer()
    form = {"from_address": "a@cliente.example", "smtp_host": "127.0.0.1",
            "smtp_port": str(plain_auth_server.port), "smtp_security": "none",
            "smtp_auth": "login", "smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD,
            "smtp_timeout": "5"}
    status, body = probe(admin_client, customer, **form)
    assert status == 422 and "crosses the network unencrypted" in body
    assert plain_auth_server.recorder.seen == []
    status, body = probe(admin_client, customer, **form, confirm_plaintext="1")
    assert status == 200 and "Connection works" in body
    assert "Logged in, but the password crossed the network unencrypted." in body
    assert plain_auth_server.recorder.seen == [(SMTP_USER, SMTP_PASSWORD)]
    assert SMTP_PASSWORD not in body


def test_a_silent_server_is_given_up_on_after_the_test_timeout(app, admin_client,
                                                                make_customer, silent_server):
    """A server that never answers ends the test after POSTINO_SMTP_TEST_TIMEOUT (not the
    customer's 30 s), saying so in words."""
    customer, _ = make_customer()
    app.config["POSTINO_SMTP_TEST_TIMEOUT"] = 1
    try:
        started = time.monotonic()
        status, body = probe(admin_client, customer, from_address="a@cliente.example",
                             smtp_host="127.0.0.1", smtp_port=str(silent_server),
                             smtp_security="starttls", smtp_auth="none", smtp_timeout="30")
        elapsed = time.monotonic() - started
    finally:
        app.config["POSTINO_SMTP_TEST_TIMEOUT"] = 10
    assert status == 200 and "Connection failed" in body
    assert f"No answer from 127.0.0.1:{silent_server} in 1 s" in body
    assert elapsed < 5


def test_the_page_says_the_test_takes_at_most_the_test_timeout(admin_client, make_customer):
    """The button carries an htmx progress indicator and disables itself while it runs."""
    customer, _ = make_customer()
    body = admin_client.get(f"/customers/{customer.code}/mode?sending_mode=customer_smtp",
                            headers=HX).get_data(as_text=True)
    assert 'hx-indicator="#probe-progress"' in body and 'hx-disabled-elt="this"' in body
    assert "at most 10 s per step" in body


@pytest.mark.parametrize(("fields", "english", "italian"), [
    ({"smtp_security": "starttls"}, "does not offer STARTTLS", "non offre STARTTLS"),
    ({"smtp_security": "ssl"}, "The encrypted connection to", "La connessione cifrata con"),
    ({"smtp_security": "none", "smtp_port": "1"}, "refused the connection",
     "ha rifiutato la connessione"),
])
def test_failures_are_explained_in_sentences_in_both_languages(app, make_customer, make_user,
                                                               login, smtp_sink, fields,
                                                               english, italian):
    """No raw 'SMTPNotSupportedError…': each failure is a sentence in the admin's language,
    with the technical detail kept small beside it."""
    customer, _ = make_customer()
    form = {"from_address": "a@cliente.example", "smtp_host": smtp_sink.host,
            "smtp_port": str(smtp_sink.port), "smtp_auth": "none", "smtp_timeout": "5",
            **fields}
    for language, sentence in (("en", english), ("it", italian)):
        client = login(app.test_client(), make_user("admin", language=language))
        status, body = probe(client, customer, **form)
        assert status == 200 and sentence in body, body[-1500:]
        assert "SMTPNotSupportedError" not in body
