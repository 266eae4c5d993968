"""CSV export of the current search: streamed, UTF-8, header row, no formulas."""
from __future__ import annotations

import csv
import io


def read_csv(response):
    """Rows of a CSV response (BOM and all)."""
    return list(csv.reader(io.StringIO(response.get_data().decode("utf-8-sig"))))


def test_the_export_streams_the_current_search_with_a_header_row(support_client, make_message):
    """Only matching messages, newest first, with the columns named in the header."""
    make_message(reference="ORD-2026-000001", to="anna.è@example.com")
    second = make_message(reference="ORD-2026-000002", status="failed",
                          status_reason="550 5.1.1 user unknown")
    make_message(reference="ACT-9")
    response = support_client.get("/log/export.csv?q=ord-2026")
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.get_data().startswith("\ufeff".encode())
    rows = read_csv(response)
    header, body = rows[0], rows[1:]
    assert header[:8] == ["created_at", "message_id", "customer", "event", "reference",
                          "recipient", "subject", "status"]
    assert [r[4] for r in body] == ["ORD-2026-000002", "ORD-2026-000001"]
    record = dict(zip(header, body[0], strict=True))
    assert record["message_id"] == second.public_id and record["customer"] == "ACME"
    assert record["status_reason"] == "550 5.1.1 user unknown"
    assert body[1][5] == "anna.è@example.com"


def test_the_export_neutralises_spreadsheet_formulas(support_client, make_message):
    """A reference a spreadsheet would run as a formula is exported as text."""
    make_message(reference="=HYPERLINK(1)")
    rows = read_csv(support_client.get("/log/export.csv?q=%3DHYPER"))
    assert rows[1][4] == "'=HYPERLINK(1)"


def test_the_export_reads_past_one_batch(support_client, make_customer, insert_messages):
    """More rows than one keyset batch are all exported, each once."""
    customer, _ = make_customer()
    insert_messages(1203, customer)
    rows = read_csv(support_client.get("/log/export.csv"))
    assert len(rows) == 1204
    assert len({r[1] for r in rows[1:]}) == 1203
