"""DKIM signing when the message is built: what receivers verify, checked with dkimpy against
the record a real DNS server (dnslib) publishes, for custom_from and standard mail."""
import base64
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.extensions import db
from dashboard.models import AuditEntry, DkimKey
from dashboard.notifications import CATALOG
from dashboard.services.delivery import compose, credentials, dkim_keys
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import intake

from .conftest import CUSTOMER_DOMAIN, publish

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
SUBJECT_TITLE = "Listino «prezzi» 2027 — è già qui, 東京"


def _document(customer, to="buyer@example.com", **data):
    """A document_sent message: HTML + text, two attachments, a non-ASCII subject."""
    sample = {**CATALOG["document_sent"]["sample"], "document_title": SUBJECT_TITLE, **data}
    files = [{"filename": "listino è.pdf", "content_type": "application/pdf",
              "content": base64.b64encode(PDF).decode()},
             {"filename": "note.txt", "content_type": "text/plain",
              "content": base64.b64encode(b"righe\r\ncon spazi   finali   \r\n").decode()}]
    [message] = intake.enqueue(customer, "document_sent", to, reference="DOC-1",
                                 data=sample, attachments=files)
    return message


def _signatures(data: bytes) -> list[dict[str, str]]:
    """The tags of each DKIM-Signature header, top first."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    found = re.findall(r"^DKIM-Signature:(.*?)(?=^\S)", head + "\nX:", flags=re.M | re.S)
    out = []
    for value in found:
        tags = {}
        for part in re.sub(r"\s+", "", value).split(";"):
            if "=" in part:
                name, _, tag_value = part.partition("=")
                tags[name] = tag_value
        out.append(tags)
    return out


@pytest.fixture
def custom_from(make_customer):
    """A custom_from customer sending From its own domain."""
    customer, _ = make_customer(sending_mode="custom_from",
                                from_address=f"ordini@{CUSTOMER_DOMAIN}", from_name="Ordini è")
    return customer


@pytest.fixture
def verified_key(custom_from, zone):
    """The customer's key, RSA and Ed25519, published and verified."""
    key = dkim_keys.generate(custom_from, selector="postino202611", ed25519=True)
    publish(zone, key)
    dkim_keys.check(key)
    assert key.verified_at is not None and key.ed25519_verified_at is not None
    return key


def test_custom_from_mail_with_attachments_and_a_non_ascii_subject_verifies(
        custom_from, verified_key, verify):
    """HTML + text, two files, a non-ASCII subject: both signatures (RSA and Ed25519) verify
    against the published records, d= the From domain, the headers that matter signed."""
    message = _document(custom_from)
    data = compose.build_bytes(message, open_tracking=True)
    rsa_tags, ed_tags = _signatures(data)
    assert rsa_tags["a"] == "rsa-sha256" and ed_tags["a"] == "ed25519-sha256"
    assert rsa_tags["d"] == ed_tags["d"] == CUSTOMER_DOMAIN
    assert (rsa_tags["s"], ed_tags["s"]) == ("postino202611", "postino202611-ed25519")
    assert rsa_tags["c"] == "relaxed/relaxed"
    assert rsa_tags["h"].split(":") == ["from", "to", "subject", "date", "message-id",
                                        "mime-version", "content-type", "from"]
    assert verify(data, 0) and verify(data, 1)
    assert b"multipart/mixed" in data and b"=?utf-8?" in data


def test_standard_mail_is_signed_with_our_own_domain_key(make_customer, zone, verify):
    """Standard mode: our sender's domain has its own key (Settings), and its mail verifies."""
    customer, _ = make_customer()
    key = dkim_keys.generate(None, domain="postino.example.com")
    publish(zone, key)
    dkim_keys.check(key)
    message = _document(customer)
    data = compose.build_bytes(message)
    [tags] = _signatures(data)
    assert tags["d"] == "postino.example.com" and tags["s"] == key.selector
    assert verify(data)


