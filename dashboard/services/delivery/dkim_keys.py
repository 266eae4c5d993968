"""DKIM keys: generate, publish, verify, rotate and retire them, and sign mail with them.

Mode (b) puts the customer's address in From while our relay sends: DMARC then fails on SPF
alignment, and receivers file or refuse the mail. With a key published under a selector of
the customer's own domain, every message carries a DKIM signature with d= that domain, and
DMARC passes on DKIM alignment. The same works for our own sender domains (standard mode).

A key set is an RSA 2048 key under `selector` (postino<yyyymm> by default), optionally with
an Ed25519 key under `<selector>-ed25519`, signed alongside (not every receiver verifies
Ed25519). Private halves are encrypted with POSTINO_CREDENTIALS_KEY, re-encrypted by
`flask rotate-credentials`, wiped when the key is retired, and never shown or logged.

A key signs only while it is the owner's `active` key and its record was found matching in
DNS (or an admin forced it): a customer never starts failing because of us. Rotation: a
second key is `prepared` and published, then switched to; the old one becomes `previous`
and stays (its record still published) until an admin retires it. Every action is audited.

Signing happens when compose builds the message bytes (`sign`), relaxed/relaxed, with
dkimpy's header canonicalisation and OpenSSL (cryptography) for the signature itself:
dkimpy's own RSA is pure Python and costs ~9 ms a signature, OpenSSL's ~0.8 ms. The body
canonicalisation and the header split are ours, ~30 times faster than dkimpy's on a message
with a file (tests compare them with dkimpy's and verify every signature with dkimpy). Which
keys sign comes from a small table read every few seconds per process; parsed private keys
are cached.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dkim.canonicalization import (
    CanonicalizationPolicy,
    correct_empty_body,
    strip_trailing_lines,
)
from flask import current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ...addresses import parse_sender
from ...extensions import db
from ...models import Customer, DkimKey, User, utcnow
from .. import ServiceError
from ..core import audit
from . import credentials

log = logging.getLogger(__name__)

RSA_BITS = 2048
ED25519_SUFFIX = "-ed25519"
SELECTOR_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
TXT_CHUNK = 255  # a TXT record is a list of strings of at most 255 bytes each
REFRESH_SECONDS = 5.0
STATE_ORDER = {"active": 0, "prepared": 1, "previous": 2, "retired": 3}
ALGORITHMS = {"rsa": b"rsa-sha256", "ed25519": b"ed25519-sha256"}
# The headers that matter (the list), each signed when present; From is signed one
# extra time, so a second From added on the way breaks the signature.
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"list-unsubscribe", b"list-unsubscribe-post")
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_SPACES = re.compile(rb"  +")


# -- names and records ------------------------------------------------------------------------

def domain_of(address: str | None) -> str | None:
    """The lower-cased domain of an address, None without one."""
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().lower().rstrip(".") or None


def own_domains() -> list[str]:
    """The domains of our own senders (standard mode), from Settings."""
    from ..core import settings

    found = []
    for key in ("sender_notification", "sender_registration"):
        raw = settings.get(key)
        if not raw:
            continue
        try:
            domain = domain_of(parse_sender(str(raw), key)[1])
        except ServiceError:
            continue
        if domain and domain not in found:
            found.append(domain)
    return found


def record_name(selector: str, domain: str) -> str:
    """Where a selector's key is published: <selector>._domainkey.<domain>."""
    return f"{selector}._domainkey.{domain}"


def record_value(algorithm: str, public: str) -> str:
    """The TXT value of a key record."""
    return f"v=DKIM1; k={algorithm}; p={public}"


def split_txt(value: str, size: int = TXT_CHUNK) -> list[str]:
    """A TXT value as the strings DNS holds it in (each at most 255 bytes; ASCII here)."""
    return [value[i:i + size] for i in range(0, len(value), size)] or [""]


@dataclass
class Record:
    """One DNS record to publish for a key."""

    algorithm: str
    selector: str
    name: str
    value: str
    strings: list[str] = field(default_factory=list)

    @property
    def zone_text(self) -> str:
        """The value as quoted strings, as zone files and most DNS panels take it."""
        return " ".join(f'"{chunk}"' for chunk in self.strings)


def records(key: DkimKey) -> list[Record]:
    """The records to publish for a key: RSA, then Ed25519 when the key has one."""
    out = []
    for algorithm, selector, public in _halves(key):
        value = record_value(algorithm, public)
        out.append(Record(algorithm, selector, record_name(selector, key.domain), value,
                          split_txt(value)))
    return out


