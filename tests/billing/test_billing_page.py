"""The Billing page's interventions and customer_smtp sections, the lists behind the figures
(a pushed URL that reopens them), and the billing staff's actions on interventions."""
from __future__ import annotations

import re
from datetime import date
from html import unescape

import pytest
from sqlalchemy import select

from dashboard.extensions import db
from dashboard.models import AuditEntry, ConfigurationIntervention
from dashboard.services.accounts import customer_settings
from dashboard.services.billing import interventions
from dashboard.services.billing.interventions import Request

from .test_interventions import SMTP

HX = {"HX-Request": "true"}
PASSWORD = SMTP["smtp_password"]


@pytest.fixture
def changes(make_customer, admin):
    """Verdi switched to customer_smtp this month (45 min, an estimate), then changed its
    password from the CLI (minutes to be completed)."""
    verdi, _ = make_customer("VERDI", "Verdi Arredamenti")
    interventions.add_estimate(verdi, "", "60", "", "own SMTP set-up", admin)
    customer_settings.save(verdi, SMTP, admin, intervention=Request(minutes="45",
                                                                    ticket="T-5120"))
    customer_settings.save(verdi, {**SMTP, "smtp_password": "Changed-Secret-99"},
                           actor_label="cli")
    items = db.session.scalars(select(ConfigurationIntervention)
                               .order_by(ConfigurationIntervention.id)).all()
    return {"verdi": verdi, "done": items[0], "pending": items[1]}


def month() -> str:
    """This month as YYYY-MM."""
    return date.today().strftime("%Y-%m")


def test_the_page_shows_interventions_pending_minutes_and_the_smtp_option(billing_client,
                                                                         changes):
    """Both figures with accessible names, the to-be-completed list, Verdi on the paid
    option since today; never a password."""
    body = billing_client.get("/billing/").get_data(as_text=True)
    assert "Configuration interventions" in body and "Verdi Arredamenti" in body
    labels = [unescape(label) for label in re.findall(r'aria-label="([^"]*)"', body)]
    assert any(re.fullmatch(r"2 interventions, 2 billable, Verdi Arredamenti, \w+ \d{4}", label)
               for label in labels), labels
    assert "1 billable intervention has its minutes to be completed" in body
    assert f'id="intervention-{changes["pending"].id}"' in body
    assert "still on it" in body and date.today().isoformat() in body
    assert PASSWORD not in body and "Changed-Secret-99" not in body
    assert changes["verdi"].smtp_password_encrypted not in body


def test_a_figure_pushes_a_billing_url_that_reopens_its_list(billing_client, changes):
    """The figure's hx-push-url is its href: the Billing page with show=…, which renders the
    same list below the figures on reload (and for Back after a cache miss)."""
    body = billing_client.get("/billing/").get_data(as_text=True)
    links = re.findall(r'<a href="([^"]*show=interventions[^"]*)" hx-get="([^"]*)" '
                       r'hx-target="#billing-detail" hx-push-url="([^"]*)"', body)
    assert links and all(href == pushed for href, _get, pushed in links)
    href, fragment, _pushed = links[0]
    part = billing_client.get(unescape(fragment), headers=HX).get_data(as_text=True)
    assert "<html" not in part and "T-5120" in part
    page = billing_client.get(unescape(href)).get_data(as_text=True)
    detail = page.split('id="billing-detail"', 1)[1]
    assert "T-5120" in detail and "to be completed" in detail
    restore = billing_client.get(unescape(href), headers={**HX, "HX-History-Restore-Request":
                                                          "true"}).get_data(as_text=True)
    assert "<html" in restore and "T-5120" in restore.split('id="billing-detail"', 1)[1]


def test_removal_figures_have_accessible_names_and_push_their_url(billing_client,
                                                                 make_customer, make_user):
    """'3 removals, 1 billable, Verdi, November 2026'-style names on the removal figures."""
    from dashboard.services.bounces import suppressions

    customer, _ = make_customer("VERDI", "Verdi")
    support = make_user("support")
    for minutes in ("5", "12"):
        entry = suppressions.suppress("anna@example.com", "hard_bounce", customer)
        db.session.commit()
        suppressions.lift(entry, customer, "asked", None, minutes, support)
    body = billing_client.get("/billing/").get_data(as_text=True)
    labels = [unescape(label) for label in re.findall(r'aria-label="([^"]*)"', body)]
    assert any(re.fullmatch(r"2 removals, 1 billable, Verdi, \w+ \d{4}", label)
               for label in labels), labels
    assert any(re.fullmatch(r"1 billable removal, Verdi, \w+ \d{4}", label) for label in labels)
    pushed = re.findall(r'hx-push-url="([^"]*show=removals[^"]*)"', body)
    page = billing_client.get(unescape(pushed[-1])).get_data(as_text=True)
    assert "anna@example.com" in page.split('id="billing-detail"', 1)[1]


def test_billing_fills_in_the_minutes_then_marks_invoiced_in_place(billing_client, changes):
    """The row's form saves the minutes (422 beside it when bad); the button invoices."""
    pending = changes["pending"]
    url = f"/billing/interventions/{pending.id}/minutes"
    bad = billing_client.post(url, data={"minutes": "0"}, headers=HX)
    assert bad.status_code == 422 and "field-error" in bad.get_data(as_text=True)
    good = billing_client.post(url, data={"minutes": "25"}, headers=HX)
    body = good.get_data(as_text=True)
    assert good.status_code == 200 and 'name="minutes"' not in body
    assert re.search(r"<td>\s*25\s*</td>", body) and "Mark invoiced" in body
    db.session.refresh(pending)
    assert pending.minutes == 25
    invoiced = billing_client.post(f"/billing/interventions/{pending.id}/invoiced", headers=HX)
    assert invoiced.status_code == 200 and "invoiced" in invoiced.get_data(as_text=True)
    assert billing_client.post(f"/billing/interventions/{pending.id}/invoiced",
                               headers=HX).status_code == 422
    assert db.session.scalars(select(AuditEntry.action).where(
        AuditEntry.action.like("intervention.%"))).all() == ["intervention.minutes",
                                                              "intervention.invoiced"]
    assert billing_client.post("/billing/interventions/999/minutes").status_code == 404


def test_the_csv_exports_download_without_secrets(billing_client, changes):
    """Interventions and the customer_smtp option, as attachments named after the period."""
    response = billing_client.get(f"/billing/interventions.csv?from={month()}&to={month()}")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert f"interventions-{month()}-{month()}.csv" in response.headers["Content-Disposition"]
    assert text.count("\r\n") == 3 and "T-5120" in text
    assert PASSWORD not in text and "Changed-Secret-99" not in text
    option = billing_client.get(f"/billing/customer-smtp.csv?from={month()}&to={month()}")
    assert "VERDI" in option.get_data(as_text=True)
    assert billing_client.get("/billing/interventions.csv?from=nope").status_code == 422


def test_support_cannot_reach_billing_actions(support_client, changes):
    """Billing reads and marks; support gets 403 everywhere under /billing."""
    pending = changes["pending"]
    assert support_client.get("/billing/interventions").status_code == 403
    assert support_client.post(f"/billing/interventions/{pending.id}/minutes",
                               data={"minutes": "5"}).status_code == 403
    assert support_client.post(f"/billing/interventions/{pending.id}/invoiced").status_code == 403
