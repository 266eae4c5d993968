"""Who may use the log: support and admin; billing and anonymous may not."""
from __future__ import annotations

import pytest

URLS = ["/log/", "/log/0123456789abcdef01234567", "/log/export.csv", "/log/bulk-resend"]


@pytest.mark.parametrize("url", URLS)
def test_billing_cannot_see_the_log(billing_client, url):
    """Billing staff get 403 on every log page."""
    assert billing_client.get(url).status_code == 403


def test_billing_cannot_resend(billing_client, make_message):
    """Billing staff cannot resend, and nothing is created."""
    message = make_message()
    assert billing_client.post(f"/log/{message.public_id}/resend").status_code == 403
    assert billing_client.post("/log/bulk-resend", data={"q": "ORD"}).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login(client):
    """Not logged in: the log redirects to the login page."""
    response = client.get("/log/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_admins_may_use_the_log(admin_client, make_message):
    """Admins always pass."""
    message = make_message()
    assert admin_client.get("/log/").status_code == 200
    assert admin_client.get(f"/log/{message.public_id}").status_code == 200
