"""Email addresses and header values: normalised and checked once, here."""
from __future__ import annotations

from email.headerregistry import Address
from email.utils import formataddr, parseaddr

from email_validator import EmailNotValidError, validate_email

from .services import ServiceError

FORBIDDEN = ("\r", "\n", "\x00")


def check_header_value(value: str, field: str) -> str:
    """Refuse CR, LF and NUL in anything that ends up in a header."""
    if any(ch in value for ch in FORBIDDEN):
        raise ServiceError("line breaks are not allowed here", field)
    return value


def normalise(address: str, field: str = "to") -> str:
    """Trim, lowercase and check the syntax of an address (no DNS lookups)."""
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
    """'Name <addr>' with the name encoded when needed."""
    return formataddr((name or "", address))


def header_address(name: str | None, address: str) -> Address:
    """An email.headerregistry Address, for building messages without string pasting."""
    local, _, domain = address.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def domain_of(address: str) -> str:
    """The domain part of an address."""
    return address.rpartition("@")[2].lower()
