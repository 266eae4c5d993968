"""End to end through the standard mode: API → sweep → the relay sink."""
from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services import verp
from dashboard.services.sweep import sweep


def test_an_order_closed_notification_reaches_the_relay(relay, make_customer, api_post):
    """A posted event becomes one queued message that the sweep delivers with VERP."""
    customer, key = make_customer()
    data = {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
            "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}
    r = api_post(key, {"event": "order_closed", "to": "Buyer@Example.com",
                       "reference": "ORD-1", "language": "it", "data": data})
    assert r.status_code == 202, r.json
    [item] = r.json["messages"]
    assert item["status"] == "queued" and item["to"] == "buyer@example.com"
    result = sweep()
    assert result.sent == 1, result
    [got] = relay.wait_for(1)
    msg = db.session.scalar(db.select(Message))
    assert got.mail_from == verp.address_for(msg.public_id)
    assert verp.parse(got.mail_from) == msg.public_id
    parsed = got.message
    assert parsed["Subject"] == "Ordine ORD-1 chiuso"
    assert "notification@postino.example.com" in parsed["From"]
    assert parsed["Message-ID"] == f"<{msg.public_id}@bounces.postino.example.com>"
    assert msg.status == "sent" and [e.type for e in msg.events] == ["queued", "sent"]
