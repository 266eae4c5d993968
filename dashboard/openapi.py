"""The OpenAPI 3.1 document of the HTTP API, generated from the code: paths, methods and path
parameters from the app's URL map (every view of the `api` blueprint must be documented),
operations from the `@documented` metadata beside each view, enumerations and limits from
the constants the API itself checks (events, statuses, languages, error codes, sizes).

apispec (its core only) assembles and checks the document: it builds it, it validates
nothing at request time, so the API's answers and error format stay exactly what they are.
"""
from __future__ import annotations

import re

from apispec import APISpec
from flask import Flask

from .errors import API_CODES
from .models import EVENTS, STATUSES
from .notifications import LANGUAGES
from .services.messages.intake import MAX_ATTACHMENT_BYTES, MAX_RECIPIENTS, MAX_REFERENCE

VERSION = "1.0.0"
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
# error codes the API uses beyond the generic one of each status
SPECIFIC_CODES = ("idempotency_key_reused", "missing_variable", "invalid_variable",
                  "template_error")


def documented(summary: str, responses: dict, *, description: str = "",
               request_schema: str | None = None, parameters: list | None = None,
               operation_id: str | None = None):
    """Attach an operation's description to a view: `responses` maps a status to (text,
    schema component name or None)."""

    def decorate(view):
        view._openapi = {"summary": summary, "description": description,
                         "responses": responses, "request_schema": request_schema,
                         "parameters": parameters or [],
                         "operation_id": operation_id or view.__name__}
        return view

    return decorate


def openapi_path(rule: str) -> str:
    """`/api/v1/notifications/<public_id>` -> `/api/v1/notifications/{public_id}`."""
    return _RULE_ARG.sub(r"{\1}", rule)


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _schemas() -> dict:
    """The components, with the limits the code enforces."""
    text = {"type": "string"}
    return {
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {
                "type": "object", "required": ["code", "message"], "additionalProperties": False,
                "properties": {
                    "code": {**text, "description": "Machine-readable: "
                             + ", ".join(sorted(set(API_CODES.values()) | set(SPECIFIC_CODES)))
                             + "."},
                    "message": {**text, "description": "What went wrong, in English."},
                    "field": {**text, "description": "The field at fault: `event`, `to`, "
                              "`to[2]`, `data.<name>`, `attachments[0].content`, "
                              "`Idempotency-Key`…"},
                }}},
            "description": "Every error: nothing was stored.",
        },
        "Attachment": {
            "type": "object", "required": ["filename", "content"],
            "properties": {
                "filename": {**text, "description": "1-255 characters, no path."},
                "content_type": _nullable({**text, "description": "type/subtype; default "
                                           "application/octet-stream."}),
                "content": {**text, "description": "Base64 of the file."},
            },
        },
        "NotificationRequest": {
            "type": "object", "required": ["event", "to"], "additionalProperties": False,
            "properties": {
                "event": {"type": "string", "enum": list(EVENTS)},
                "to": {"description": f"One address, or a list of 1-{MAX_RECIPIENTS} "
                       "(internationalised addresses accepted); one message per recipient.",
                       "oneOf": [text, {"type": "array", "items": text, "minItems": 1,
                                        "maxItems": MAX_RECIPIENTS}]},
                "reference": {"description": f"Order number or other reference, one line, "
                              f"at most {MAX_REFERENCE} characters; searchable by support.",
                              "type": ["string", "integer", "null"]},
                "language": {"description": "The email's language; default: the customer's.",
                             "enum": [*LANGUAGES, None]},
                "data": {"description": "Template variables: text, numbers or true/false "
                         "(lists and objects only where the template declares them).",
                         "type": ["object", "null"]},
                "attachments": {"description": "document_sent only: at most 10, "
                                f"{MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB decoded in all.",
                                "type": ["array", "null"], "maxItems": 10,
                                "items": {"$ref": "#/components/schemas/Attachment"}},
            },
        },
        "MessageStatus": {
            "type": "object", "required": ["id", "to", "status"],
            "properties": {"id": text, "to": text,
                           "status": {"type": "string", "enum": list(STATUSES)}},
        },
        "NotificationCreated": {
            "type": "object", "required": ["messages"],
            "properties": {"messages": {"type": "array",
                                        "items": {"$ref": "#/components/schemas/MessageStatus"}}},
        },
        "TimelineEvent": {
            "type": "object", "required": ["at", "type"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "type": {**text, "description": "queued, sending, sent, deferred, failed, "
                         "expired, held, released, suppressed, bounce, delivered, opened, "
                         "complaint, resent…"},
                "smtp_code": {"type": ["integer", "null"]},
                "smtp_text": {"type": ["string", "null"]},
                "detail": {"type": ["string", "null"]},
                "fault_class": {"type": ["string", "null"],
                                "description": "Who was at fault, on refusals and reports."},
                "fault_reason": {"type": ["string", "null"]},
            },
        },
        "Notification": {
            "type": "object",
            "required": ["id", "to", "status", "event", "reference", "attempts", "created_at",
                         "events"],
            "properties": {
                "id": text, "to": text,
                "status": {"type": "string", "enum": list(STATUSES)},
                "event": {"type": "string", "enum": list(EVENTS)},
                "reference": {"type": ["string", "null"]},
                "attempts": {"type": "integer", "minimum": 0},
                "created_at": {"type": "string", "format": "date-time"},
                "events": {"type": "array",
                           "items": {"$ref": "#/components/schemas/TimelineEvent"}},
            },
        },
    }


def _operation(meta: dict) -> dict:
    responses = {}
    for status, (text, schema) in sorted(meta["responses"].items()):
        response = {"description": text}
        if schema:
            response["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{schema}"}}}
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                   "description": "Seconds to wait."}}
        responses[str(status)] = response
    operation = {"summary": meta["summary"], "operationId": meta["operation_id"],
                 "tags": ["notifications"], "responses": responses,
                 "security": [{"apiKey": []}]}
    if meta["description"]:
        operation["description"] = meta["description"]
    if meta["parameters"]:
        operation["parameters"] = meta["parameters"]
    if meta["request_schema"]:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{meta['request_schema']}"}}}}
    return operation


def build(app: Flask) -> dict:
    """The OpenAPI 3.1 document of every view of the `api` blueprint."""
    spec = APISpec(
        title="Postino API", version=VERSION, openapi_version="3.1.0",
        info={"description": "Turn the platform's events into emails and follow each one. "
              "Authenticate with `Authorization: Bearer <customer API key>`. Errors are "
              "`{\"error\": {\"code\", \"message\", \"field\"?}}` and store nothing."},
    )
    spec.components.security_scheme("apiKey", {
        "type": "http", "scheme": "bearer",
        "description": "The customer's API key (Customers page, or `flask create-customer`)."})
    for name, schema in _schemas().items():
        spec.components.schema(name, schema)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.split(".")[0] != "api":
            continue
        view = app.view_functions[rule.endpoint]
        meta = getattr(view, "_openapi", None)
        if meta is None:
            raise RuntimeError(f"API view {rule.endpoint} has no @documented description")
        path = openapi_path(rule.rule)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string"}} for name in sorted(rule.arguments)]
        operations = {method.lower(): _operation(meta)
                      for method in sorted(rule.methods - {"HEAD", "OPTIONS"})}
        spec.path(path=path, operations=operations, parameters=parameters or None)
    return spec.to_dict()
