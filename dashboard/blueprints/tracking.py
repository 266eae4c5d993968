"""Open tracking pixel: always a GIF, quickly; only valid tokens are recorded."""
from __future__ import annotations

import logging

from flask import Blueprint, make_response

from ..auth import public
from ..extensions import csrf, db
from ..services.operations import tracking

bp = Blueprint("tracking", __name__)
log = logging.getLogger(__name__)


@bp.route("/o/<token>.gif")
@public
@csrf.exempt
def pixel(token: str):
    """Record an open for a valid token, then answer the 1×1 GIF whatever happened."""
    try:
        tracking.record_open(token)
    except Exception:  # the image must load even when the database hiccups
        db.session.rollback()
        log.exception("open tracking: could not record an open")
    response = make_response(tracking.PIXEL_GIF)
    response.headers["Content-Type"] = "image/gif"
    response.headers["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    response.headers["Pragma"] = "no-cache"
    return response
