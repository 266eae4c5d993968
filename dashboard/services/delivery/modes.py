"""Sending modes: which transport, From header and envelope sender a message gets."""
from __future__ import annotations

from flask import current_app

from ...addresses import format_sender, parse_sender
from ...models import Customer, Message
from ..core import settings
from . import credentials, verp
from .transport import SmtpSettings, relay_settings

REGISTRATION_EVENTS = ("user_invitation", "password_reset")


def from_header(customer: Customer, event: str) -> str:
    """The From header: our senders in `standard`, the customer's address otherwise."""
    if customer.sending_mode in ("custom_from", "customer_smtp") and customer.from_address:
        return format_sender(customer.from_name, customer.from_address)
    key = "sender_registration" if event in REGISTRATION_EVENTS else "sender_notification"
    name, address = parse_sender(str(settings.get(key)), key)
    return format_sender(name, address)


def envelope_from(customer: Customer, message: Message) -> str:
    """VERP on our bounce domain through the relay; the customer's account on its own SMTP."""
    if customer.sending_mode == "customer_smtp":
        return customer.from_address or customer.smtp_username or ""
    return verp.address_for(message.public_id)


def transport_key(customer: Customer) -> str:
    """Messages with the same key share one SMTP connection in a sweep."""
    return f"customer:{customer.id}" if customer.sending_mode == "customer_smtp" else "relay"


def transport_settings(customer: Customer) -> SmtpSettings:
    """Connection settings for a customer's messages (decrypts the password in memory)."""
    if customer.sending_mode != "customer_smtp":
        return relay_settings()
    password = None
    if customer.smtp_password_encrypted:
        password = credentials.decrypt(customer.smtp_password_encrypted)
    return SmtpSettings(
        host=customer.smtp_host or "",
        port=int(customer.smtp_port or 587),
        security=customer.smtp_security or "starttls",
        auth=customer.smtp_auth or "none",
        username=customer.smtp_username,
        password=password,
        timeout=float(customer.smtp_timeout or current_app.config.get("MAIL_TIMEOUT", 30)),
        verify=bool(customer.smtp_verify_tls),
        ca_pem=customer.smtp_ca_pem,
        name=f"customer {customer.code}",
    )