def _halves(key: DkimKey) -> list[tuple[str, str, str]]:
    halves = [("rsa", key.selector, key.rsa_public)]
    if key.ed25519_selector and key.ed25519_public:
        halves.append(("ed25519", key.ed25519_selector, key.ed25519_public))
    return halves


def is_signing(key: DkimKey) -> bool:
    """True when this key signs mail now: active, and its record verified or forced."""
    return key.state == "active" and bool(key.verified_at or key.ed25519_verified_at
                                          or key.forced)


# -- reading ---------------------------------------------------------------------------------

def keys_of(customer: Customer | None, domain: str | None = None,
            include_retired: bool = True) -> list[DkimKey]:
    """A customer's keys (None: our own domains' keys, optionally of one domain), active
    first, then prepared, previous and retired, newest first within each."""
    query = select(DkimKey).where(DkimKey.customer_id == customer.id if customer is not None
                                  else DkimKey.customer_id.is_(None))
    if domain is not None:
        query = query.where(DkimKey.domain == domain)
    if not include_retired:
        query = query.where(DkimKey.state != "retired")
    rows = db.session.scalars(query).all()
    return sorted(rows, key=lambda k: (STATE_ORDER.get(k.state, 9), -(k.id or 0)))


def active_key(customer: Customer | None, domain: str) -> DkimKey | None:
    """The owner's active key for a domain, if any."""
    return db.session.scalar(select(DkimKey).where(
        DkimKey.customer_id == customer.id if customer is not None
        else DkimKey.customer_id.is_(None),
        DkimKey.domain == domain, DkimKey.state == "active"))


def _owner_label(key: DkimKey) -> dict:
    return {"customer": key.customer.code if key.customer is not None else None,
            "domain": key.domain, "selector": key.selector,
            "ed25519_selector": key.ed25519_selector}


# -- generating ------------------------------------------------------------------------------

def default_selector(domain: str, now: datetime | None = None) -> str:
    """postino<yyyymm>, with -2, -3… when the domain already used that selector."""
    base = f"postino{(now or utcnow()):%Y%m}"
    taken = set(db.session.scalars(select(DkimKey.selector).where(DkimKey.domain == domain)))
    taken |= {s for s in db.session.scalars(select(DkimKey.ed25519_selector).where(
        DkimKey.domain == domain)) if s}
    selector, n = base, 1
    while selector in taken or selector + ED25519_SUFFIX in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


def _target_domain(customer: Customer | None, domain: str | None) -> str:
    if customer is not None:
        target = domain_of(customer.from_address)
        if target is None:
            raise ServiceError(str(_l("Set the customer's From address first: the key is "
                                      "published on its domain.")), "selector")
    else:
        target = (domain or "").strip().lower().rstrip(".")
        if target not in own_domains():
            raise ServiceError(str(_l("Choose one of our senders' domains.")), "domain")
    if not target.isascii():
        raise ServiceError(str(_l("The domain must be written in ASCII (punycode, xn--…) to "
                                  "publish a DKIM key on it.")), "selector")
    return target


