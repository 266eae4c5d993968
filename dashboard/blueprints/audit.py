"""Audit (admin): who changed what, newest first."""
from __future__ import annotations

from flask import Blueprint, request
from sqlalchemy import select

from ..auth import roles
from ..extensions import db
from ..htmx import render
from ..models import AuditEntry

bp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE = 50


@bp.route("/")
@roles("admin")
def index():
    """Audit entries, newest first, with keyset paging ('before' an id)."""
    before = request.args.get("before", type=int)
    action = (request.args.get("action") or "").strip()
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(PAGE + 1)
    if before:
        query = query.where(AuditEntry.id < before)
    if action:
        query = query.where(AuditEntry.action.startswith(action))
    rows = db.session.scalars(query).all()
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return render("audit/index.html", "audit/_rows.html", entries=rows, more=more,
                  action=action, next_before=rows[-1].id if rows else None)
