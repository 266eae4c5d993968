"""The Home page: every role sees it; it refreshes itself every 30 seconds through htmx."""
from __future__ import annotations

from dashboard.services.delivery import sending
from dashboard.services.messages import intake

DATA = {"order_number": "ORD-1", "order_date": "1/3/2026", "total": "€ 5",
        "customer_name": "Bar", "agent_name": "Marco", "link": "https://x.example.com/o/1"}


def test_every_role_sees_home(billing_client, support_client, admin_client):
    """Billing, support and admin all land on Home."""
    for client in (billing_client, support_client, admin_client):
        assert client.get("/").status_code == 200


def test_the_chart_is_readable_without_javascript(support_client, make_customer):
    """The SVG has a title, a description, axis labels, a legend and a table fallback."""
    customer, _ = make_customer()
    intake.enqueue(customer, "order_closed", "a@example.com", data=DATA)
    page = support_client.get("/?period=7d").get_data(as_text=True)
    assert '<svg viewBox=' in page and "<title id=\"chart-title\">" in page
    assert "<desc id=\"chart-desc\">" in page and 'class="legend"' in page
    assert "<table" in page and "Show the figures as a table" in page
    assert 'aria-current="page"' in page and "Last 7 days" in page


def test_htmx_gets_the_self_refreshing_partial(support_client):
    """An htmx request answers the overview alone, which polls every 30 seconds."""
    response = support_client.get("/?period=30d", headers={"HX-Request": "true"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in page
    assert 'hx-trigger="every 30s"' in page and 'data-period="30d"' in page
    assert "HX-Request" in response.headers.get("Vary", "")


def test_home_lists_what_needs_attention(support_client):
    """Active banners (sending off) are listed on Home."""
    sending.set_global(False)
    page = support_client.get("/").get_data(as_text=True)
    assert "Needs attention" in page and "Sending is off" in page and "verdict-red" in page


def test_the_worker_state_is_shown(support_client):
    """Without any sweep, Home says the worker never ran."""
    page = support_client.get("/").get_data(as_text=True)
    assert 'data-state="never"' in page
