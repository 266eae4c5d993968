"""The DKIM section of a customer's page and of Settings: generate, see the record, check DNS,
rotate; support reads, only admins act; errors come back beside the field."""
import html
import re

import pytest

from dashboard.extensions import db
from dashboard.models import DkimKey
from dashboard.services.delivery import credentials, dkim_keys

from .conftest import CUSTOMER_DOMAIN, publish

HX = {"HX-Request": "true"}


@pytest.fixture
def customer(make_customer):
    """A custom_from customer on CUSTOMER_DOMAIN."""
    customer, _ = make_customer(sending_mode="custom_from",
                                from_address=f"ordini@{CUSTOMER_DOMAIN}")
    return customer


def test_an_admin_generates_a_key_and_sees_the_record_to_publish(admin_client, customer):
    """Name, TXT value, its 255-byte strings and copy buttons; never the private key."""
    response = admin_client.post(f"/dkim/customers/{customer.code}/keys",
                                 data={"selector": "", "ed25519": "1"}, headers=HX)
    assert response.status_code == 200
    body = html.unescape(response.get_data(as_text=True))
    key = db.session.query(DkimKey).one()
    rsa_record, ed_record = dkim_keys.records(key)
    assert f"{key.selector}._domainkey.{CUSTOMER_DOMAIN}" in body
    assert rsa_record.value in body and ed_record.value in body
    for part in rsa_record.strings:
        assert f'"{part}"' in body
    assert len(re.findall(r'data-copy="dkim-', body)) == 6  # name, value, strings × 2
    assert "Generated" in body or "generated" in body
    pem = credentials.decrypt(key.rsa_private_encrypted)
    assert pem.splitlines()[1] not in body
    assert credentials.decrypt(key.ed25519_private_encrypted) not in body


def test_the_customer_page_shows_the_section_and_support_only_reads(admin_client, support_client,
                                                                   customer):
    """Support sees the record to send the customer, without any button that acts."""
    key = dkim_keys.generate(customer)
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert 'id="dkim"' in page and "Generate DKIM key" in page and "Retire" in page
    page = support_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert dkim_keys.records(key)[0].value in page
    assert "Generate DKIM key" not in page and "dkim-actions" not in page
    denied = support_client.post(f"/dkim/customers/{customer.code}/keys", headers=HX)
    assert denied.status_code == 403


def test_an_invalid_selector_comes_back_beside_the_field(admin_client, customer):
    """422, the error next to the field, the typed value kept, nothing stored."""
    response = admin_client.post(f"/dkim/customers/{customer.code}/keys",
                                 data={"selector": "Not valid!"}, headers=HX)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'class="field-error"' in body and 'value="Not valid!"' in body
    assert db.session.query(DkimKey).count() == 0


def test_check_dns_verifies_and_says_dmarc_will_pass(admin_client, customer, zone):
    """The button looks the record up now: verified, signing, and the verdict in words."""
    zone.set(f"_dmarc.{CUSTOMER_DOMAIN}", "v=DMARC1; p=reject")
    key = dkim_keys.generate(customer)
    first = admin_client.post(f"/dkim/keys/{key.id}/check", headers=HX).get_data(as_text=True)
    assert "Record missing" in first and "refuse mail" in first
    publish(zone, key)
    body = admin_client.post(f"/dkim/keys/{key.id}/check", headers=HX).get_data(as_text=True)
    assert "DMARC will pass with DKIM" in body and "p=reject" in body
    assert "signing" in body
    db.session.refresh(key)
    assert key.verified_at is not None


