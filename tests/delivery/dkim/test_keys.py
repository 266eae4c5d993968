"""A key's life: generated with its selector, switched to in a rotation, kept until retired,
re-encrypted with the credentials key; every step audited."""
import pytest
from cryptography.fernet import Fernet

from dashboard.extensions import db
from dashboard.models import AuditEntry, DkimKey, utcnow
from dashboard.notifications import CATALOG
from dashboard.services import ServiceError
from dashboard.services.delivery import compose, credentials, dkim_keys
from dashboard.services.messages import intake

from .conftest import CUSTOMER_DOMAIN, publish


@pytest.fixture
def customer(make_customer):
    """A custom_from customer on CUSTOMER_DOMAIN."""
    customer, _ = make_customer(sending_mode="custom_from",
                                from_address=f"ordini@{CUSTOMER_DOMAIN}")
    return customer


def _signed_with(customer) -> list[str]:
    """The selectors that sign this customer's next message (s= of each signature)."""
    [message] = intake.enqueue(customer, "order_closed", "buyer@example.com",
                                 reference="ORD-1", data=CATALOG["order_closed"]["sample"])
    data = compose.build_bytes(message)
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return [part.strip()[2:] for part in head.replace("\r\n\t", " ").split(";")
            if part.strip().startswith("s=")]


def _actions() -> list[str]:
    return [e.action for e in db.session.query(AuditEntry).order_by(AuditEntry.id)
            if e.action.startswith("dkim.")]


def test_the_default_selector_is_postino_and_the_month(customer):
    """postino<yyyymm>; a second key the same month gets -2; the first key is active."""
    first = dkim_keys.generate(customer)
    month = f"{utcnow():%Y%m}"
    assert first.selector == f"postino{month}" and first.state == "active"
    assert first.domain == CUSTOMER_DOMAIN and first.ed25519_selector is None
    second = dkim_keys.generate(customer, ed25519=True)
    assert second.selector == f"postino{month}-2" and second.state == "prepared"
    assert second.ed25519_selector == f"postino{month}-2-ed25519"


@pytest.mark.parametrize("selector", ["Bad selector", "-x", "a" * 49, "x.y", "sel_1"])
def test_an_invalid_selector_is_refused_and_nothing_is_stored(customer, selector):
    """A selector is a DNS label we can suffix: letters, digits, hyphens, at most 48."""
    with pytest.raises(ServiceError) as error:
        dkim_keys.generate(customer, selector=selector)
    assert error.value.field == "selector"
    db.session.rollback()
    assert db.session.query(DkimKey).count() == 0


def test_a_selector_already_used_on_the_domain_is_refused(customer, make_customer):
    """Even by another customer: one name in DNS, one key."""
    dkim_keys.generate(customer, selector="shared")
    other, _ = make_customer(sending_mode="custom_from", from_address=f"info@{CUSTOMER_DOMAIN}")
    with pytest.raises(ServiceError, match="already used"):
        dkim_keys.generate(other, selector="shared")


def test_a_customer_without_a_from_address_cannot_have_a_key(make_customer):
    """The key lives on the From domain: no address, no key."""
    customer, _ = make_customer()
    with pytest.raises(ServiceError, match="From address"):
        dkim_keys.generate(customer)


def test_our_own_keys_are_only_for_our_senders_domains(app):
    """Keys without a customer are for the domains of our senders (Settings)."""
    assert dkim_keys.own_domains() == ["postino.example.com"]
    with pytest.raises(ServiceError, match="our senders"):
        dkim_keys.generate(None, domain="someone-else.example")
    key = dkim_keys.generate(None, domain="postino.example.com")
    assert key.customer_id is None and key.state == "active"


def test_rotation_prepares_publishes_switches_and_retires(customer, zone):
    """The new key is published and verified before the switch; the old one stays, still
    published, until the admin retires it (its private key then wiped); all audited."""
    old = dkim_keys.generate(customer, selector="old")
    publish(zone, old)
    dkim_keys.check(old)
    assert _signed_with(customer) == ["old"]

    new = dkim_keys.generate(customer, selector="new")
    assert new.state == "prepared"
    assert _signed_with(customer) == ["old"]  # prepared keys never sign
    with pytest.raises(dkim_keys.NeedsConfirmation):
        dkim_keys.activate(new)  # its record is not published yet
    db.session.rollback()
    publish(zone, new)
    dkim_keys.check(new)
    replaced = dkim_keys.activate(new)
    assert replaced.id == old.id
    assert (old.state, new.state) == ("previous", "active")
    assert _signed_with(customer) == ["new"]
    assert old.rsa_private_encrypted  # kept until retired

    dkim_keys.retire(old)
    assert old.state == "retired" and old.retired_at is not None
    assert old.rsa_private_encrypted is None and old.ed25519_private_encrypted is None
    assert _signed_with(customer) == ["new"]
    assert _actions() == ["dkim.generate", "dkim.verified", "dkim.generate", "dkim.verified",
                          "dkim.switch", "dkim.retire"]


