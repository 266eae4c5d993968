"""The webhook section of the customer page: admins manage it, the secret is shown once."""
from __future__ import annotations

from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry, WebhookEndpoint
from dashboard.services.webhooks import endpoints, signing


def test_an_admin_creates_a_webhook_and_sees_the_secret_once(admin_client, make_customer,
                                                             receiver):
    """The secret appears in the answer to the creation, never again, and is stored
    encrypted; the audit log has the address, not the secret."""
    customer, _key = make_customer()
    page = admin_client.post(f"/webhooks/{customer.code}", data={"url": receiver.url},
                             headers={"HX-Request": "true"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    secret = html.split('id="webhook-secret">')[1].split("<")[0]
    assert secret.startswith(signing.SECRET_PREFIX)
    endpoint = db.session.scalar(select(WebhookEndpoint))
    assert secret not in endpoint.secret_encrypted
    again = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert secret not in again and receiver.url in again
    assert all(secret not in str(entry.after) for entry in db.session.scalars(select(AuditEntry)))


def test_a_test_event_shows_the_endpoints_answer(admin_client, make_customer, receiver):
    """"Send a test event" POSTs at once and says what the endpoint answered."""
    customer, _key = make_customer()
    endpoints.configure(customer, receiver.url, None)
    page = admin_client.post(f"/webhooks/{customer.code}/test", headers={"HX-Request": "true"})
    html = page.get_data(as_text=True)
    assert "Test event delivered: the endpoint answered 200" in html
    assert receiver.received[0].json["event"] == "test"
    assert "<code>test</code>" in html  # in the last deliveries


def test_a_bad_address_is_refused_next_to_the_field(admin_client, make_customer):
    """Plain http is refused with 422, nothing stored."""
    customer, _key = make_customer()
    page = admin_client.post(f"/webhooks/{customer.code}", data={"url": "http://x.example"},
                             headers={"HX-Request": "true"})
    assert page.status_code == 422
    assert "must start with https://" in page.get_data(as_text=True)
    assert db.session.scalar(select(WebhookEndpoint)) is None


def test_support_sees_the_webhook_but_cannot_change_it(support_client, make_customer,
                                                       receiver):
    """Read-only for support: no forms, and the actions answer 403."""
    customer, _key = make_customer()
    endpoints.configure(customer, receiver.url, None)
    html = support_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert receiver.url in html and "Send a test event" not in html
    assert support_client.post(f"/webhooks/{customer.code}/test").status_code == 403
    assert support_client.post(f"/webhooks/{customer.code}/rotate").status_code == 403


def test_the_section_speaks_italian(admin_client, make_customer, receiver):
    """Every new element is translated."""
    customer, _key = make_customer()
    endpoints.configure(customer, receiver.url, None)
    html = admin_client.get(f"/customers/{customer.code}",
                            headers={"Accept-Language": "it"}).get_data(as_text=True)
    assert "Invia un evento di prova" in html


def test_a_paused_webhook_says_so_and_resumes(admin_client, make_customer, receiver):
    """The page shows the pause with its reason and a resume button that works."""
    from dashboard.models import utcnow

    customer, _key = make_customer()
    endpoint, _secret = endpoints.configure(customer, receiver.url, None)
    endpoint.paused_at, endpoint.paused_reason, endpoint.failures = utcnow(), "HTTP 500", 10
    db.session.commit()
    html = admin_client.get(f"/customers/{customer.code}").get_data(as_text=True)
    assert "Resume the webhook" in html and "HTTP 500" in html
    admin_client.post(f"/webhooks/{customer.code}/resume", headers={"HX-Request": "true"})
    db.session.refresh(endpoint)
    assert endpoint.paused_at is None and endpoint.failures == 0
