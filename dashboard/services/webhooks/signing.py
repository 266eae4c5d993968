"""Webhook signatures, the way the well-known providers do it: HMAC-SHA256 over
`<timestamp>.<body>` with the endpoint's secret, sent as
`Postino-Signature: t=<unix seconds>,v1=<hex>` (one v1 per valid secret: after a rotation
the previous secret signs too, for a day). Receivers recompute it over the raw body and
refuse a timestamp older than the tolerance (default 5 minutes), which stops replays."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "Postino-Signature"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret (shown once, stored encrypted)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>`."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def header(secrets_: list[str], body: bytes, timestamp: int | None = None) -> str:
    """The Postino-Signature value for `body`, signed with each secret."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return ",".join([f"t={timestamp}"] + [f"v1={signature(s, timestamp, body)}"
                                           for s in secrets_])


def verify(secret: str, value: str, body: bytes, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when `value` (the header) carries a valid v1 signature of `body` by `secret`
    with a timestamp within `tolerance` seconds of now."""
    timestamp, candidates = None, []
    for part in (value or "").split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isdigit():
            timestamp = int(item)
        elif key == "v1":
            candidates.append(item)
    if timestamp is None or not candidates:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