def generate(customer: Customer | None, actor: User | None = None, *, domain: str | None = None,
             selector: str | None = None, ed25519: bool = False,
             actor_label: str | None = None) -> DkimKey:
    """Generate a key set for a customer's From domain (or one of our senders' domains when
    `customer` is None): active when the owner has none for that domain, else prepared (the
    next key of a rotation). Audited; the private halves are stored encrypted only."""
    target = _target_domain(customer, domain)
    selector = (selector or "").strip().lower() or default_selector(target)
    if not SELECTOR_RE.match(selector):
        raise ServiceError(str(_l("A selector is 1-48 lower-case letters, digits or hyphens "
                                  "(not at either end).")), "selector")
    names = {selector} | ({selector + ED25519_SUFFIX} if ed25519 else set())
    used = db.session.scalar(select(DkimKey.id).where(
        DkimKey.domain == target,
        DkimKey.selector.in_(names) | DkimKey.ed25519_selector.in_(names)))
    if used is not None:
        raise ServiceError(str(_l("The selector %(selector)s is already used on %(domain)s: "
                                  "choose another one.", selector=selector, domain=target)),
                           "selector")
    owned = keys_of(customer, target, include_retired=False)
    if any(k.state == "prepared" for k in owned):
        raise ServiceError(str(_l("A prepared key is already waiting: switch to it or "
                                  "discard it first.")), "selector")
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    key = DkimKey(
        customer_id=customer.id if customer is not None else None, domain=target,
        selector=selector,
        rsa_public=_b64(private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
        rsa_private_encrypted=credentials.encrypt(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode("ascii")),
        state="active" if not any(k.state == "active" for k in owned) else "prepared",
        forced=False,
    )
    if key.state == "active":
        key.activated_at = utcnow()
    if ed25519:
        edkey = Ed25519PrivateKey.generate()
        key.ed25519_selector = selector + ED25519_SUFFIX
        key.ed25519_public = _b64(edkey.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        key.ed25519_private_encrypted = credentials.encrypt(_b64(edkey.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())))
    db.session.add(key)
    try:
        db.session.flush()
    except IntegrityError:  # another admin took the selector a moment ago
        db.session.rollback()
        raise ServiceError(str(_l("The selector %(selector)s is already used on %(domain)s: "
                                  "choose another one.", selector=selector, domain=target)),
                           "selector") from None
    audit.record("dkim.generate", actor, "dkim_key", key.id,
                 after={**_owner_label(key), "state": key.state,
                        "algorithms": [a for a, _s, _p in _halves(key)]},
                 customer_id=key.customer_id, actor_label=actor_label)
    db.session.commit()
    invalidate()
    return key


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# -- checking the records --------------------------------------------------------------------

def check(key: DkimKey, actor: User | None = None, actor_label: str | None = None,
          commit: bool = True) -> dict:
    """Look the key's records up in DNS, with the domain's DMARC policy, and keep the result
    on the key: a matching record verifies it (signing starts if it is active), a missing or
    different one un-verifies it; a DNS failure changes nothing. Audited when that flips."""
    from . import dns_check, verp

    now = datetime.now(UTC)
    result: dict = {"checked_at": now.isoformat(timespec="seconds"), "domain": key.domain,
                    "records": {}, "dmarc": None, "errors": []}
    try:
        lookup = dns_check.Lookup(dns_check.configured_nameservers(),
                                  float(current_app.config.get("POSTINO_DNS_TIMEOUT") or 3))
    except (ValueError, OSError) as exc:
        lookup = None
        result["errors"].append(f"POSTINO_DNS_NAMESERVERS is not usable: {exc}")
    for algorithm, selector, public in _halves(key):
        name = record_name(selector, key.domain)
        entry = {"name": name, "algorithm": algorithm, "record": None, "status": "dns_error",
                 "detail": ""}
        if lookup is not None:
            try:
                entry = dns_check.evaluate_dkim(lookup, name, algorithm, public)
            except dns_check.DnsFailure as exc:
                result["errors"].append(f"DKIM: {exc}")
        result["records"][algorithm] = entry
    if lookup is not None:
        try:
            result["dmarc"] = dns_check.evaluate_dmarc(lookup, key.domain, verp.bounce_domain())
        except dns_check.DnsFailure as exc:
            result["errors"].append(f"DMARC: {exc}")
    result["verdict"] = dkim_verdict(result)
    _apply_check(key, result, actor, actor_label)
    if commit:
        db.session.commit()
    invalidate()
    return result


def dkim_verdict(result: dict) -> str:
    """The words of the check: pass (DMARC will pass with DKIM), pass_no_dmarc (DKIM passes,
    the domain has no DMARC policy), missing, differs, dns_error (from the RSA record)."""
    status = (result["records"].get("rsa") or {}).get("status", "dns_error")
    if status == "match":
        if result.get("dmarc") is None and result.get("errors"):
            return "pass"  # the key is right; DMARC could not be read
        return "pass" if (result.get("dmarc") or {}).get("record") else "pass_no_dmarc"
    return status


def _apply_check(key: DkimKey, result: dict, actor: User | None, actor_label: str | None) -> None:
    now = utcnow()
    before = {"rsa": key.verified_at is not None, "ed25519": key.ed25519_verified_at is not None}
    for algorithm, column in (("rsa", "verified_at"), ("ed25519", "ed25519_verified_at")):
        status = (result["records"].get(algorithm) or {}).get("status")
        if status == "match" and getattr(key, column) is None:
            setattr(key, column, now)
        elif status in ("missing", "differs"):
            setattr(key, column, None)
    after = {"rsa": key.verified_at is not None, "ed25519": key.ed25519_verified_at is not None}
    key.dns_check = result
    key.checked_at = now
    if before != after:
        verified = after["rsa"] or after["ed25519"]
        audit.record("dkim.verified" if verified else "dkim.unverified", actor, "dkim_key",
                     key.id, before={"verified": before}, after={"verified": after},
                     note=f"{key.domain} selector {key.selector}: " + ", ".join(
                         f"{a} {(result['records'].get(a) or {}).get('status')}"
                         for a in result["records"]),
                     customer_id=key.customer_id, actor_label=actor_label)


def summary(key: DkimKey) -> dict:
    """What the DNS check and the doctor need to know about a key (JSON-able)."""
    check_result = key.dns_check or {}
    rsa_record = (check_result.get("records") or {}).get("rsa") or {}
    return {"id": key.id, "domain": key.domain, "selector": key.selector,
            "name": record_name(key.selector, key.domain), "state": key.state,
            "status": rsa_record.get("status") if check_result else None,
            "verdict": check_result.get("verdict"), "signing": is_signing(key),
            "forced": bool(key.forced), "verified": key.verified_at is not None}


def check_customer_keys(customer: Customer, actor: User | None = None) -> dict | None:
    """Check a customer's active and prepared keys (not committed); the summary of the key
    that signs (the active one of its current From domain), None when it has none."""
    domain = domain_of(customer.from_address)
    signing = None
    for key in keys_of(customer, include_retired=False):
        if key.state not in ("active", "prepared"):
            continue
        check(key, actor, commit=False)
        if key.state == "active" and key.domain == domain:
            signing = summary(key)
    return signing


def check_due(actor_label: str = "worker") -> dict:
    """The scheduled check: every active and prepared key, so signing starts by itself once
    the customer publishes its record (and stops if the record goes away)."""
    keys = db.session.scalars(select(DkimKey).where(DkimKey.state.in_(("active", "prepared")))
                              .order_by(DkimKey.id)).all()
    counts = {"checked": 0, "verified": 0}
    for key in keys:
        check(key, actor_label=actor_label)
        counts["checked"] += 1
        counts["verified"] += key.verified_at is not None
    return counts


# -- rotation --------------------------------------------------------------------------------

class NeedsConfirmation(ServiceError):
    """The action is allowed, but only once the admin confirms what it implies."""


def activate(key: DkimKey, actor: User | None = None, *, confirm_unverified: bool = False,
             actor_label: str | None = None) -> DkimKey | None:
    """Switch to a prepared key: it signs from now on, the active one becomes `previous` (its
    record must stay published until it is retired). Returns the replaced key, if any.

    A key whose record is not verified would sign nothing: that needs `confirm_unverified`.
    """
    if key.state != "prepared":
        raise ServiceError(str(_l("Only a prepared key can be switched to.")), "state")
    if not (key.verified_at or key.forced) and not confirm_unverified:
        raise NeedsConfirmation(str(_l(
            "The record of %(selector)s was not found in DNS yet: after the switch this mail "
            "is not signed until it is. Publish it and check DNS first, or confirm.",
            selector=key.selector)), "confirm")
    owner = key.customer
    current = active_key(owner, key.domain)
    now = utcnow()
    if current is not None:
        current.state = "previous"
    key.state = "active"
    key.activated_at = now
    audit.record("dkim.switch", actor, "dkim_key", key.id,
                 before={"active": current.selector if current is not None else None},
                 after={**_owner_label(key), "active": key.selector,
                        "verified": key.verified_at is not None, "forced": bool(key.forced)},
                 customer_id=key.customer_id, actor_label=actor_label)
    db.session.commit()
    invalidate()
    return current


def set_forced(key: DkimKey, forced: bool, actor: User | None = None,
               actor_label: str | None = None) -> None:
    """Sign with a key whose record is not verified (an admin's call, e.g. a DNS the check
    cannot see), or stop doing so. Audited with a warning."""
    forced = bool(forced)
    if key.state == "retired":
        raise ServiceError(str(_l("This key is retired.")), "state")
    if bool(key.forced) == forced:
        return
    key.forced = forced
    audit.record("dkim.force", actor, "dkim_key", key.id, before={"forced": not forced},
                 after={**_owner_label(key), "forced": forced},
                 note=("WARNING: signing forced without a verified DNS record: receivers fail "
                       "DKIM if the record is not really published") if forced else None,
                 customer_id=key.customer_id, actor_label=actor_label)
    db.session.commit()
    invalidate()


def retire(key: DkimKey, actor: User | None = None, actor_label: str | None = None) -> None:
    """Retire a key (or discard a prepared one): it never signs again and its private halves
    are wiped; the record can then be removed from DNS. Audited."""
    if key.state == "retired":
        return
    before = key.state
    key.state = "retired"
    key.retired_at = utcnow()
    key.forced = False
    key.rsa_private_encrypted = None
    key.ed25519_private_encrypted = None
    audit.record("dkim.retire", actor, "dkim_key", key.id, before={"state": before},
                 after={**_owner_label(key), "state": "retired"},
                 customer_id=key.customer_id, actor_label=actor_label)
    db.session.commit()
    invalidate()


def rotate_encryption() -> tuple[int, list[str]]:
    """Re-encrypt every stored private key with the first credentials key (not committed):
    (how many keys, the selectors that no key can decrypt)."""
    rows = db.session.scalars(select(DkimKey).where(DkimKey.state != "retired")
                              .order_by(DkimKey.id)).all()
    count, broken = 0, []
    for key in rows:
        try:
            if key.rsa_private_encrypted:
                key.rsa_private_encrypted = credentials.rotate(key.rsa_private_encrypted)
            if key.ed25519_private_encrypted:
                key.ed25519_private_encrypted = credentials.rotate(key.ed25519_private_encrypted)
            count += 1
        except credentials.CredentialsError:
            broken.append(f"DKIM key {key.selector} of {key.domain}")
    return count, broken


# -- signing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    """A parsed private key ready to sign, with its d= and s=."""

    domain: bytes
    selector: bytes
    algorithm: bytes  # b"rsa-sha256" | b"ed25519-sha256"
    private: object


class _Table:
    """Which keys sign for (customer id or None, domain), read every REFRESH_SECONDS (one
    small query), with the parsed private keys cached by public key for the process."""

    def __init__(self):
        self.until = 0.0
        self.owners: dict[tuple[int | None, str], list[SigningKey]] = {}
        self.parsed: dict[tuple[str, str], object] = {}
        self.lock = threading.Lock()

    def lookup(self, customer_id: int | None, domain: str) -> list[SigningKey]:
        if time.monotonic() >= self.until:
            self.refresh()
        owners = self.owners
        return owners.get((customer_id, domain)) or owners.get((None, domain)) or []

    def refresh(self) -> None:
        table = DkimKey.__table__
        with db.engine.connect() as connection:
            rows = connection.execute(select(
                table.c.customer_id, table.c.domain, table.c.selector, table.c.forced,
                table.c.verified_at, table.c.rsa_public, table.c.rsa_private_encrypted,
                table.c.ed25519_selector, table.c.ed25519_verified_at, table.c.ed25519_public,
                table.c.ed25519_private_encrypted).where(table.c.state == "active")).all()
        owners: dict[tuple[int | None, str], list[SigningKey]] = {}
        for row in rows:
            keys = []
            halves = [("rsa", row.selector, row.rsa_public, row.rsa_private_encrypted,
                       row.verified_at)]
            if row.ed25519_selector:
                halves.append(("ed25519", row.ed25519_selector, row.ed25519_public,
                               row.ed25519_private_encrypted, row.ed25519_verified_at))
            for algorithm, selector, public, encrypted, verified in halves:
                if not (verified or row.forced) or not encrypted:
                    continue
                private = self._private(algorithm, public, encrypted, row.domain, selector)
                if private is not None:
                    keys.append(SigningKey(row.domain.encode("ascii"), selector.encode("ascii"),
                                           ALGORITHMS[algorithm], private))
            if keys:
                owners[(row.customer_id, row.domain)] = keys
        with self.lock:
            self.owners = owners
            self.until = time.monotonic() + REFRESH_SECONDS

    def _private(self, algorithm: str, public: str, encrypted: str, domain: str,
                 selector: str):
        cached = self.parsed.get((algorithm, public))
        if cached is not None:
            return cached
        try:
            plain = credentials.decrypt(encrypted)
        except credentials.CredentialsError:
            log.error("DKIM key %s of %s cannot be decrypted with POSTINO_CREDENTIALS_KEY "
                      "(changed without rotation?): its mail goes out unsigned",
                      selector, domain)
            return None
        if algorithm == "rsa":
            private = serialization.load_pem_private_key(plain.encode("ascii"), None)
        else:
            private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(plain))
        self.parsed[(algorithm, public)] = private
        return private


