"""The DNS check of custom_from, against a real DNS server (dnslib) serving a test zone."""
import time

import pytest

from dashboard.extensions import db
from dashboard.services.delivery import dns_check

from .conftest import RELAY_IP

BOUNCE = "bounces.postino.example.com"


@pytest.fixture
def check(dns_server):
    """check(domain) -> result, looked up on the test zone with our relay at RELAY_IP."""

    def _check(domain: str, relay: str = RELAY_IP):
        return dns_check.check(domain, relay, BOUNCE, [dns_server], timeout=2)

    return _check


def test_spf_pass_via_include_will_pass(check):
    """An include that authorises the relay's network passes, with DMARC p=none."""
    result = check("pass.example")
    assert result["verdict"] == "pass"
    assert result["spf"]["result"] == "pass"
    assert result["spf"]["detail"] == "include:_spf.relay.example"
    assert result["spf"]["record"] == "v=spf1 include:_spf.relay.example -all"
    assert result["dmarc"]["policy"] == "none"
    assert result["dmarc"]["record"].startswith("v=DMARC1")


def test_a_relay_network_outside_the_include_does_not_pass(check):
    """The same record does not authorise another relay network (softfail in the include
    does not match, so the outer -all decides)."""
    result = check("pass.example", relay="203.0.113.0/28")
    assert result["spf"]["result"] == "fail"
    assert result["verdict"] == "risk"


def test_hard_fail_with_dmarc_reject_will_be_rejected(check):
    """-all without our relay and p=reject: receivers are told to refuse the mail."""
    result = check("reject.example")
    assert result["spf"]["result"] == "fail"
    assert result["dmarc"]["policy"] == "reject"
    assert result["dmarc"]["alignment_possible"] is False
    assert result["verdict"] == "reject"


def test_softfail_with_quarantine_is_at_risk(check):
    """~all (mx does not cover the relay) and p=quarantine: likely spam."""
    result = check("soft.example")
    assert result["spf"]["result"] == "softfail"
    assert result["dmarc"]["policy"] == "quarantine"
    assert result["verdict"] == "risk"


def test_no_spf_record_is_at_risk(check):
    """Without SPF nothing authorises our relay."""
    result = check("nospf.example")
    assert result["spf"]["result"] == "none" and result["spf"]["record"] is None
    assert result["verdict"] == "risk"


def test_no_dmarc_record_with_spf_pass_through_redirect_and_a(check):
    """redirect= and a: are followed; without DMARC an SPF pass is a pass."""
    result = check("nodmarc.example")
    assert result["spf"]["result"] == "pass"
    assert result["dmarc"]["record"] is None and result["dmarc"]["policy"] is None
    assert result["verdict"] == "pass"


def test_an_include_loop_is_a_permanent_error(check):
    """A loop of includes is detected, not followed forever."""
    result = check("loop.example")
    assert result["spf"]["result"] == "permerror"
    assert result["spf"]["code"] == "loop"
    assert result["verdict"] == "risk"


def test_more_than_ten_lookups_is_a_permanent_error(check):
    """The RFC 7208 limit of 10 DNS-querying terms is enforced."""
    result = check("many.example")
    assert result["spf"]["result"] == "permerror"
    assert result["spf"]["code"] == "too_many_lookups"


def test_relaxed_alignment_with_our_own_organisation_can_pass(check):
    """A From domain of the same organisation as the bounce domain aligns (relaxed)."""
    result = check("postino.example.com")
    assert result["dmarc"]["alignment_possible"] is True
    assert result["verdict"] == "pass"


def test_a_dns_timeout_is_reported_as_a_failure_never_as_pass(silent_dns_server):
    """A nameserver that never answers gives dns_error within the timeout."""
    started = time.monotonic()
    result = dns_check.check("pass.example", RELAY_IP, BOUNCE, [silent_dns_server], timeout=0.3)
    assert result["verdict"] == "dns_error"
    assert result["errors"] and "within" in result["errors"][0]
    assert time.monotonic() - started < 3


def test_check_dns_button_shows_the_verdict_and_records(admin_client, make_customer,
                                                        dns_config):
    """The customer page's Check DNS answers the verdict in words, with the records."""
    customer, _ = make_customer(sending_mode="custom_from", from_address="info@reject.example")
    response = admin_client.post(f"/customers/{customer.code}/dns-check",
                                 headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Will be rejected" in body or "Sarà rifiutata" in body
    assert "v=spf1 ip4:198.51.100.7 -all" in body and "p=reject" in body
    db.session.refresh(customer)
    assert customer.dns_check["verdict"] == "reject" and customer.dns_checked_at


def test_saving_custom_from_runs_the_dns_check(admin_client, make_customer, dns_config):
    """Saving custom_from checks the From domain and stores the verdict."""
    customer, _ = make_customer()
    response = admin_client.post(f"/customers/{customer.code}", data={
        "sending_mode": "custom_from", "from_address": "ordini@pass.example",
        "from_name": "Ordini", "minutes": "15"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    db.session.refresh(customer)
    assert customer.sending_mode == "custom_from"
    assert customer.dns_check["verdict"] == "pass"
    assert "v=spf1 include:_spf.relay.example -all" in response.get_data(as_text=True)


def test_check_dns_timeout_shows_a_dns_failure(admin_client, make_customer, app,
                                               silent_dns_server):
    """In the page, a DNS timeout is shown as a failed check, never as a pass."""
    app.config.update(POSTINO_DNS_NAMESERVERS=silent_dns_server, POSTINO_DNS_TIMEOUT=0.3)
    try:
        customer, _ = make_customer(sending_mode="custom_from", from_address="a@pass.example")
        response = admin_client.post(f"/customers/{customer.code}/dns-check",
                                     headers={"HX-Request": "true"})
    finally:
        app.config.update(POSTINO_DNS_NAMESERVERS="", POSTINO_DNS_TIMEOUT=3)
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "verdict-amber" in body and "Will pass" not in body
    db.session.refresh(customer)
    assert customer.dns_check["verdict"] == "dns_error"


def test_check_dns_without_a_valid_from_address_asks_for_one(admin_client, make_customer):
    """No lookup for an empty or malformed address: 422 with the reason."""
    customer, _ = make_customer(sending_mode="custom_from")
    response = admin_client.post(f"/customers/{customer.code}/dns-check",
                                 data={"from_address": "x@"}, headers={"HX-Request": "true"})
    assert response.status_code == 422 and 'class="field-error"' in response.get_data(as_text=True)
