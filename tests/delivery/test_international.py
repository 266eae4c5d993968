"""International addresses (issue 14): an IDN domain goes out in A-labels, a non-ASCII local
part with SMTPUTF8 or not at all (that one message fails, saying why), and both spellings of
a domain are one address for suppressions and searches."""
import email
import email.policy

from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import Message, Suppression
from dashboard.services.bounces import suppressions
from dashboard.services.delivery.sweep import sweep
from dashboard.services.messages import log_search

from .conftest import queue, reload, sample


def test_an_international_domain_from_the_api_is_sent_in_punycode(
        app, api_post, make_customer, smtp_server, point_relay):
    """POST {"to": "info@müller.de"}: the sweep sends it (RCPT and To in A-labels, headers
    all ASCII) instead of dying, and another customer's mail in the same sweep goes too."""
    server = point_relay(smtp_server())
    customer, key = make_customer()
    other, _ = make_customer()
    response = api_post(key, {"event": "order_closed", "to": "Info@Müller.de",
                              "data": sample("order_closed")})
    assert response.status_code == 202
    assert response.json["messages"][0]["to"] == "info@müller.de"  # stored as given, canonical
    [theirs] = queue(other, "buyer@example.com")
    result = sweep()
    assert (result.sent, result.deferred, result.failed) == (2, 0, 0)
    received = {r.rcpt_tos[0]: r for r in server.wait_for(2)}
    assert set(received) == {"info@xn--mller-kva.de", "buyer@example.com"}
    got = received["info@xn--mller-kva.de"]
    assert got.mail_options == []  # no SMTPUTF8 needed for a domain
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"\r\nTo: info@xn--mller-kva.de\r\n" in head
    assert got.message["To"].addresses[0].domain == "xn--mller-kva.de"
    mine = db.session.scalar(select(Message).where(Message.customer_id == customer.id))
    assert (mine.status, mine.recipient) == ("sent", "info@müller.de")
    assert reload(theirs).status == "sent"


def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_server_offers_it(
        app, make_customer, smtp_server, point_relay):
    """MAIL FROM carries SMTPUTF8 (RFC 6531); headers are UTF-8 (RFC 6532); the RCPT domain
    is still in A-labels."""
    server = point_relay(smtp_server(smtputf8=True))
    customer, _ = make_customer()
    [message] = queue(customer, "josé@Müller.de")
    assert sweep().sent == 1
    [got] = server.wait_for(1)
    assert got.rcpt_tos == ["josé@xn--mller-kva.de"] and "SMTPUTF8" in got.mail_options
    assert "\r\nTo: josé@müller.de\r\n".encode() in got.data
    utf8 = email.message_from_string(got.data.decode("utf-8"), policy=email.policy.default)
    assert utf8["To"].addresses[0].addr_spec == "josé@müller.de"
    assert reload(message).status == "sent"


def test_a_non_ascii_local_part_fails_with_a_clear_reason_when_the_server_lacks_smtputf8(
        app, make_customer, smtp_server, point_relay):
    """That one message fails at once (no retries that could not succeed), the timeline says
    why, nothing is suppressed, and the next message on the same connection goes."""
    server = point_relay(smtp_server())
    customer, _ = make_customer()
    [eai, plain] = queue(customer, "josé@müller.de", "plain@example.com")
    result = sweep()
    assert (result.sent, result.failed, result.deferred) == (1, 1, 0)
    assert [r.rcpt_tos for r in server.wait_for(1)] == [["plain@example.com"]]
    eai = reload(eai)
    assert eai.status == "failed" and eai.next_attempt_at is None
    assert "SMTPUTF8" in eai.status_reason and "josé@müller.de" in eai.status_reason
    last = eai.events[-1]
    assert last.type == "failed" and "does not offer it" in last.detail
    assert db.session.scalar(select(Suppression)) is None
    assert reload(plain).status == "sent"


def test_a_customer_from_address_with_an_international_domain_is_sent_in_punycode(
        app, make_customer, smtp_server, point_relay):
    """custom_from with info@bücher.example: ingest stores it, the From header goes in
    A-labels (an encoded word is not allowed inside an address)."""
    server = point_relay(smtp_server())
    customer, _ = make_customer(sending_mode="custom_from", from_address="info@bücher.example",
                                from_name="Bücher Müller")
    [message] = queue(customer, "buyer@example.com")
    assert message.from_header == "Bücher Müller <info@bücher.example>"
    assert sweep().sent == 1
    [got] = server.wait_for(1)
    sender = got.message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Bücher Müller",
                                                       "info@xn--bcher-kva.example")
    assert got.data.split(b"\r\n\r\n", 1)[0].isascii()


def test_a_suppression_of_either_spelling_stops_mail_to_both(app, make_customer, make_user):
    """The Unicode and the punycode form are one address: the entry is stored once, stops
    both spellings, and a search in either form finds it."""
    customer, _ = make_customer()
    entry = suppressions.add_manual("Info@XN--MLLER-KVA.DE", "asked by phone",
                                    make_user("support"))
    assert entry.address == "info@müller.de"
    queued = [queue(customer, to)[0] for to in ("info@müller.de", "Info@Müller.DE",
                                                  "info@xn--mller-kva.de")]
    assert [(m.status, m.suppression_id) for m in queued] == [("suppressed", entry.id)] * 3
    assert suppressions.active_for("info@xn--mller-kva.de", customer) == entry
    for term in ("info@xn--mller-kva.de", "xn--mller-kva.de", "müller"):
        found = suppressions.search(suppressions.Filters(q=term))
        assert [e.id for e in found] == [entry.id], term


def test_the_log_finds_a_message_by_either_spelling_of_its_domain(app, make_customer):
    """Support pastes the address from a bounce (punycode) or types it: the same message."""
    customer, _ = make_customer()
    [message] = queue(customer, "info@müller.de")
    for term in ("info@xn--mller-kva.de", "INFO@MÜLLER.DE", "info@m"):
        page = log_search.run(log_search.Search(q=term))
        assert [m.id for m in page.messages] == [message.id], term


def test_the_message_page_shows_the_address_as_it_was_sent(app, make_customer,
                                                           support_client):
    """Support reads info@müller.de and, beside it, the punycode a bounce will quote."""
    customer, _ = make_customer()
    [idn, plain] = queue(customer, "info@müller.de", "plain@example.com")
    page = support_client.get(f"/log/{idn.public_id}").get_data(as_text=True)
    assert "info@müller.de" in page and "sent as info@xn--mller-kva.de" in page
    page = support_client.get(f"/log/{plain.public_id}").get_data(as_text=True)
    assert "plain@example.com" in page and "sent as" not in page
