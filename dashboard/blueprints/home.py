"""Home: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("home", __name__)


@bp.route("/")
@roles("admin", "support", "billing")
def index():
    """The Home page."""
    return render("home/index.html")


@bp.route("/banners")
@roles("admin", "support", "billing")
def banners():
    """The banner strip alone, for htmx refreshes."""
    return render("_banners.html")
