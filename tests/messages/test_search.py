"""Log search: the box understands references, addresses and ids; filters; keyset pages."""
from __future__ import annotations

from datetime import UTC, date, timedelta

from dashboard.models import utcnow
from dashboard.services.messages import log_search


def search(**args):
    """Run the search service as the page does."""
    parsed, errors = log_search.parse(args)
    assert errors == {}
    return log_search.run(parsed)


def ids(page):
    """Public ids of a page, in order."""
    return [m.public_id for m in page.messages]


def test_an_order_number_is_found_whatever_its_case_and_spaces(make_message):
    """'ord-2026-000123', ' ORD 2026-000123 ' and the exact reference find the same message."""
    wanted = make_message(reference="ORD-2026-000123")
    make_message(reference="ORD-2026-000999")
    for typed in ("ORD-2026-000123", "ord-2026-000123", "  ord - 2026-000123 "):
        assert ids(search(q=typed)) == [wanted.public_id], typed


def test_a_reference_prefix_finds_every_order_starting_with_it(make_message):
    """Typing the start of an order number lists the matching orders, newest first."""
    first = make_message(reference="ORD-2026-000121", ago=timedelta(minutes=5))
    second = make_message(reference="ORD-2026-000122", ago=timedelta(minutes=1))
    make_message(reference="ORD-2026-000300")
    make_message(reference="ACT-2026-000121")
    assert ids(search(q="ord-2026-00012")) == [second.public_id, first.public_id]


def test_a_full_address_finds_its_messages_and_not_longer_ones(make_message):
    """A full address matches that recipient (any case), not other recipients."""
    mine = make_message(to="mario.rossi@example.com")
    make_message(to="maria.rossi@example.com")
    page = search(q=" Mario.Rossi@Example.COM ")
    assert ids(page) == [mine.public_id]
    assert page.search.kind == "address"


def test_an_address_prefix_works_with_or_without_the_at_sign(make_message):
    """'mario.ro' and 'mario.rossi@exa' both find mario.rossi@example.com."""
    mine = make_message(to="mario.rossi@example.com", reference="ORD-1")
    make_message(to="luigi@example.com", reference="ORD-2")
    assert ids(search(q="mario.ro")) == [mine.public_id]
    assert ids(search(q="MARIO.ROSSI@EXA")) == [mine.public_id]


def test_a_message_id_is_found_even_outside_the_date_range(make_message):
    """A pasted message id finds its message whatever the dates say."""
    old = make_message(ago=timedelta(days=20))
    today = utcnow().date()
    page = search(q=old.public_id.upper(), **{"from": today.isoformat()})
    assert ids(page) == [old.public_id]
    assert page.search.kind == "id"


def test_the_default_range_is_the_last_seven_days(make_message):
    """Without dates the log shows the last 7 days; an empty 'from' shows everything kept."""
    recent = make_message(ago=timedelta(days=6))
    old = make_message(ago=timedelta(days=8))
    parsed, _ = log_search.parse({})
    assert parsed.date_from == utcnow().date() - timedelta(days=6)
    assert ids(log_search.run(parsed)) == [recent.public_id]
    assert ids(search(**{"from": ""})) == [recent.public_id, old.public_id]


def test_filters_combine_with_the_box(make_message, make_customer):
    """Customer, event, status, mode and dates narrow the search together."""
    other, _ = make_customer("OTHER")
    smtp, _ = make_customer("SMTPCO", sending_mode="customer_smtp", smtp_host="mail.smtpco.it",
                            smtp_port=587, from_address="noreply@smtpco.it")
    acme_failed = make_message(reference="ORD-7", status="failed")
    make_message(reference="ORD-7", status="sent")
    make_message(customer=other, reference="ORD-7", status="failed")
    make_message(reference="ORD-7", status="failed", event="document_sent")
    make_message(reference="ORD-7", status="failed", ago=timedelta(days=3))
    smtp_message = make_message(customer=smtp, reference="ORD-7", status="failed")
    today = utcnow().date().isoformat()
    page = search(q="ord-7", customer=str(acme_failed.customer_id), status="failed",
                  event="order_closed", **{"from": today, "to": today})
    assert ids(page) == [acme_failed.public_id]
    assert ids(search(q="ORD-7", mode="customer_smtp")) == [smtp_message.public_id]


