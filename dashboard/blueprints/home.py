"""Home (every role): the period's figures, a chart, failing customers, queue and worker."""
from __future__ import annotations

from flask import Blueprint, current_app, request, send_from_directory

from ..auth import public, roles
from ..htmx import render
from ..services.delivery import rate_limits
from ..services.operations import doctor, overview

bp = Blueprint("home", __name__)


def _context(period: str | None) -> dict:
    """Everything the Home page needs, built in one place."""
    data = overview.overview(period)
    return {"overview": data, "chart": overview.chart(data), "periods": overview.PERIODS,
            "series": overview.SERIES, "series_labels": overview.SERIES_LABELS,
            "series_colours": overview.SERIES_COLOURS, "rate_waiting": rate_limits.waiting(),
            "customer_url": lambda c: doctor.url_or_none("customers.detail", code=c.code)}


@bp.route("/")
@roles("admin", "support", "billing")
def index():
    """The Home page; htmx (the 30 s refresh, the period links) gets the overview partial."""
    return render("home/index.html", "home/_overview.html",
                  **_context(request.args.get("period")))


@bp.route("/banners")
@roles("admin", "support", "billing")
def banners():
    """The banner strip alone, for htmx refreshes."""
    return render("_banners.html")


@bp.route("/favicon.ico")
@public
def favicon():
    """The tab icon, at the address browsers ask for by themselves (an envelope on blue)."""
    return send_from_directory(current_app.static_folder, "favicon.ico",
                               mimetype="image/vnd.microsoft.icon", max_age=86400)
