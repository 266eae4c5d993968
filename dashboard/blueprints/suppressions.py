"""Suppressions: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")


@bp.route("/")
@roles("support")
def index():
    """The Suppressions page."""
    return render("suppressions/index.html")