def test_a_customer_key_never_signs_another_customers_mail(custom_from, verified_key,
                                                            make_customer):
    """Another customer using the same From domain without a key of its own is not signed."""
    other, _ = make_customer(sending_mode="custom_from", from_address=f"info@{CUSTOMER_DOMAIN}")
    data = compose.build_bytes(_document(other))
    assert not data.startswith(b"DKIM-Signature")


@pytest.mark.parametrize("tamper", [
    lambda d: d.replace(b"cmlnaGUNCmNvbi", b"cmlnaGANCmNvbi", 1),  # an attachment's bytes
    lambda d: re.sub(rb"^From: .*?\r\n", b"From: ceo@" + CUSTOMER_DOMAIN.encode() + b"\r\n", d,
                     count=1, flags=re.M),  # the From
    lambda d: d.replace(b"\r\n\r\n", b"\r\nFrom: ceo@" + CUSTOMER_DOMAIN.encode() + b"\r\n\r\n",
                        1),  # a second From below the first
])
def test_tampering_with_the_body_or_the_from_breaks_both_signatures(custom_from, verified_key,
                                                                    verify, tamper):
    """What a receiver must refuse: a changed body, a changed or an added From."""
    data = compose.build_bytes(_document(custom_from))
    assert verify(data, 0) and verify(data, 1)
    forged = tamper(data)
    assert forged != data
    assert not verify(forged, 0) and not verify(forged, 1)


