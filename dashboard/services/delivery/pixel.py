"""The open-tracking pixel: a signed 1×1 image added to HTML mail at send time.

Recording the opens it reports is operations' work (services/tracking.py).
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from flask import current_app
from itsdangerous import BadSignature, Signer

from ...models import Message

SALT = "postino.open-tracking"
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _signer() -> Signer:
    return _signer_for(current_app.config["SECRET_KEY"])


@lru_cache(maxsize=4)
def _signer_for(secret_key: str) -> Signer:
    return Signer(secret_key, salt=SALT, digest_method=hashlib.sha256)


def token_for(message: Message) -> str:
    """The pixel's token: the message's unguessable public id, signed with SECRET_KEY."""
    return _signer().sign(message.public_id).decode()


def public_id_for(token: str) -> str | None:
    """The public id inside a valid token, or None for anything forged or mangled."""
    try:
        return _signer().unsign(token[:200]).decode()
    except (BadSignature, UnicodeDecodeError, ValueError):
        return None


def pixel_url(message: Message) -> str:
    """POSTINO_PUBLIC_URL/o/<token>.gif for this message."""
    base = current_app.config.get("POSTINO_PUBLIC_URL", "").rstrip("/")
    return f"{base}/o/{token_for(message)}.gif"


def pixel_tag(message: Message) -> str:
    """The <img> of this message's pixel."""
    return (f'<img src="{pixel_url(message)}" width="1" height="1" alt="" '
            f'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0">')


def split_at_body_end(html: str) -> tuple[str, str] | None:
    """(everything before the last </body>, ending with a line break; the rest), or None
    when there is no </body>. The pixel goes on a line of its own between the two, so the
    sending path can encode the two halves once for every recipient of the same body."""
    html = html.replace("\r\n", "\n").replace("\r", "\n")
    matches = list(_BODY_END.finditer(html))
    if not matches:
        return None
    at = matches[-1].start()
    head = html[:at]
    return (head if head.endswith("\n") else head + "\n"), html[at:]


def add_pixel(html: str, message: Message) -> str:
    """`html` with the pixel on its own line just before </body> (or at the end)."""
    halves = split_at_body_end(html)
    if halves is None:
        return html + pixel_tag(message)
    return halves[0] + pixel_tag(message) + "\n" + halves[1]


def wants_pixel(message: Message) -> bool:
    """Only HTML mail of customers with open tracking on carries the pixel."""
    return bool(message.html_body) and bool(message.customer and message.customer.open_tracking)