def _table() -> _Table:
    """This app's signing table (one per app and process)."""
    extensions = current_app.extensions
    table = extensions.get("postino.dkim")
    if table is None:
        table = extensions.setdefault("postino.dkim", _Table())
    return table


def invalidate() -> None:
    """Read the signing table again at the next message (after any change to the keys)."""
    _table().until = 0.0


def signing_keys(customer_id: int | None, domain: str) -> list[SigningKey]:
    """The keys that sign mail From `domain` for this customer (its own, else ours)."""
    return _table().lookup(customer_id, domain)


def sign(customer_id: int | None, from_address: str, data: bytes) -> bytes:
    """The message with a DKIM-Signature per key that signs for its From domain prepended;
    unchanged when none does."""
    domain = domain_of(from_address)
    if domain is None or not has_app_context():  # no app, no key store (pure compose tests)
        return data
    keys = signing_keys(customer_id, domain)
    if not keys:
        return data
    try:
        return sign_bytes(data, keys)
    except Exception:  # noqa: BLE001 - a signing bug must never stop the mail: it goes unsigned
        log.exception("DKIM signing of a message From %s failed: sent unsigned", domain)
        return data


def canonical_body(body: bytes) -> bytes:
    """The relaxed body canonicalisation (RFC 6376 §3.4.4): the very bytes of dkimpy's
    `Relaxed.canonicalize_body` (a test compares them), without its three regular expressions
    over the whole body, which cost ~1.4 ms on a 30 KB message: tabs become spaces, runs of
    spaces one space, a space before a line end goes, empty lines at the end go."""
    if body.count(b"\n") != body.count(b"\r\n"):  # bare LFs: lines as a verifier reads them
        body = b"\r\n".join(re.split(b"\r?\n", body))
    body = _SPACES.sub(b" ", body.replace(b"\t", b" ")).replace(b" \r\n", b"\r\n")
    return correct_empty_body(strip_trailing_lines(body))


