"""Secrets at rest: customer SMTP passwords encrypted with POSTINO_CREDENTIALS_KEY.

The variable holds comma-separated Fernet keys; the first encrypts, all decrypt, so keys can
be rotated: add a new key first, run `flask rotate-credentials`, then drop the old one.
"""
from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

from .. import ServiceError


class CredentialsError(ServiceError):
    """A stored secret cannot be decrypted with the configured keys."""


def _fernet() -> MultiFernet:
    raw = current_app.config.get("POSTINO_CREDENTIALS_KEY") or ""
    keys = [k.strip() for k in str(raw).split(",") if k.strip()]
    if not keys:
        raise CredentialsError("POSTINO_CREDENTIALS_KEY is not set", "POSTINO_CREDENTIALS_KEY")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError):
        raise CredentialsError(
            "POSTINO_CREDENTIALS_KEY is not a valid list of Fernet keys",
            "POSTINO_CREDENTIALS_KEY",
        ) from None


def encrypt(plain: str) -> str:
    """Encrypt a secret with the first key."""
    return _fernet().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a stored secret; a wrong key is a clear CredentialsError, never the value."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise CredentialsError(
            "the stored password cannot be decrypted with POSTINO_CREDENTIALS_KEY "
            "(was the key changed without rotation?)", "smtp_password"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a stored secret with the first key."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise CredentialsError("a stored secret cannot be decrypted with any key",
                               "smtp_password") from None
