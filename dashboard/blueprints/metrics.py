"""GET /metrics for Prometheus: only from the configured addresses or with the token."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..auth import public
from ..extensions import csrf
from ..services.operations import metrics

bp = Blueprint("metrics", __name__)


@bp.route("/metrics")
@public
@csrf.exempt
def scrape():
    """The Prometheus text format; 403 to a client neither allowed by address nor by token."""
    config = current_app.config
    address = request.remote_addr
    if not config.get("POSTINO_TRUSTED_PROXIES") and (
            request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded")):
        # through a proxy that Postino was not told about, every client looks like the
        # proxy (often 127.0.0.1): only the token lets it in
        address = None
    if not metrics.allowed(address, request.headers.get("Authorization"),
                           config.get("POSTINO_METRICS_ALLOW") or "",
                           config.get("POSTINO_METRICS_TOKEN")):
        return Response("forbidden: scrape from an address in POSTINO_METRICS_ALLOW or send "
                        "Authorization: Bearer <POSTINO_METRICS_TOKEN>\n", status=403,
                        mimetype="text/plain")
    body = metrics.exposition(config.get("PROMETHEUS_MULTIPROC_DIR"))
    return Response(body, headers={"Content-Type": metrics.CONTENT_TYPE,
                                   "Cache-Control": "no-store"})
