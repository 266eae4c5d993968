"""Email addresses and header values: normalised and checked once, here."""
from __future__ import annotations

import unicodedata
from email.headerregistry import Address
from email.utils import formataddr, parseaddr
from functools import lru_cache

import idna
from email_validator import EmailNotValidError, validate_email

from .services import ServiceError

FORBIDDEN = ("\r", "\n", "\x00")


def check_header_value(value: str, field: str) -> str:
    """Refuse CR, LF and NUL in anything that ends up in a header."""
    if any(ch in value for ch in FORBIDDEN):
        raise ServiceError("line breaks are not allowed here", field)
    return value


def normalise(address: str, field: str = "to") -> str:
    """Trim, lowercase and check the syntax of an address (no DNS lookups): its stored form,
    the same as `canonical` gives (an international domain in Unicode, whichever way it
    was written)."""
    if not isinstance(address, str):
        raise ServiceError("an email address must be a string", field)
    check_header_value(address, field)
    address = address.strip()
    if len(address) > 320:
        raise ServiceError("the address is too long", field)
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ServiceError(f"invalid address: {exc}", field) from None
    return result.normalized.lower()


def parse_sender(value: str, field: str = "from") -> tuple[str, str]:
    """Split 'Name <addr>' into a checked (name, address)."""
    check_header_value(value, field)
    name, addr = parseaddr(value)
    return name.strip(), normalise(addr, field)


def format_sender(name: str | None, address: str) -> str:
    """'Name <addr>' with the name encoded when needed. An international address is kept
    as it is (formataddr refuses it): the message's headers are written from it when sent."""
    if not address.isascii():
        return str(header_address(name, address))
    return formataddr((name or "", address))


def header_address(name: str | None, address: str) -> Address:
    """An email.headerregistry Address, for building messages without string pasting."""
    local, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def domain_of(address: str) -> str:
    """The domain part of an address."""
    return address.rpartition("@")[2].lower()


# -- international addresses ---------------------------------------------------------------
# One address has one stored form: lowercased, NFC, the domain in Unicode (U-labels), which
# is what email-validator's `normalized` gives at ingest. So 'info@xn--mller-kva.de' and
# 'Info@Müller.de' are the same message recipient, suppression entry, bounce report and
# search. What goes on the wire is derived from it at send time (`envelope`): the domain
# always in A-labels (IDNA 2008 with UTS 46 mapping, as email-validator checks it), the
# local part as it is, which needs SMTPUTF8 (RFC 6531) when it is not ASCII.


def canonical(address: str) -> str:
    """The stored form of an address, or of part of one (a search term): lowercased and
    NFC, domain labels written as 'xn--…' decoded to Unicode. Plain ASCII is only lowercased."""
    lowered = address.lower()
    if lowered.isascii() and "xn--" not in lowered:
        return lowered
    local, at, domain = lowered.rpartition("@")
    labels = []
    for label in domain.split("."):
        if label.startswith("xn--"):
            try:
                label = idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                pass  # not a valid A-label: compared as written
        labels.append(label)
    return unicodedata.normalize("NFC", local + at + ".".join(labels))


def envelope(address: str) -> str:
    """The address as MAIL FROM and RCPT TO carry it (and as headers do without SMTPUTF8):
    the domain in A-labels (punycode), the local part unchanged. ASCII comes back as it is;
    a ValueError says why a domain cannot be written in A-labels."""
    if address.isascii():
        return address
    return _envelope(address)


@lru_cache(maxsize=4096)
def _envelope(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """A domain name in A-labels (IDNA 2008, UTS 46 mapping), as DNS and SMTP want it; a
    ValueError says why it cannot be written so. ASCII comes back as it is."""
    if domain.isascii():
        return domain
    try:
        # label by label, so that an ASCII label IDNA would refuse (_dmarc) stays as it is
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii")
                        for label in mapped.split("."))
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{domain!r} is not a valid international domain name: {exc}") \
            from None


def needs_smtputf8(address: str) -> bool:
    """True when the local part is not ASCII: only a server offering SMTPUTF8 takes it."""
    return not address.isascii() and not address.rpartition("@")[0].isascii()
