"""End to end through the standard mode: API → sweep → the relay sink."""
from dashboard.extensions import db
from dashboard.models import Message
from dashboard.services.delivery import verp
from dashboard.services.delivery.sweep import sweep


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


def test_a_batch_of_several_messages_each_arrives_with_its_own_bytes(relay, make_customer,
                                                                      api_post):
    """The sweep builds each next message while the server takes the current one in: every
    recipient still gets its own To, Message-ID and tracking pixel, none twice. On SQLite
    the outcome writer's connection goes back to the pool with automatic checkpoints on."""
    _customer, key = make_customer()
    recipients = [f"buyer{n}@example.com" for n in range(7)]
    data = {"order_number": "ORD-7", "order_date": "1/1/2026", "total": "€ 5",
            "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/7"}
    r = api_post(key, {"event": "order_closed", "to": recipients, "reference": "ORD-7",
                       "language": "it", "data": data})
    assert r.status_code == 202, r.json
    assert sweep(batch_size=3).sent == 7  # batches of 3: the last of each has no next one
    got = relay.wait_for(7)
    by_recipient = {g.rcpt_tos[0]: g for g in got}
    assert sorted(by_recipient) == sorted(recipients) and len(got) == 7
    messages = {m.recipient: m for m in db.session.scalars(db.select(Message))}
    pixels = set()
    for address, received in by_recipient.items():
        parsed = received.message
        assert parsed["To"] == address
        assert parsed["Message-ID"] == f"<{messages[address].public_id}@bounces.postino.example.com>"
        html = parsed.get_body(preferencelist=("html",)).get_content()
        [pixel] = [part for part in html.split('"') if part.endswith(".gif")]
        pixels.add(pixel)
    assert len(pixels) == 7
    if db.engine.dialect.name == "sqlite":
        connections = [db.engine.connect() for _ in range(3)]
        try:
            assert all(c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
                       for c in connections)
        finally:
            for connection in connections:
                connection.close()
