"""Customer SMTP passwords at rest: encrypted, rotatable, and a wrong key never a 500."""
import logging

from cryptography.fernet import Fernet
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.accounts import customer_settings
from dashboard.services.delivery import credentials
from dashboard.services.delivery.sweep import sweep

PASSWORD = "Very-Secret-42"


def smtp_customer(make_customer):
    """A customer on its own SMTP with a stored password."""
    customer, key = make_customer()
    customer_settings.save(customer, {
        "sending_mode": "customer_smtp", "from_address": "a@cliente.example",
        "smtp_host": "127.0.0.1", "smtp_port": "1", "smtp_security": "none",
        "smtp_auth": "plain", "smtp_username": "a", "smtp_password": PASSWORD},
        confirm_plaintext=True)
    return customer, key


def test_the_stored_value_is_not_the_password_but_decrypts_to_it(make_customer):
    """Encrypted at rest with the first key; decryption gives the password back in memory."""
    customer, _ = smtp_customer(make_customer)
    assert PASSWORD not in customer.smtp_password_encrypted
    assert credentials.decrypt(customer.smtp_password_encrypted) == PASSWORD


def test_rotation_re_encrypts_with_the_new_first_key(app, make_customer, runner):
    """New key first, old key second: rotate; then the old key can be dropped."""
    customer, _ = smtp_customer(make_customer)
    old_key = app.config["POSTINO_CREDENTIALS_KEY"]
    new_key = Fernet.generate_key().decode()
    try:
        app.config["POSTINO_CREDENTIALS_KEY"] = f"{new_key},{old_key}"
        before = customer.smtp_password_encrypted
        result = runner.invoke(args=["rotate-credentials"])
        assert result.exit_code == 0, result.output
        assert "re-encrypted 1" in result.output
        db.session.refresh(customer)
        assert customer.smtp_password_encrypted != before
        app.config["POSTINO_CREDENTIALS_KEY"] = new_key
        assert credentials.decrypt(customer.smtp_password_encrypted) == PASSWORD
    finally:
        app.config["POSTINO_CREDENTIALS_KEY"] = old_key


def test_rotation_with_a_wrong_key_fails_clearly_and_changes_nothing(app, make_customer,
                                                                     runner):
    """No key can decrypt: exit 1 naming the customer, nothing re-encrypted."""
    customer, _ = smtp_customer(make_customer)
    old_key = app.config["POSTINO_CREDENTIALS_KEY"]
    before = customer.smtp_password_encrypted
    try:
        app.config["POSTINO_CREDENTIALS_KEY"] = Fernet.generate_key().decode()
        result = runner.invoke(args=["rotate-credentials"])
    finally:
        app.config["POSTINO_CREDENTIALS_KEY"] = old_key
    assert result.exit_code == 1
    assert customer.code in result.output and "cannot decrypt" in result.output
    db.session.refresh(customer)
    assert customer.smtp_password_encrypted == before


def test_a_wrong_key_is_a_clear_error_in_the_ui_and_the_log_never_a_500(
        app, make_customer, admin_client, api_post, caplog):
    """Connection test: a clear message (and a log line); the sweep defers the message with
    the reason on its timeline; pages still render; the password never shows."""
    customer, key = smtp_customer(make_customer)
    old_key = app.config["POSTINO_CREDENTIALS_KEY"]
    try:
        app.config["POSTINO_CREDENTIALS_KEY"] = Fernet.generate_key().decode()
        with caplog.at_level(logging.ERROR):
            response = admin_client.post(f"/customers/{customer.code}/test-connection",
                                         data={"sending_mode": "customer_smtp",
                                               "confirm_plaintext": "1"},
                                         headers={"HX-Request": "true"})
        body = response.get_data(as_text=True)
        assert response.status_code == 422
        assert "POSTINO_CREDENTIALS_KEY" in body
        assert any("cannot be decrypted" in r.getMessage() for r in caplog.records)
        page = admin_client.get(f"/customers/{customer.code}")
        assert page.status_code == 200
        api_post(key, {"event": "password_reset", "to": "u@example.com", "data": {
            "user_name": "U", "link": "https://x.example.com", "expires_hours": 1}})
        assert sweep().deferred == 1
        message = db.session.scalar(select(Message))
        assert "cannot be decrypted" in message.last_smtp_text
        for text in (body, page.get_data(as_text=True), message.last_smtp_text):
            assert PASSWORD not in text
    finally:
        app.config["POSTINO_CREDENTIALS_KEY"] = old_key
