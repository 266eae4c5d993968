"""Log: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("log", __name__, url_prefix="/log")


@bp.route("/")
@roles("support")
def index():
    """The Log page."""
    return render("log/index.html")
