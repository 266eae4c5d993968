"""Signed VERP envelope senders: bounces+<message id>.<hmac>@<bounce domain>.

The HMAC means a forged bounce cannot be pinned on an arbitrary message.
"""
from __future__ import annotations

import hashlib
import hmac
import re

from flask import current_app

_VERP_RE = re.compile(r"^bounces\+([0-9a-f]{8,32})\.([0-9a-f]{16})@(.+)$", re.IGNORECASE)


def _signature(public_id: str) -> str:
    key = ("verp:" + current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, public_id.lower().encode(), hashlib.sha256).hexdigest()[:16]


def bounce_domain() -> str:
    """The bounce domain in force (Settings, else POSTINO_BOUNCE_DOMAIN)."""
    from ..core import settings

    return str(settings.get("bounce_domain")).strip().lower()


def address_for(public_id: str, domain: str | None = None) -> str:
    """The signed VERP envelope sender for a message."""
    return f"bounces+{public_id}.{_signature(public_id)}@{domain or bounce_domain()}"


def parse(address: str, domain: str | None = None) -> str | None:
    """The message public id a VERP address stands for, or None when forged or foreign."""
    match = _VERP_RE.match((address or "").strip().strip("<>"))
    if not match:
        return None
    public_id, signature, addr_domain = match.groups()
    if addr_domain.lower() != (domain or bounce_domain()):
        return None
    if not hmac.compare_digest(signature.lower(), _signature(public_id)):
        return None
    return public_id.lower()
