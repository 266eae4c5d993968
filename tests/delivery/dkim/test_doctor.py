"""The doctor's cause (b) for custom_from customers: DKIM not published, DMARC fails, or DMARC
passes with DKIM, with the link to the DKIM section of the customer's page as the fix."""
import pytest

from dashboard.extensions import db
from dashboard.models import Message
from dashboard.notifications import CATALOG
from dashboard.services.delivery import dkim_keys, domains
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake
from dashboard.services.operations import doctor

from .conftest import CUSTOMER_DOMAIN, publish


@pytest.fixture
def customer(make_customer, zone, app, monkeypatch):
    """A custom_from customer whose domain refuses our relay in SPF and says DMARC p=reject."""
    monkeypatch.setitem(app.config, "POSTINO_RELAY_IPS", "192.0.2.25")
    zone.set(CUSTOMER_DOMAIN, "v=spf1 ip4:198.51.100.7 -all")
    zone.set(f"_dmarc.{CUSTOMER_DOMAIN}", "v=DMARC1; p=reject")
    customer, _ = make_customer(sending_mode="custom_from",
                                from_address=f"ordini@{CUSTOMER_DOMAIN}")
    return customer


def _notify(customer, to="anna@example.com"):
    """An order_closed message swept through our relay; the message as stored after it."""
    [message] = intake.enqueue(customer, "order_closed", to, reference="ORD-7",
                                 data=CATALOG["order_closed"]["sample"])
    sweep()
    return db.session.get(Message, message.id)


def _spam(app, address: str):
    """The doctor's cause (b) for an address, inside a request (so actions carry URLs)."""
    with app.test_request_context(headers={"Accept-Language": "en"}):
        return doctor.diagnose(address).verdict("spam")


def _links(verdict) -> list[str]:
    return [a.url for a in verdict.actions if a.kind == "link"]


def test_dkim_not_published_is_named_with_the_fix(app, customer, relay):
    """Accepted mail, no key: 'DKIM not published' and 'DMARC fails', with the link to the
    customer's DKIM section."""
    domains.check_customer(customer)
    assert _notify(customer).status == "sent"
    verdict = _spam(app, "anna@example.com")
    assert verdict.colour == "red"
    text = " ".join(verdict.evidence)
    assert "DKIM not published: no DKIM key of firmato.example" in text
    assert "DMARC fails for mail From firmato.example" in text and "refuse it" in text
    assert "Fix: generate a DKIM key" in text
    assert f"/customers/{customer.code}#dkim" in _links(verdict)


def test_a_missing_record_is_named(app, customer, relay):
    """A key whose record is not published: the record's name, missing."""
    key = dkim_keys.generate(customer)
    domains.check_customer(customer)
    _notify(customer)
    verdict = _spam(app, "anna@example.com")
    text = " ".join(verdict.evidence)
    assert f"the record {key.selector}._domainkey.firmato.example is missing" in text
    assert "Fix: have the customer publish the record" in text


def test_mail_refused_for_dmarc_is_cause_b_with_the_fix(app, customer, fault_server):
    """Nothing accepted (the receiver refused it) and the domain says p=reject without a
    verified key: cause (b) is red, 'DMARC fails', with the fix."""
    domains.check_customer(customer)
    message = _notify(customer, to="rifiuto@example.com")
    assert message.status == "failed"
    verdict = _spam(app, "rifiuto@example.com")
    assert verdict.colour == "red"
    assert verdict.title == "DMARC fails: firmato.example tells receivers to refuse our mail"
    assert any("DKIM not published" in line for line in verdict.evidence)
    assert f"/customers/{customer.code}#dkim" in _links(verdict)


def test_a_verified_key_says_dmarc_passes_with_dkim(app, customer, relay, zone):
    """With the record published and verified, (b) no longer blames the domain's policy."""
    key = dkim_keys.generate(customer)
    publish(zone, key)
    domains.check_customer(customer)
    _notify(customer)
    verdict = _spam(app, "anna@example.com")
    assert verdict.colour == "amber"  # accepted: look in the spam folder, as before
    assert any(f"DMARC passes with DKIM: mail From firmato.example is signed with the "
               f"customer's key {key.selector}" in line for line in verdict.evidence)
    assert not any("DMARC fails" in line for line in verdict.evidence)


@pytest.fixture
def fault_server(app):
    """Our relay points at a server that refuses rifiuto@example.com at RCPT (550)."""
    from tests.smtp_servers import start_server

    server = start_server(faults={"rifiuto@example.com": "550"})
    keys = ("MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME",
            "MAIL_PASSWORD")
    saved = {k: app.config[k] for k in keys}
    app.config.update(MAIL_SERVER=server.host, MAIL_PORT=server.port, MAIL_USE_TLS=False,
                      MAIL_USE_SSL=False, MAIL_USERNAME=None, MAIL_PASSWORD=None)
    yield server
    app.config.update(saved)
    server.stop()