def _header_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) of each header field of a CRLF header block, a folded field's lines
    kept in its value: what dkimpy's rfc822_parse gives, for the one header we built."""
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += line + b"\r\n"
        else:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError(f"not a header field: {line[:40]!r}")
            fields.append([name, value + b"\r\n"])
    return [(name, value) for name, value in fields]


def sign_bytes(data: bytes, keys: list[SigningKey], now: int | None = None) -> bytes:
    """Prepend one DKIM-Signature per key to a CRLF message (RFC 6376 §5; Ed25519 RFC 8463)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ValueError("a message needs a blank line between its header and its body")
    fields = _header_fields(data[:end])
    positions: dict[bytes, list[int]] = {}
    for index, (name, _value) in enumerate(fields):
        positions.setdefault(name.lower(), []).append(index)
    names = [name for name in SIGNED_HEADERS if name in positions] + [b"from"]
    # each name in h= takes the next instance from the bottom up (RFC 6376 §5.4.2); the
    # second "from" finds none, so a From added later breaks the signature
    picked = [fields[positions[name].pop()] for name in names if positions[name]]
    selected = _RELAXED.canonicalize_headers(picked)
    hashed = b"".join(name + b":" + value for name, value in selected)
    body_hash = base64.b64encode(hashlib.sha256(canonical_body(data[end + 4:])).digest())
    stamp = str(int(time.time()) if now is None else now).encode("ascii")
    out = []
    for key in keys:
        head = (b"v=1; a=" + key.algorithm + b"; c=relaxed/relaxed;\r\n\td=" + key.domain
                + b"; s=" + key.selector + b"; t=" + stamp + b";\r\n\th=" + b":".join(names)
                + b";\r\n\tbh=" + body_hash + b";\r\n\tb=")
        [(_name, value)] = _RELAXED.canonicalize_headers([(b"dkim-signature", b" " + head)])
        signed = hashed + b"dkim-signature:" + value.rstrip()
        if key.algorithm == b"rsa-sha256":
            signature = key.private.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:  # RFC 8463: Ed25519 signs the SHA-256 of the canonical header
            signature = key.private.sign(hashlib.sha256(signed).digest())
        encoded = base64.b64encode(signature)
        folded = b"\r\n\t".join(encoded[i:i + 72] for i in range(0, len(encoded), 72))
        out.append(b"DKIM-Signature: " + head + folded + b"\r\n")
    return b"".join(out) + data
