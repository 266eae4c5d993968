"""Doctor: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("doctor", __name__, url_prefix="/doctor")


@bp.route("/")
@roles("support")
def index():
    """The Doctor page."""
    return render("doctor/index.html")
