"""Demo inbox: what the demo's local SMTP sinks received (only in `flask demo`)."""
from __future__ import annotations

from flask import Blueprint, abort

from ..auth import roles
from ..htmx import render

bp = Blueprint("demo", __name__, url_prefix="/demo")


@bp.route("/inbox")
@roles("admin", "support", "billing")
def inbox():
    """The messages the demo sinks received, newest first; refreshes itself."""
    from ..demo import INBOX

    return render("demo/inbox.html", "demo/_items.html", items=INBOX.list())


@bp.route("/inbox/<int:index>")
@roles("admin", "support", "billing")
def item(index: int):
    """One received message, its HTML shown in a sandboxed frame."""
    from ..demo import INBOX

    items = INBOX.list()
    if not 0 <= index < len(items):
        abort(404)
    return render("demo/item.html", item=items[index])
