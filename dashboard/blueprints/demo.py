"""Demo inbox: what the demo's local SMTP sinks received (only in `flask demo`)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app

from ..auth import roles
from ..htmx import render

bp = Blueprint("demo", __name__, url_prefix="/demo")


def _inbox():
    """The demo's inbox (dashboard.demo.INBOX, handed over by `flask demo`)."""
    return current_app.extensions["postino_demo_inbox"]


@bp.route("/inbox")
@roles("admin", "support", "billing")
def inbox():
    """The messages the demo sinks received, newest first; refreshes itself."""
    return render("demo/inbox.html", "demo/_items.html", items=_inbox().list())


@bp.route("/inbox/<int:index>")
@roles("admin", "support", "billing")
def item(index: int):
    """One received message, its HTML shown in a sandboxed frame."""
    items = _inbox().list()
    if not 0 <= index < len(items):
        abort(404)
    return render("demo/item.html", item=items[index])