def test_pages_stay_stable_while_new_messages_arrive(insert_messages, make_customer, make_message):
    """The 'older' page continues where the first ended, even after new mail arrived."""
    customer, _ = make_customer()
    insert_messages(120, customer)
    first = search()
    assert len(first.messages) == 50 and first.older and first.newer is None
    make_message(customer=customer)  # arrives while support reads page one
    make_message(customer=customer)
    second = search(before=first.older)
    assert set(ids(first)).isdisjoint(ids(second))
    created = [m.created_at for m in first.messages + second.messages]
    assert created == sorted(created, reverse=True)
    third = search(before=second.older)
    assert len(third.messages) == 20 and third.older is None
    back = search(after=second.newer)
    assert ids(back) == ids(first)


def test_a_broad_term_walks_the_time_index_with_the_same_results(insert_messages,
                                                                  make_customer, monkeypatch):
    """Above the probe cap the term is checked newest first; pages and counts do not change."""
    customer, _ = make_customer()
    insert_messages(1100, customer, reference="ORD-2026-000001")
    insert_messages(30, customer, reference="ACT-1", status="failed")
    selective = search(q="ORD")
    assert selective.plan == "term"
    monkeypatch.setattr(log_search, "TERM_CAP", 100)
    broad = search(q="ORD")
    assert broad.plan == "time"
    assert ids(broad) == ids(selective) and len(broad.messages) == 50
    assert broad.count_capped and selective.count_capped and broad.count == 1000
    assert ids(search(q="ORD", before=broad.older)) == ids(
        log_search.run(log_search.parse({"q": "ORD", "before": broad.older})[0]))
    filtered = search(q="ORD-2026-000001", status="failed")
    assert filtered.plan == "time" and filtered.messages == [] and filtered.count == 0


def test_a_selective_term_uses_its_own_index(make_message):
    """A handful of matches are read through the reference index and counted exactly."""
    make_message(reference="ORD-2026-000500")
    page = search(q="ORD-2026-0005")
    assert page.plan == "term" and page.count == 1 and not page.count_capped


def test_the_page_searches_as_you_type_with_a_pushable_url(support_client, make_message):
    """The full page carries the debounced htmx search; htmx gets only the results."""
    wanted = make_message(reference="ORD-2026-000777")
    page = support_client.get("/log/")
    html = page.get_data(as_text=True)
    assert 'hx-push-url="true"' in html and "delay:300ms" in html and "hx-indicator" in html
    fragment = support_client.get("/log/?q=ord-2026-000777", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in text
    assert wanted.public_id in text and "ORD-2026-000777" in text


def test_bad_filters_answer_422_with_the_error_beside_the_field(support_client, make_message):
    """A hand-edited URL with a bad date is refused with the error next to that field."""
    response = support_client.get("/log/?from=2026-13-45&status=lost")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'id="error-from"' in html and "YYYY-MM-DD" in html
    fragment = support_client.get("/log/?to=yesterday", headers={"HX-Request": "true"})
    assert fragment.status_code == 422
    assert 'id="error-to" class="field-error" hx-swap-oob="true">' in fragment.get_data(as_text=True)


def test_held_and_suppressed_rows_show_why(support_client, make_message):
    """A held or suppressed row carries its reason beside the badge."""
    make_message(reference="ORD-H", status="held",
                 status_reason="sending is off for customer ACME")
    make_message(reference="ORD-S", status="suppressed",
                 status_reason="recipient on the suppression list (hard_bounce)")
    html = support_client.get("/log/?q=ORD-").get_data(as_text=True)
    assert "sending is off for customer ACME" in html
    assert "recipient on the suppression list (hard bounce)" in html  # old rows: translated
    assert "badge-held" in html and "badge-suppressed" in html


def test_an_empty_search_offers_the_whole_retention_period(support_client, make_message):
    """No match in the last 7 days: a link searches every message still kept."""
    make_message(reference="ORD-OLD", ago=timedelta(days=10))
    html = support_client.get("/log/?q=ORD-OLD").get_data(as_text=True)
    assert 'href="/log/?q=ORD-OLD&amp;from="' in html
    html = support_client.get("/log/?q=ORD-OLD&from=").get_data(as_text=True)
    assert "ORD-OLD" in html and "badge-" in html


def test_cursors_round_trip_and_junk_is_ignored():
    """A cursor encodes (time, id) exactly; a malformed one means 'first page'."""
    from datetime import datetime

    from dashboard.models import Message
    message = Message(id=42, created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    assert log_search.decode_cursor(log_search.encode_cursor(message)) == (message.created_at, 42)
    assert log_search.decode_cursor("nonsense") is None
    assert log_search.decode_cursor("") is None
    assert log_search.default_from(date(2026, 3, 10)) == date(2026, 3, 4)
