"""Customers: placeholder page until its issue builds it."""
from __future__ import annotations

from flask import Blueprint

from ..auth import roles
from ..htmx import render

bp = Blueprint("customers", __name__, url_prefix="/customers")


@bp.route("/")
@roles("admin")
def index():
    """The Customers page."""
    return render("customers/index.html")
