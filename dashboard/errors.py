"""Error pages: a full page, an htmx partial, or the API's JSON shape."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .extensions import htmx

log = logging.getLogger(__name__)

API_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal_error",
}


def api_error(status: int, message: str, field: str | None = None, code: str | None = None):
    """The API's error body: {"error": {"code", "message", "field"?}}."""
    body = {"code": code or API_CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    return jsonify({"error": body}), status


def _render_error(status: int, title: str, detail: str):
    if request.path.startswith("/api/"):
        return api_error(status, detail)
    template = "errors/_error.html" if htmx else "errors/error.html"
    context = {
        "status": status,
        "title": title,
        "detail": detail,
        "required_roles": getattr(g, "required_roles", None),
    }
    return render_template(template, **context), status


def init_app(app: Flask) -> None:
    """Register handlers for the errors staff and API clients may meet."""

    @app.errorhandler(CSRFError)
    def _csrf(error):
        from .auth import login_again, view_access

        view = app.view_functions.get(request.endpoint or "")
        if not current_user.is_authenticated and view_access(view)[0] == "roles":
            # the session (and its CSRF token) expired: log in again, then back to the page
            return login_again()
        return _render_error(
            400, _("Form expired"), _("The form was stale or tampered with. Reload and try again.")
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        titles = {
            403: _("Not allowed"),
            404: _("Not found"),
            405: _("Not allowed"),
            413: _("Too large"),
        }
        detail = error.description or ""
        if error.code == 403:
            detail = _("This page needs another role.")
        elif error.code == 404:
            detail = _("There is nothing at this address.")
        elif error.code == 413:
            detail = _("The request is too large.")
        return _render_error(error.code or 500, titles.get(error.code, error.name), detail)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return _http(error)
        log.exception("Unhandled error on %s", request.path)
        from .extensions import db

        db.session.rollback()
        return _render_error(
            500, _("Something went wrong"), _("The error was logged. Nothing was changed.")
        )
