"""Settings: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.route("/")
@roles("admin")
def index():
    """The Settings page."""
    return render("settings/index.html")
