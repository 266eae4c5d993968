"""Jobs: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


@bp.route("/")
@roles("admin")
def index():
    """The Jobs page."""
    return render("jobs/index.html")