def test_the_rotation_in_the_page(admin_client, customer, zone):
    """Prepare, switch (an unverified key asks to confirm), then retire the previous key."""
    old = dkim_keys.generate(customer, selector="old")
    publish(zone, old)
    dkim_keys.check(old)
    body = admin_client.post(f"/dkim/customers/{customer.code}/keys",
                             data={"selector": "new"}, headers=HX).get_data(as_text=True)
    assert "prepared" in body and "Switch to this key" in body
    new = db.session.query(DkimKey).filter_by(selector="new").one()
    response = admin_client.post(f"/dkim/keys/{new.id}/switch", headers=HX)
    assert response.status_code == 422 and "Switch anyway" in response.get_data(as_text=True)
    db.session.refresh(new)
    assert new.state == "prepared"
    response = admin_client.post(f"/dkim/keys/{new.id}/switch", data={"confirm": "1"}, headers=HX)
    assert response.status_code == 200 and "Keep the record of old published" in \
        response.get_data(as_text=True)
    db.session.refresh(old)
    assert old.state == "previous"
    body = admin_client.post(f"/dkim/keys/{old.id}/retire", headers=HX).get_data(as_text=True)
    assert "retired" in body and "Retired keys (1)" in body
    db.session.refresh(old)
    assert old.state == "retired" and old.rsa_private_encrypted is None


def test_force_signing_asks_for_a_confirmation_in_the_page(admin_client, customer):
    """The force button carries a confirmation; pressing it forces (audited in the service)."""
    key = dkim_keys.generate(customer)
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "Force signing" in page and "although its record was not found" in page
    body = admin_client.post(f"/dkim/keys/{key.id}/force", data={"forced": "1"},
                             headers=HX).get_data(as_text=True)
    assert "Stop forcing" in body and "forced by an administrator" in body


def test_without_htmx_an_action_returns_to_the_page_with_a_message(admin_client, customer):
    """A plain form post (no JavaScript) redirects to the section with the outcome flashed."""
    response = admin_client.post(f"/dkim/customers/{customer.code}/keys", data={"selector": ""})
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/customers/{customer.code}#dkim")
    assert db.session.query(DkimKey).count() == 1


def test_a_customer_without_a_from_address_is_told_to_set_one(admin_client, make_customer):
    """No From address: no generate form, the reason instead."""
    customer, _ = make_customer()
    page = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "Set the customer's From address first" in page
    assert "Generate DKIM key" not in page


def test_settings_has_our_own_senders_keys(admin_client, zone):
    """Settings: a key for our sender's domain, with its record; a foreign domain refused."""
    page = admin_client.get("/settings/").get_data(as_text=True)
    assert "DKIM signing of our senders" in page and "postino.example.com" in page
    refused = admin_client.post("/dkim/own/keys", data={"domain": "evil.example"}, headers=HX)
    assert refused.status_code == 422 and "our senders" in refused.get_data(as_text=True)
    body = admin_client.post("/dkim/own/keys", data={"domain": "postino.example.com"},
                             headers=HX).get_data(as_text=True)
    key = db.session.query(DkimKey).one()
    assert key.customer_id is None
    assert f"{key.selector}._domainkey.postino.example.com" in body


def test_the_section_speaks_italian(app, make_user, login, customer, zone):
    """An Italian admin reads the verdict and the buttons in Italian."""
    client = login(app.test_client(), make_user("admin", language="it"))
    zone.set(f"_dmarc.{CUSTOMER_DOMAIN}", "v=DMARC1; p=quarantine")
    key = dkim_keys.generate(customer)
    publish(zone, key)
    body = client.post(f"/dkim/keys/{key.id}/check", headers=HX).get_data(as_text=True)
    assert "Il DMARC passerà grazie al DKIM" in body
    assert "Copia" in body and "Controlla DNS" in body


def test_the_dns_check_of_the_customer_mentions_its_dkim_key(admin_client, customer, zone,
                                                             monkeypatch, app):
    """Check DNS of the settings form: the DKIM line, and the DKIM section refreshes itself."""
    monkeypatch.setitem(app.config, "POSTINO_RELAY_IPS", "192.0.2.25")
    zone.set(CUSTOMER_DOMAIN, "v=spf1 -all")
    zone.set(f"_dmarc.{CUSTOMER_DOMAIN}", "v=DMARC1; p=reject")
    key = dkim_keys.generate(customer)
    publish(zone, key)
    response = admin_client.post(f"/customers/{customer.code}/dns-check", headers=HX)
    body = html.unescape(response.get_data(as_text=True))
    assert "Will pass" in body and "we sign with the customer's key" in body
    assert "dns-checked" in response.headers["HX-Trigger"]
