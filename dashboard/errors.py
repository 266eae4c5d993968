"""Error pages: a full page, an htmx partial, or the API's JSON shape."""
from __future__ import annotations

import logging

from flask import Flask, current_app, g, jsonify, make_response, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .database import is_unavailable
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
    503: "database_unavailable",
}
RETRY_AFTER_SECONDS = 30  # what a client should wait before retrying during an outage


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
        response = make_response(_render_error(error.code or 500,
                                               titles.get(error.code, error.name), detail))
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)  # RFC 9110
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return _http(error)
        if is_unavailable(error):
            return _database_unavailable(error)
        log.exception("Unhandled error on %s", request.path)
        from .extensions import db

        db.session.rollback()
        return _render_error(
            500, _("Something went wrong"), _("The error was logged. Nothing was changed.")
        )


def _database_unavailable(error: Exception):
    """503 with Retry-After: the API in English JSON, pages without touching the database
    (no user, no banners: the layout would query it again)."""
    from .extensions import db

    log.warning("database unavailable on %s %s: %s", request.method, request.path,
                str(getattr(error, "orig", error)).strip().splitlines()[0][:300]
                if str(getattr(error, "orig", error)).strip() else type(error).__name__)
    try:
        db.session.rollback()
    except Exception:  # the connection is already gone; the session is discarded anyway
        pass
    g.postino_database_down = True  # the locale comes from the browser, not the user row
    if request.path.startswith("/api/"):
        response, status = api_error(503, "the database is not answering: nothing was stored. "
                                          f"Retry in {RETRY_AFTER_SECONDS} seconds.")
    else:
        # Rendered without Flask's context processors: Flask-Login's would load the user
        # from the database to put `current_user` in the context.
        template = current_app.jinja_env.get_template(
            "errors/_unavailable.html" if htmx else "errors/unavailable.html")
        again = request.full_path.rstrip("?") if request.method == "GET" else "/"
        response, status = make_response(template.render(again=again)), 503
    response.status_code = status
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
