"""GET /healthz for load balancers: the database answers, and the worker's heartbeat age."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from ..auth import public
from ..extensions import csrf, db

bp = Blueprint("health", __name__)


@bp.route("/healthz")
@public
@csrf.exempt
def healthz():
    """200 when the database answers, 503 otherwise; no data beyond the heartbeat age."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # any database failure means unhealthy
        db.session.rollback()
        return jsonify({"status": "error", "database": "down"}), 503
    from ..services.operations import jobs

    age = jobs.heartbeat_age_seconds()
    return jsonify({"status": "ok", "database": "ok", "worker_heartbeat_age": age})
