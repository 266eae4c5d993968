"""Billing: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("billing", __name__, url_prefix="/billing")


@bp.route("/")
@roles("billing")
def index():
    """The Billing page."""
    return render("billing/index.html")