def test_switching_to_an_unverified_key_needs_a_confirmation(customer, zone):
    """Confirmed, the switch happens, and mail goes unsigned until the record is found."""
    old = dkim_keys.generate(customer, selector="old")
    publish(zone, old)
    dkim_keys.check(old)
    new = dkim_keys.generate(customer, selector="new")
    dkim_keys.activate(new, confirm_unverified=True)
    assert new.state == "active" and _signed_with(customer) == []
    publish(zone, new)
    dkim_keys.check(new)
    assert _signed_with(customer) == ["new"]


def test_only_one_prepared_key_at_a_time(customer):
    """A second prepared key would make the rotation ambiguous: discard or switch first."""
    dkim_keys.generate(customer)
    prepared = dkim_keys.generate(customer)
    with pytest.raises(ServiceError, match="prepared key"):
        dkim_keys.generate(customer)
    db.session.rollback()
    dkim_keys.retire(prepared)  # discarded
    assert dkim_keys.generate(customer).state == "prepared"


def test_retiring_the_active_key_stops_signing(customer, zone):
    """Retiring the key that signs: mail goes out unsigned from then on."""
    key = dkim_keys.generate(customer)
    publish(zone, key)
    dkim_keys.check(key)
    assert _signed_with(customer) == [key.selector]
    dkim_keys.retire(key)
    assert _signed_with(customer) == []


def test_rotate_credentials_re_encrypts_dkim_keys(app, customer, zone, runner, monkeypatch):
    """New credentials key first, rotate, drop the old key: the DKIM key still signs."""
    key = dkim_keys.generate(customer, ed25519=True)
    publish(zone, key)
    dkim_keys.check(key)
    old_token = key.rsa_private_encrypted
    old_key = app.config["POSTINO_CREDENTIALS_KEY"]
    new_key = Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", f"{new_key},{old_key}")
    result = runner.invoke(args=["rotate-credentials"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored secrets" in result.output
    db.session.expire_all()
    key = db.session.get(DkimKey, key.id)
    assert key.rsa_private_encrypted != old_token
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", new_key)
    assert credentials.decrypt(key.rsa_private_encrypted).startswith("-----BEGIN PRIVATE KEY")
    dkim_keys._table().parsed.clear()  # a fresh process: decrypts with the new key only
    dkim_keys.invalidate()
    assert _signed_with(customer) == [key.selector, key.ed25519_selector]


def test_a_key_no_credentials_key_can_decrypt_fails_rotation_and_changes_nothing(
        app, customer, runner, monkeypatch):
    """The rotation is all or nothing, naming the DKIM key it cannot read."""
    key = dkim_keys.generate(customer)
    token = key.rsa_private_encrypted
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", Fernet.generate_key().decode())
    result = runner.invoke(args=["rotate-credentials"])
    assert result.exit_code == 1 and f"DKIM key {key.selector}" in result.output
    db.session.expire_all()
    assert db.session.get(DkimKey, key.id).rsa_private_encrypted == token


def test_an_undecryptable_key_leaves_mail_unsigned_and_says_why(app, customer, zone,
                                                                monkeypatch, caplog):
    """The credentials key changed without rotation: mail goes out unsigned (never broken),
    and the log names the key (never its content)."""
    key = dkim_keys.generate(customer)
    publish(zone, key)
    dkim_keys.check(key)
    dkim_keys._table().parsed.clear()
    monkeypatch.setitem(app.config, "POSTINO_CREDENTIALS_KEY", Fernet.generate_key().decode())
    assert _signed_with(customer) == []
    assert f"DKIM key {key.selector} of {CUSTOMER_DOMAIN} cannot be decrypted" in caplog.text


def test_the_hourly_job_verifies_a_record_the_customer_published(app, customer, zone):
    """No one presses Check DNS: the dkim_check job finds the record and signing starts."""
    from dashboard.worker import scheduler

    assert {"dkim_check"} <= {d["id"] for d in scheduler.job_definitions(app)}
    key = dkim_keys.generate(customer)
    assert _signed_with(customer) == []
    publish(zone, key)
    scheduler.run_now(app, "dkim_check")
    db.session.expire_all()
    assert db.session.get(DkimKey, key.id).verified_at is not None
    assert _signed_with(customer) == [key.selector]
    entry = db.session.query(AuditEntry).filter_by(action="dkim.verified").one()
    assert entry.actor_label == "worker"
