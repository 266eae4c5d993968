"""The words people read for the classifier's codes (bounces.fault), in Italian and English.

Codes are stored, never their translation: a page, an export or a later webhook shows the
words of whoever reads them.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

from . import fault

CLASS_LABELS = {
    fault.RECIPIENT_PERMANENT: _l("Recipient's address (permanent)"),
    fault.RECIPIENT_TEMPORARY: _l("Recipient's mailbox (temporary)"),
    fault.SENDER_REPUTATION: _l("Sender or reputation"),
    fault.ACCOUNT_TRANSPORT: _l("Sending account or server"),
    fault.TRANSIENT: _l("Temporary problem on the way"),
    fault.COMPLAINT: _l("Spam complaint"),
    fault.DELIVERED: _l("Delivered or automatic reply"),
    fault.UNKNOWN: _l("Not recognised"),
}

REASON_LABELS = {
    "unknown_user": _l("the address does not exist"),
    "unknown_domain": _l("the recipient's domain does not exist"),
    "no_mail_domain": _l("the recipient's domain accepts no mail"),
    "address_moved": _l("the address has moved or changed owner"),
    "invalid_address": _l("the address is not valid"),
    "provider_suppressed": _l("the provider blocks the address after earlier bounces"),
    "mailbox_full": _l("the recipient's mailbox is full"),
    "mailbox_disabled": _l("the recipient's mailbox is disabled or suspended"),
    "mailbox_unavailable": _l("the recipient's mailbox is temporarily unavailable"),
    "recipient_rate_limited": _l("the recipient is receiving too much mail right now"),
    "blocklist": _l("our sending server is on a blocklist"),
    "ip_reputation": _l("the sending server's reputation (volume or complaints)"),
    "spam": _l("the message was taken for spam"),
    "dmarc": _l("the sender's domain does not authorise us (DMARC)"),
    "spf": _l("the sender's domain does not authorise our server (SPF)"),
    "dkim": _l("the DKIM signature is missing or wrong"),
    "unauthenticated": _l("the message failed the sender authentication checks"),
    "ptr": _l("our server's name (reverse DNS, HELO) was not accepted"),
    "sender_rejected": _l("the sender address was refused"),
    "content": _l("the message's format was refused"),
    "virus": _l("the message was taken for a virus or phishing"),
    "message_too_big": _l("the message is too big"),
    "policy": _l("refused by the receiving server's policy"),
    "quota": _l("the sending account reached its sending limit"),
    "rate_limited": _l("the sending account is sending too fast"),
    "send_as_denied": _l("the sending account may not send as this sender"),
    "relay_denied": _l("the server refuses to relay for the sending account"),
    "auth": _l("the sending account's login was refused"),
    "tls_required": _l("the server requires an encrypted connection"),
    "tls_failed": _l("the encrypted connection failed (certificate or TLS)"),
    "account_disabled": _l("the sending account is disabled or blocked"),
    "sender_not_verified": _l("the sender address is not verified with the provider"),
    "greylisted": _l("greylisting: the server asks to try again later"),
    "server_busy": _l("the server is busy or had a temporary error"),
    "too_many_connections": _l("too many connections at once"),
    "timeout": _l("the server did not answer in time"),
    "connection": _l("the connection to the server failed"),
    "unreachable": _l("the recipient's mail server could not be reached"),
    "expired": _l("not delivered in time: the attempts expired"),
    "dns_temporary": _l("a temporary DNS problem"),
    "routing": _l("a mail loop or routing problem"),
    "abuse": _l("the recipient reported the message as spam"),
    "fraud": _l("the recipient reported the message as fraud"),
    "virus_report": _l("the recipient reported the message as a virus"),
    "other_report": _l("the recipient reported the message"),
    "delivered": _l("delivered to the recipient's mailbox"),
    "relayed": _l("handed on to a server that gives no delivery reports"),
    "expanded": _l("delivered to a list or alias"),
    "auto_reply": _l("an automatic reply (e.g. out of office)"),
    "unclassified": _l("a refusal without a recognisable reason"),
}


def class_label(fault_class: str | None) -> str:
    """Who is at fault, in the reader's language ('' when there is no verdict)."""
    if not fault_class:
        return ""
    return str(CLASS_LABELS.get(fault_class, fault_class))


def reason_label(reason: str | None) -> str:
    """Why, in the reader's language ('' when there is no verdict)."""
    if not reason:
        return ""
    return str(REASON_LABELS.get(reason, reason))
