"""Billing of suppression removals: aggregates per customer per month, the lists, CSV, invoiced."""
from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from dashboard.extensions import db
from dashboard.models import AuditEntry, SuppressionRemoval
from dashboard.services import ServiceError
from dashboard.services.billing import billing
from dashboard.services.bounces import suppressions

HX = {"HX-Request": "true"}


@pytest.fixture
def removals(make_customer, make_user):
    """Removals in March and April 2026 for two customers, some billable, one automatic."""
    acme, _ = make_customer("ACME", "Acme S.p.A.")
    beta, _ = make_customer("BETA", "Beta S.r.l.")
    support = make_user("support")

    def removal(address, customer, when, minutes, billable, automatic=False):
        entry = suppressions.suppress(address, "hard_bounce", customer)
        row = SuppressionRemoval(suppression=entry, address=address, customer=customer,
                                 reason="asked", ticket=f"T-{minutes}", minutes_spent=minutes,
                                 billable=billable, automatic=automatic,
                                 removed_at=datetime(2026, *when, tzinfo=UTC),
                                 removed_by_id=None if automatic else support.id)
        entry.lifted_at = row.removed_at
        db.session.add(row)
        db.session.flush()
        return row

    rows = {
        "a1": removal("a@example.org", acme, (3, 2, 10), 10, False),
        "a2": removal("a@example.org", acme, (3, 20, 9), 25, True),
        "a3": removal("=cmd@example.org", acme, (4, 5, 9), 40, True),
        "b1": removal("b@example.org", beta, (4, 7, 9), 5, False),
        "auto": removal("c@example.org", None, (4, 8, 9), 0, False, automatic=True),
    }
    db.session.commit()
    return {"acme": acme, "beta": beta, **rows}


def spring() -> billing.Filters:
    """March–April 2026."""
    return billing.Filters(date(2026, 3, 1), date(2026, 4, 1))


def test_removals_are_summed_per_customer_per_month(removals):
    """Count, billable count and minutes per (customer, month); automatic ones excluded."""
    rows = billing.summary(spring())
    figures = [(r.month.strftime("%Y-%m"), r.customer.code, r.count, r.billable, r.minutes,
                r.billable_minutes) for r in rows]
    assert figures == [("2026-04", "ACME", 1, 1, 40, 40), ("2026-04", "BETA", 1, 0, 5, 0),
                       ("2026-03", "ACME", 2, 1, 35, 25)]
    total = billing.totals(rows)
    assert (total.count, total.billable, total.minutes) == (4, 2, 80)


def test_filters_narrow_by_period_customer_and_billable(removals):
    """One month, one customer, billable only: the list behind each figure."""
    march = billing.Filters(date(2026, 3, 1), date(2026, 3, 1))
    assert [r.id for r in billing.removals(march)] == [removals["a1"].id, removals["a2"].id]
    acme_billable = billing.Filters(date(2026, 3, 1), date(2026, 4, 1),
                                    customer_id=removals["acme"].id, billable_only=True)
    assert [r.id for r in billing.removals(acme_billable)] == [removals["a2"].id,
                                                               removals["a3"].id]


def test_the_csv_lists_every_removal_and_defuses_formulas(removals):
    """One line per staff removal; a cell starting with '=' is quoted."""
    rows = list(csv.reader(io.StringIO(billing.csv_text(spring()))))
    assert rows[0] == list(billing.CSV_COLUMNS)
    assert len(rows) == 5
    line = rows[3]
    assert line[2] == "ACME" and line[4] == "'=cmd@example.org" and line[7] == "40"
    assert line[8] == "yes"


def test_marking_invoiced_is_audited_and_only_once(removals, make_user):
    """Billable removals are marked once, audited; non-billable ones are refused."""
    actor = make_user("billing")
    billing.mark_invoiced(removals["a2"], actor)
    assert removals["a2"].invoiced_at is not None
    assert db.session.scalar(db.select(AuditEntry).where(
        AuditEntry.action == "removal.invoiced")).actor_id == actor.id
    with pytest.raises(ServiceError):
        billing.mark_invoiced(removals["a2"], actor)
    with pytest.raises(ServiceError):
        billing.mark_invoiced(removals["a1"], actor)
    [march] = [r for r in billing.summary(spring()) if r.month == date(2026, 3, 1)]
    assert (march.invoiced, march.to_invoice) == (1, 0)


def test_the_page_is_for_billing_and_admin(client, support_client, billing_client, admin_client):
    """Support may not see billing; billing staff and admins may."""
    assert client.get("/billing/").status_code == 302
    assert support_client.get("/billing/").status_code == 403
    assert billing_client.get("/billing/").status_code == 200
    assert admin_client.get("/billing/").status_code == 200


def test_the_page_shows_the_figures_and_the_list_behind_them(billing_client, removals):
    """The summary links each figure to its removals; htmx gets fragments."""
    page = billing_client.get("/billing/?from=2026-03&to=2026-04").get_data(as_text=True)
    assert "Acme S.p.A." in page and "Beta S.r.l." in page and ">80<" in page
    response = billing_client.get(
        f"/billing/removals?month=2026-03&customer={removals['acme'].id}&billable=1", headers=HX)
    body = response.get_data(as_text=True)
    assert "<html" not in body and "T-25" in body and "T-10" not in body
    assert "Mark invoiced" in body


def test_bad_filters_answer_422(billing_client):
    """A malformed month or an unknown customer: 422 beside the field."""
    assert billing_client.get("/billing/?from=march").status_code == 422
    assert billing_client.get("/billing/?customer=999").status_code == 422
    assert billing_client.get("/billing/?from=2026-05&to=2026-04").status_code == 422


def test_csv_export_downloads_the_period(billing_client, removals):
    """The CSV answers as an attachment named after the period."""
    response = billing_client.get("/billing/export.csv?from=2026-03&to=2026-04")
    assert response.mimetype == "text/csv"
    assert "removals-2026-03-2026-04.csv" in response.headers["Content-Disposition"]
    assert response.get_data(as_text=True).count("\r\n") == 5


def test_mark_invoiced_in_place(billing_client, removals):
    """The button answers the updated row; a second click answers 422."""
    url = f"/billing/removals/{removals['a3'].id}/invoiced"
    response = billing_client.post(url, headers=HX)
    assert response.status_code == 200 and "invoiced" in response.get_data(as_text=True)
    assert billing_client.post(url, headers=HX).status_code == 422
    assert billing_client.post("/billing/removals/999/invoiced").status_code == 404
