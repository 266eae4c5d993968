"""The DNS check of a DKIM key against a real DNS server (dnslib): record missing, record
differs, the right record under each DMARC policy, and what it changes in the customer's
custom_from DNS verdict."""
import pytest

from dashboard.extensions import db
from dashboard.models import AuditEntry
from dashboard.services.delivery import dkim_keys, domains

from .conftest import publish


@pytest.fixture
def key_for(make_customer):
    """key_for(domain) -> a custom_from customer's freshly generated key on `domain`."""

    def _make(domain: str, **options):
        customer, _ = make_customer(sending_mode="custom_from", from_address=f"info@{domain}")
        return dkim_keys.generate(customer, **options)

    return _make


def test_record_missing(key_for, zone):
    """Nothing at <selector>._domainkey.<domain>: missing, not verified, nothing signs."""
    zone.set("_dmarc.missing.example", "v=DMARC1; p=reject")
    key = key_for("missing.example")
    result = dkim_keys.check(key)
    assert result["verdict"] == "missing"
    assert result["records"]["rsa"]["name"] == f"{key.selector}._domainkey.missing.example"
    assert result["dmarc"]["policy"] == "reject"
    assert key.verified_at is None and not dkim_keys.is_signing(key)


@pytest.mark.parametrize("published, detail", [
    ("other", "other_key"),
    ("v=DKIM1; k=rsa; p=", "revoked"),
    ("ed25519", "other_algorithm"),
])
def test_record_differs(key_for, zone, published, detail):
    """A record that is not ours (another key, a revoked one, another algorithm) differs."""
    key = key_for("wrong.example")
    other = key_for("other.example")
    values = {"other": dkim_keys.record_value("rsa", other.rsa_public),
              "ed25519": dkim_keys.record_value("ed25519", key.rsa_public)}
    zone.set(f"{key.selector}._domainkey.wrong.example", values.get(published, published))
    result = dkim_keys.check(key)
    assert result["verdict"] == "differs"
    assert result["records"]["rsa"]["detail"] == detail
    assert result["records"]["rsa"]["record"]
    assert key.verified_at is None


def test_two_key_records_at_one_name_differ(key_for, zone):
    """Ours plus another: receivers may pick either, so it is not verified."""
    key = key_for("two.example")
    other = key_for("two-other.example")
    zone.set(f"{key.selector}._domainkey.two.example",
             dkim_keys.record_value("rsa", key.rsa_public),
             dkim_keys.record_value("rsa", other.rsa_public))
    result = dkim_keys.check(key)
    assert result["verdict"] == "differs" and result["records"]["rsa"]["detail"] == "several_records"


@pytest.mark.parametrize("policy", ["reject", "quarantine", "none"])
def test_the_right_record_with_a_dmarc_policy_passes_dmarc_with_dkim(key_for, zone, policy):
    """The record matches and the domain has DMARC: DMARC will pass with DKIM, whatever p=."""
    domain = f"{policy}.dkim.example"
    zone.set(f"_dmarc.{domain}", f"v=DMARC1; p={policy}; rua=mailto:d@{domain}")
    key = key_for(domain)
    publish(zone, key)
    result = dkim_keys.check(key)
    assert result["verdict"] == "pass"
    assert result["records"]["rsa"]["status"] == "match"
    assert result["dmarc"]["policy"] == policy
    assert key.verified_at is not None and dkim_keys.is_signing(key)


def test_the_right_record_without_dmarc_passes_dkim_only(key_for, zone):
    """No DMARC record: DKIM passes, and the verdict says there is no policy to pass."""
    key = key_for("nodmarc.dkim.example")
    publish(zone, key)
    result = dkim_keys.check(key)
    assert result["verdict"] == "pass_no_dmarc"
    assert result["dmarc"]["record"] is None
    assert key.verified_at is not None


def test_the_ed25519_record_is_checked_on_its_own(key_for, zone):
    """Each record verifies its own key: only the published one signs."""
    key = key_for("ed.dkim.example", ed25519=True)
    rsa_record, ed_record = dkim_keys.records(key)
    zone.set(rsa_record.name, rsa_record.strings)
    result = dkim_keys.check(key)
    assert result["records"]["rsa"]["status"] == "match"
    assert result["records"]["ed25519"]["status"] == "missing"
    assert key.verified_at is not None and key.ed25519_verified_at is None
    [signing] = dkim_keys.signing_keys(key.customer_id, "ed.dkim.example")
    assert signing.algorithm == b"rsa-sha256"


def test_a_dns_timeout_changes_nothing(key_for, zone, app, silent_dns):
    """A lookup without an answer is a DNS failure: a verified key stays verified."""
    key = key_for("timeout.dkim.example")
    publish(zone, key)
    dkim_keys.check(key)
    assert key.verified_at is not None
    app.config.update(POSTINO_DNS_NAMESERVERS=silent_dns, POSTINO_DNS_TIMEOUT=0.3)
    result = dkim_keys.check(key)
    assert result["verdict"] == "dns_error" and result["errors"]
    assert key.verified_at is not None


def test_the_records_are_split_in_strings_of_at_most_255_bytes(key_for):
    """The RSA value is longer than one TXT string: split, and the parts join back."""
    key = key_for("split.dkim.example", ed25519=True)
    rsa_record, ed_record = dkim_keys.records(key)
    assert len(rsa_record.value) > 255
    assert all(len(part.encode()) <= 255 for part in rsa_record.strings)
    assert "".join(rsa_record.strings) == rsa_record.value
    assert rsa_record.zone_text == " ".join(f'"{p}"' for p in rsa_record.strings)
    assert rsa_record.value.startswith("v=DKIM1; k=rsa; p=MII")
    assert ed_record.strings == [ed_record.value]
    assert ed_record.name == f"{key.selector}-ed25519._domainkey.split.dkim.example"


def test_verification_flips_are_audited(key_for, zone):
    """Verified, then unverified when the record goes away: each flip is an audit entry."""
    key = key_for("audit.dkim.example")
    publish(zone, key)
    dkim_keys.check(key)
    dkim_keys.check(key)  # no flip, no entry
    zone.remove(f"{key.selector}._domainkey.audit.dkim.example")
    dkim_keys.check(key)
    actions = [e.action for e in db.session.query(AuditEntry).order_by(AuditEntry.id)
               if e.action.startswith("dkim.")]
    assert actions == ["dkim.generate", "dkim.verified", "dkim.unverified"]


def test_a_verified_key_turns_the_custom_from_verdict_into_a_pass(app, make_customer, zone,
                                                                  monkeypatch):
    """SPF refuses our relay and DMARC says reject, but we sign with a verified key: the
    customer's DNS check passes, and says so."""
    zone.set("rifiuta.example", "v=spf1 ip4:198.51.100.7 -all")
    zone.set("_dmarc.rifiuta.example", "v=DMARC1; p=reject")
    monkeypatch.setitem(app.config, "POSTINO_RELAY_IPS", "192.0.2.25")
    customer, _ = make_customer(sending_mode="custom_from", from_address="info@rifiuta.example")
    before = domains.check_customer(customer)
    assert before["verdict"] == "reject" and before["dkim"] is None
    key = dkim_keys.generate(customer)
    assert domains.check_customer(customer)["verdict"] == "reject"  # not published yet
    publish(zone, key)
    after = domains.check_customer(customer)
    assert after["verdict"] == "pass"
    assert after["dkim"]["status"] == "match" and after["dkim"]["signing"] is True
    assert after["spf"]["result"] == "fail"
    db.session.refresh(key)
    assert key.verified_at is not None


@pytest.fixture
def silent_dns():
    """A nameserver that never answers."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