def test_a_list_unsubscribe_header_is_signed_when_present(custom_from, verified_key, verify):
    """List-Unsubscribe (and -Post) are in h= when the message has them; changing them fails."""
    message = _document(custom_from)
    raw = compose.build_bytes(message)
    unsigned = raw.split(b"\r\n\r\n", 1)
    head = re.sub(rb"^DKIM-Signature:.*?(?=^[A-Z])", b"", unsigned[0] + b"\r\n",
                  flags=re.M | re.S)
    with_list = (head + b"List-Unsubscribe: <https://postino.example.com/u/abc>\r\n"
                 b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n" + unsigned[1])
    keys = dkim_keys.signing_keys(custom_from.id, CUSTOMER_DOMAIN)
    signed = dkim_keys.sign_bytes(with_list, keys)
    assert "list-unsubscribe:list-unsubscribe-post" in _signatures(signed)[0]["h"]
    assert verify(signed)
    assert not verify(signed.replace(b"/u/abc", b"/u/evil"))


def test_an_unverified_key_does_not_sign_until_forced(custom_from, zone, app):
    """A key whose record is not found signs nothing; an admin's force signs (audited), and
    stopping the force stops it again."""
    key = dkim_keys.generate(custom_from)
    dkim_keys.check(key)
    assert key.dns_check["verdict"] == "missing"
    message = _document(custom_from)
    assert not compose.build_bytes(message).startswith(b"DKIM-Signature")
    dkim_keys.set_forced(key, True)
    assert compose.build_bytes(message).startswith(b"DKIM-Signature")
    entry = db.session.query(AuditEntry).filter_by(action="dkim.force").one()
    assert entry.after["forced"] is True and "WARNING" in entry.note
    dkim_keys.set_forced(key, False)
    assert not compose.build_bytes(message).startswith(b"DKIM-Signature")


def test_signing_stops_when_the_record_goes_away(custom_from, verified_key, zone):
    """The customer removes the record: the next check un-verifies the key, mail goes unsigned
    (never a failing signature), and the flip is audited."""
    message = _document(custom_from)
    assert compose.build_bytes(message).startswith(b"DKIM-Signature")
    for record in dkim_keys.records(verified_key):
        zone.remove(record.name)
    dkim_keys.check(verified_key)
    assert verified_key.verified_at is None
    assert not compose.build_bytes(message).startswith(b"DKIM-Signature")
    assert db.session.query(AuditEntry).filter_by(action="dkim.unverified").count() == 1


def test_the_message_sent_over_smtp_verifies(custom_from, verified_key, relay, verify):
    """The sweep's own bytes, as the relay received them, verify (signing is in compose, so
    the message built ahead while the server works is signed too)."""
    first = _document(custom_from, to="one@example.com")
    second = _document(custom_from, to="two@example.com")
    result = sweep()
    assert result.sent == 2
    received = relay.wait_for(2)
    assert {r.rcpt_tos[0] for r in received} == {first.recipient, second.recipient}
    for item in received:
        data = item.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert data.startswith(b"DKIM-Signature")
        assert verify(data, 0) and verify(data, 1)


def test_a_non_ascii_recipient_is_signed_on_the_slower_path_too(custom_from, verified_key,
                                                                verify):
    """An internationalised address goes through the email package; still signed."""
    message = _document(custom_from, to="utente@esempio.example")
    message.recipient = "jürgen@esempio.example"
    data = compose.build_bytes(message)
    assert b"boundary=\"===============" in data  # the email package's, not ours
    assert verify(data, 0) and verify(data, 1)


def test_the_private_key_is_decrypted_once_per_process_not_per_message(custom_from,
                                                                       verified_key,
                                                                       monkeypatch):
    """Signing stays cheap: the parsed key is cached; no decryption per message."""
    calls = []
    real = credentials.decrypt
    monkeypatch.setattr(credentials, "decrypt", lambda token: calls.append(1) or real(token))
    dkim_keys._table().parsed.clear()
    message = _document(custom_from)
    for _ in range(30):
        dkim_keys.invalidate()  # even when the table is read again
        assert compose.build_bytes(message).startswith(b"DKIM-Signature")
    assert len(calls) == 2  # RSA and Ed25519, once each


def test_private_keys_are_encrypted_at_rest_and_never_logged_or_audited(custom_from, zone,
                                                                        caplog):
    """The database holds Fernet tokens; no log line or audit entry carries key material."""
    caplog.set_level(logging.DEBUG)
    key = dkim_keys.generate(custom_from, ed25519=True)
    publish(zone, key)
    dkim_keys.check(key)
    compose.build_bytes(_document(custom_from))
    row = db.session.get(DkimKey, key.id)
    pem = credentials.decrypt(row.rsa_private_encrypted)
    seed = credentials.decrypt(row.ed25519_private_encrypted)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert "PRIVATE" not in row.rsa_private_encrypted
    secrets = [pem.splitlines()[1], seed]
    audited = " ".join(str((e.before, e.after, e.note)) for e in db.session.query(AuditEntry))
    for secret in secrets:
        assert secret not in caplog.text and secret not in audited


def test_a_signing_failure_never_stops_the_mail(custom_from, verified_key, monkeypatch, caplog):
    """Whatever goes wrong while signing, the message is built (unsigned) and the log says so."""
    def broken(data, keys, now=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(dkim_keys, "sign_bytes", broken)
    data = compose.build_bytes(_document(custom_from))
    assert data.startswith(b"From: ") and b"DKIM-Signature" not in data
    assert f"DKIM signing of a message From {CUSTOMER_DOMAIN} failed" in caplog.text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet=" \t\r\nab=.", max_size=30), max_size=25))
def test_our_body_canonicalisation_is_dkimpys(lines):
    """The fast relaxed body canonicalisation gives dkimpy's bytes for any body (CRLF or
    bare LF line ends, runs of spaces and tabs, trailing blanks, empty lines at the end)."""
    from dkim.canonicalization import Relaxed

    body = "\r\n".join(lines).encode()
    as_verifier_reads = b"\r\n".join(re.split(rb"\r?\n", body))
    assert dkim_keys.canonical_body(body) == Relaxed.canonicalize_body(as_verifier_reads)


def test_our_header_split_is_dkimpys(custom_from):
    """The header fields we sign are read as dkimpy reads them, folded Subject included."""
    from dkim import rfc822_parse

    data = compose.build_bytes(_document(custom_from, document_title="è " * 80))
    head = data[:data.index(b"\r\n\r\n")]
    assert b"\r\n " in head  # a folded field
    assert dkim_keys._header_fields(head) == [tuple(f) for f in rfc822_parse(head + b"\r\n\r\n")[0]]
