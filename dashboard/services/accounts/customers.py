"""Customers and their API keys."""
from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select

from ...extensions import db
from ...models import ApiKey, Customer, User, utcnow
from .. import ServiceError
from ..core import audit

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,39}$")
KEY_PREFIX = "pst_"


def hash_key(raw: str) -> str:
    """SHA-256 of an API key: keys are long random tokens, so a fast hash is enough."""
    return hashlib.sha256(raw.encode()).hexdigest()


def create_customer(code: str, name: str, actor: User | None = None,
                    language: str = "it") -> tuple[Customer, str]:
    """Create a customer in `standard` mode and its first API key; returns (customer, key)."""
    code = (code or "").strip()
    name = (name or "").strip()
    if not CODE_RE.match(code):
        raise ServiceError("code must be 2-40 letters, digits, '-' or '_'", "code")
    if not name or len(name) > 200:
        raise ServiceError("name is required (at most 200 characters)", "name")
    if db.session.scalar(select(Customer).where(Customer.code == code)):
        raise ServiceError(f"customer {code} already exists", "code")
    customer = Customer(code=code, name=name, default_language=language, sending_mode="standard")
    db.session.add(customer)
    db.session.flush()
    audit.record("customer.create", actor, "customer", customer.id,
                 after={"code": code, "name": name}, customer_id=customer.id)
    raw = _new_key(customer, "default")
    db.session.commit()
    return customer, raw


def _new_key(customer: Customer, label: str | None) -> str:
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiKey(customer_id=customer.id, prefix=raw[:12], key_hash=hash_key(raw),
                          label=label))
    return raw


def create_api_key(customer: Customer, actor: User | None, label: str | None = None) -> str:
    """Issue a new API key; the raw key is returned once and stored only hashed."""
    raw = _new_key(customer, (label or "").strip()[:100] or None)
    audit.record("api_key.create", actor, "customer", customer.id,
                 after={"prefix": raw[:12]}, customer_id=customer.id)
    db.session.commit()
    return raw


def revoke_api_key(key: ApiKey, actor: User | None) -> None:
    """Revoke an API key (kept for the record)."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record("api_key.revoke", actor, "customer", key.customer_id,
                     before={"prefix": key.prefix}, customer_id=key.customer_id)
        db.session.commit()


def customer_for_key(raw: str) -> Customer | None:
    """The customer owning an active API key, or None."""
    if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    key = db.session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(raw), ApiKey.revoked_at.is_(None))
    )
    return key.customer if key is not None else None


def by_code(code: str) -> Customer | None:
    """Find a customer by its code."""
    return db.session.scalar(select(Customer).where(Customer.code == code))
