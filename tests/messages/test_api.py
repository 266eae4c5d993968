"""The ingest API: idempotency, a table of bad inputs that store nothing, and fuzzing."""
import base64
import json
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import EVENTS, IdempotencyKey, Message
from dashboard.services.bounces import suppressions

from ..delivery.conftest import counts, sample

ORDER = sample("order_closed")


def _body(**overrides):
    return {"event": "order_closed", "to": "buyer@example.com", "reference": "ORD-1",
            "language": "it", "data": ORDER, **overrides}


def test_the_same_idempotency_key_returns_the_first_answer_and_creates_nothing(make_customer,
                                                                               api_post):
    """A retried POST with the same key gets the same 202 body; no second message exists."""
    _, key = make_customer()
    first = api_post(key, _body(), **{"Idempotency-Key": "order-1-closed"})
    assert first.status_code == 202
    before = counts()
    again = api_post(key, _body(), **{"Idempotency-Key": "order-1-closed"})
    assert again.status_code == 202 and again.json == first.json
    assert counts() == before


def test_a_retry_spelled_differently_is_still_the_same_request(make_customer, api_post):
    """The body is compared as JSON: other key order or spacing is the same request."""
    _, key = make_customer()
    first = api_post(key, _body(), **{"Idempotency-Key": "k-spelling"})
    before = counts()
    respelled = json.dumps(dict(reversed(list(_body().items()))), indent=2)
    again = api_post(key, respelled, **{"Idempotency-Key": "k-spelling",
                                        "Content-Type": "application/json"})
    assert again.status_code == 202 and again.json == first.json
    assert counts() == before


def test_an_idempotency_key_reused_for_another_body_is_refused(make_customer, api_post):
    """Another request under a used key is not answered with the first one's result (that
    would silently drop it): 422 naming the header, and nothing is stored."""
    _, key = make_customer()
    first = api_post(key, _body(), **{"Idempotency-Key": "order-1-closed"})
    before = counts()
    again = api_post(key, _body(to="someone-else@example.com"),
                     **{"Idempotency-Key": "order-1-closed"})
    assert again.status_code == 422
    error = again.json["error"]
    assert error["code"] == "idempotency_key_reused"
    assert error["field"] == "Idempotency-Key"
    assert "already used for another request" in error["message"]
    assert counts() == before
    assert api_post(key, _body(), **{"Idempotency-Key": "order-1-closed"}).json == first.json


def test_the_same_key_from_another_customer_is_independent(make_customer, api_post):
    """Keys are per customer: another customer's identical key makes its own message."""
    _, key_a = make_customer()
    _, key_b = make_customer()
    a = api_post(key_a, _body(), **{"Idempotency-Key": "k1"})
    b = api_post(key_b, _body(), **{"Idempotency-Key": "k1"})
    assert a.status_code == b.status_code == 202
    assert a.json["messages"][0]["id"] != b.json["messages"][0]["id"]
    assert db.session.scalar(select(db.func.count()).select_from(Message)) == 2


def test_an_idempotency_key_older_than_24_hours_starts_afresh(make_customer, api_post):
    """After the 24 h window the key is forgotten and the request is a new one."""
    _, key = make_customer()
    first = api_post(key, _body(), **{"Idempotency-Key": "k-old"})
    row = db.session.scalar(select(IdempotencyKey))
    row.created_at = row.created_at - timedelta(hours=25)
    db.session.commit()
    again = api_post(key, _body(), **{"Idempotency-Key": "k-old"})
    assert again.status_code == 202
    assert again.json["messages"][0]["id"] != first.json["messages"][0]["id"]


def test_a_suppressed_recipient_is_answered_as_such(make_customer, api_post):
    """A recipient on the suppression list gets status `suppressed` in the 202 answer."""
    customer, key = make_customer()
    suppressions.suppress("gone@example.com", "hard_bounce", customer)
    db.session.commit()
    response = api_post(key, _body(to=["gone@example.com", "ok@example.com"]))
    assert [m["status"] for m in response.json["messages"]] == ["suppressed", "queued"]


def test_an_order_without_a_reference_is_found_by_its_order_number(make_customer, api_post):
    """order_closed without "reference": the order number the email shows becomes the
    reference (what the customer will quote); an explicit reference is kept as given."""
    _customer, key = make_customer()
    body = _body(data=dict(ORDER, order_number="ORD-2026-00777"))
    del body["reference"]
    [created] = api_post(key, body).json["messages"]
    [given] = api_post(key, _body(reference="INT-5", to="b@example.com")).json["messages"]
    stored = {m.public_id: m.reference for m in db.session.scalars(select(Message))}
    assert stored == {created["id"]: "ORD-2026-00777", given["id"]: "INT-5"}


def test_another_customers_message_is_a_404(make_customer, api_post, client):
    """GET of a message id that belongs to someone else answers 404 and reveals nothing."""
    _, key_a = make_customer()
    _, key_b = make_customer()
    [item] = api_post(key_a, _body()).json["messages"]
    response = client.get(f"/api/v1/notifications/{item['id']}",
                          headers={"Authorization": f"Bearer {key_b}"})
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    assert client.get(f"/api/v1/notifications/{item['id']}",
                      headers={"Authorization": f"Bearer {key_a}"}).status_code == 200


