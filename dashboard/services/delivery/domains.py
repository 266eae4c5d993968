"""A customer's sending domain as a whole: the DNS check of its From domain (SPF, DMARC) and
its DKIM keys' records, kept on the customer."""
from __future__ import annotations

from ...extensions import db
from ...models import Customer, utcnow
from . import dkim_keys, dns_check


def check_customer(customer: Customer, commit: bool = True) -> dict | None:
    """Check the customer's From domain (and its DKIM keys' records) and keep the result on
    the customer."""
    if not customer.from_address:
        return None
    result = dns_check.check_domain(customer.from_address.rpartition("@")[2])
    result["dkim"] = dkim_keys.check_customer_keys(customer)
    if result["verdict"] != "dns_error":
        result["verdict"] = dns_check.verdict(result["spf"], result["dmarc"], result["dkim"])
    customer.dns_check = result
    customer.dns_checked_at = utcnow()
    if commit:
        db.session.commit()
    return result
