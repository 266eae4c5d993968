"""The few htmx conventions of the dashboard, in one place: views never hand-build headers."""
from __future__ import annotations

import json

from flask import Response, make_response, render_template

from .extensions import htmx


def render(page: str, partial: str | None = None, status: int = 200, **context) -> Response:
    """Render the partial for htmx requests (when given), the full page otherwise."""
    # a history-restore request (cache miss on Back) needs the whole page, not the fragment
    template = (partial if (partial and htmx and not htmx.boosted
                            and not htmx.history_restore_request) else page)
    response = make_response(render_template(template, **context), status)
    if partial:
        response.headers.add("Vary", "HX-Request")
    return response


def trigger(response: Response, event: str, detail: object = None) -> Response:
    """Add a client event to HX-Trigger, merging with any already set."""
    current = response.headers.get("HX-Trigger")
    events: dict = {}
    if current:
        try:
            events = json.loads(current)
        except ValueError:
            events = {name.strip(): None for name in current.split(",") if name.strip()}
    events[event] = detail
    response.headers["HX-Trigger"] = json.dumps(events)
    return response


def client_redirect(url: str) -> Response:
    """Ask htmx to navigate to `url` (a full page load)."""
    response = make_response("", 204)
    response.headers["HX-Redirect"] = url
    return response


def stop_polling(response: Response) -> Response:
    """Answer with status 286 so a self-polling fragment stops."""
    response.status_code = 286
    return response