B64 = base64.b64encode(b"%PDF-1.4 test").decode()
BAD_INPUTS = [
    # id, headers-maker, body, content type, status, field
    ("missing key", "none", _body(), "application/json", 401, None),
    ("unknown key", "unknown", _body(), "application/json", 401, None),
    ("not JSON", "ok", b"event=order_closed", "text/plain", 415, None),
    ("malformed JSON", "ok", b'{"event": "order_closed", ', "application/json", 400, None),
    ("NaN is not JSON", "ok", b'{"event": "order_closed", "to": "a@example.com", '
     b'"data": {"total": NaN}}', "application/json", 400, None),
    ("unknown event", "ok", _body(event="order_opened"), "application/json", 422, "event"),
    ("bad address", "ok", _body(to="not-an-address"), "application/json", 422, "to"),
    ("CR/LF in reference", "ok", _body(reference="ORD-1\r\nBcc: x@evil.example.com"),
     "application/json", 422, "reference"),
    ("LF in a recipient", "ok", _body(to="a@example.com\nb@example.com"), "application/json",
     422, "to"),
    ("over 50 recipients", "ok", _body(to=[f"u{i}@example.com" for i in range(51)]),
     "application/json", 422, "to"),
    ("missing template variable", "ok",
     _body(data={k: v for k, v in ORDER.items() if k != "order_number"}),
     "application/json", 422, "data.order_number"),
    ("attachment not base64", "ok",
     _body(event="document_sent", data=sample("document_sent"),
           attachments=[{"filename": "a.pdf", "content": "%%% not base64 %%%"}]),
     "application/json", 422, "attachments[0].content"),
    ("attachment on another event", "ok",
     _body(attachments=[{"filename": "a.pdf", "content": B64}]),
     "application/json", 422, "attachments"),
    ("NUL in data", "ok", _body(data={**ORDER, "total": "5\x00"}), "application/json", 422,
     "data.total"),
    ("body over 10 MB", "ok", b'{"event": "order_closed", "data": {"x": "'
     + b"a" * (10 * 1024 * 1024) + b'"}}', "application/json", 413, None),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_with_its_field_and_stores_nothing(make_customer, client, case):
    """Each bad input: the documented status, the field to blame, zero rows anywhere."""
    _, auth, body, content_type, status, field = case
    _, key = make_customer()
    headers = {"Idempotency-Key": "same-key-every-time"}
    if auth == "ok":
        headers["Authorization"] = f"Bearer {key}"
    elif auth == "unknown":
        headers["Authorization"] = "Bearer pst_this-key-does-not-exist"
    before = counts()
    if isinstance(body, dict):
        response = client.post("/api/v1/notifications", json=body, headers=headers)
    else:
        response = client.post("/api/v1/notifications", data=body, headers=headers,
                               content_type=content_type)
    assert response.status_code == status, response.json
    error = response.json["error"]
    assert error["code"] and error["message"]
    assert error.get("field") == field
    assert counts() == before == (0, 0, 0)


@pytest.fixture
def api_key(make_customer):
    """One customer's API key, shared by every example of a Hypothesis test."""
    return make_customer()[1]


JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                allow_infinity=False) | st.text(max_size=40))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
ADDRESSES = st.sampled_from(["a@example.com", "B@Example.COM", "bad", "", "x@y", "é@例え.jp",
                             "a@example.com\r\n"])
PAYLOADS = st.fixed_dictionaries({}, optional={
    "event": st.sampled_from(EVENTS) | JSON,
    "to": ADDRESSES | st.lists(ADDRESSES, max_size=3) | JSON,
    "reference": st.text(max_size=30) | JSON,
    "language": st.sampled_from(["it", "en", "de"]) | JSON,
    "data": st.sampled_from([sample(e) for e in EVENTS])
    | st.dictionaries(st.sampled_from(["order_number", "link", "user_name", "self", "__class__",
                                       "subject", "total"]), JSON, max_size=6) | JSON,
    "attachments": st.lists(st.fixed_dictionaries({}, optional={
        "filename": st.text(max_size=20) | JSON, "content_type": st.text(max_size=20) | JSON,
        "content": st.sampled_from([B64, "", "!!"]) | JSON}), max_size=2) | JSON,
}) | JSON


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_arbitrary_json_never_gets_a_500(api_key, client, payload):
    """Whatever JSON arrives, the answer is 202 or a 4xx in the error shape, never a 500."""
    response = client.post("/api/v1/notifications", data=json.dumps(payload),
                           content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code in (202, 400, 413, 422), (response.status_code, response.json)
    if response.status_code != 202:
        assert set(response.json["error"]) >= {"code", "message"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_as_json_never_get_a_500(api_key, client, raw):
    """Random bytes labelled JSON are a 400 (or a 422 when they happen to parse)."""
    response = client.post("/api/v1/notifications", data=raw, content_type="application/json",
                           headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code in (400, 422), response.status_code
