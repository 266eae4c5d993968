"""Templates: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("templates", __name__, url_prefix="/templates")


@bp.route("/")
@roles("admin")
def index():
    """The Templates page."""
    return render("templates/index.html")
