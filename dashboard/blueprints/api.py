"""The customer-facing HTTP API (JSON, Bearer API key). Bad input stores nothing."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..auth import api_view
from ..errors import api_error
from ..extensions import csrf
from ..services.accounts import customers
from ..services.messages import ingest, intake

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
MAX_BODY = 10 * 1024 * 1024


@bp.before_request
def _authenticate():
    """Every API call needs `Authorization: Bearer <customer API key>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    customer = customers.customer_for_key(raw.strip()) if scheme.lower() == "bearer" else None
    if customer is None:
        return api_error(401, "missing or unknown API key")
    g.customer = customer
    return None


@bp.route("/notifications", methods=["POST"])
@api_view
def create_notification():
    """Ingest an event: one message per recipient, answered 202 with their statuses."""
    customer = g.customer
    if request.content_length is not None and request.content_length > MAX_BODY:
        return api_error(413, "the body is larger than 10 MB")
    if not request.is_json:
        return api_error(415, "send JSON with Content-Type: application/json")
    raw = request.get_data(cache=True)
    if len(raw) > MAX_BODY:
        return api_error(413, "the body is larger than 10 MB")
    try:
        answer = ingest.notification(customer, raw, request.headers.get("Idempotency-Key"))
    except ingest.IngestError as exc:
        return api_error(exc.status, exc.message, exc.field, code=exc.code)
    return jsonify(answer.body), answer.status


@bp.route("/notifications/<public_id>", methods=["GET"])
@api_view
def get_notification(public_id: str):
    """Status and timeline of one of the caller's own messages."""
    message = intake.get_for_customer(g.customer, public_id[:64])
    if message is None:
        return api_error(404, "no such notification")
    return jsonify(ingest.message_json(message, with_events=True))
