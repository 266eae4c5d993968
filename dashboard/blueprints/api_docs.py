"""The API's description: GET /api/v1/openapi.json (OpenAPI 3.1, generated from the code) and
GET /api/docs (Swagger UI, vendored, rendered from that document). Both are public: they
describe the API and hold no data."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

from ..auth import public
from ..extensions import csrf
from ..openapi import build

bp = Blueprint("api_docs", __name__)


@bp.route("/api/v1/openapi.json")
@public
@csrf.exempt
def openapi_document():
    """The OpenAPI document (built once per process: it only changes with the code)."""
    document = current_app.extensions.get("postino_openapi")
    if document is None:
        document = current_app.extensions["postino_openapi"] = build(current_app)
    return jsonify(document)


@bp.route("/api/docs")
@public
def docs():
    """The API reference page for the platform's developers."""
    return render_template("api_docs/index.html")
