"""The OpenAPI document describes the API as it answers: schemathesis drives the live app
(real HTTP, a bounded number of generated requests) and checks every answer against it."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate

from dashboard.models import EVENTS


@pytest.fixture
def api_key(make_customer):
    """A customer's API key the generated requests authenticate with."""
    return make_customer()[1]


@pytest.fixture
def api_schema(live_server, api_key):
    """The document as the live app serves it."""
    return schemathesis.openapi.from_url(f"{live_server}/api/v1/openapi.json")


def test_the_document_is_valid_openapi_3_1_and_public(client):
    """Served without an API key, valid, and covering both operations with their errors."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    post = document["paths"]["/api/v1/notifications"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "413", "415", "422", "503"}
    assert post["parameters"][0]["name"] == "Idempotency-Key"
    get = document["paths"]["/api/v1/notifications/{public_id}"]["get"]
    assert set(get["responses"]) == {"200", "401", "404", "503"}
    request = document["components"]["schemas"]["NotificationRequest"]
    assert request["properties"]["event"]["enum"] == list(EVENTS)
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_the_docs_page_uses_vendored_assets_and_no_inline_script(client):
    """Swagger UI from /static (no CDN), started by a static file under the CSP."""
    response = client.get("/api/docs")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "/static/js/api-docs.js" in html and "http" not in html.split("<body>")[1].replace(
        'href="/api', "")
    assert "<script>" not in html
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=100, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case, api_key):
    """Generated requests (valid and invalid): no 5xx, every status, header and body as
    documented, requests outside the schema refused. A request the schema allows may still
    be refused with a documented 422 (an address that does not exist as one, a template
    variable missing), so acceptance of every schema-valid request is not checked."""
    case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])


def test_accepted_and_read_answers_match_the_document(api_schema, api_key, relay):
    """The answers random data rarely reaches: 202 for a valid notification, 200 for a
    message read back after the sweep, with its timeline, and the Idempotency-Key replay."""
    from dashboard.services.delivery.sweep import sweep

    headers = {"Authorization": f"Bearer {api_key}", "Idempotency-Key": "order-ORD-1-closed"}
    create = api_schema["/api/v1/notifications"]["POST"]
    body = {"event": "order_closed", "to": ["a@example.com", "b@example.com"],
            "reference": "ORD-1", "language": "it",
            "data": {"order_number": "ORD-1", "order_date": "1/1/2026", "total": "€ 5",
                     "customer_name": "Bar", "agent_name": "Marco",
                     "link": "https://x.example.com/o/1"}}
    first = create.Case(body=body).call_and_validate(headers=headers)
    assert first.status_code == 202
    again = create.Case(body=body).call_and_validate(headers=headers)
    assert again.json() == first.json()
    assert sweep().sent == 2
    read = api_schema["/api/v1/notifications/{public_id}"]["GET"]
    public_id = first.json()["messages"][0]["id"]
    answer = read.Case(path_parameters={"public_id": public_id}).call_and_validate(
        headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 200
    assert [e["type"] for e in answer.json()["events"]] == ["queued", "sent"]
