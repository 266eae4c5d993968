"""Access control: every view declares who may use it, and a central check enforces it.

A view is reachable only when it is marked with `@roles(...)`, `@public` or `@api_view`;
an unmarked view is refused (deny by default), so a forgotten decorator cannot open a page.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, request
from flask_login import current_user, login_url

from .extensions import db, login_manager
from .htmx import client_redirect
from .models import ROLES, User


def roles(*allowed: str):
    """Mark a view as reserved to staff with one of `allowed` roles (admins always pass)."""
    unknown = set(allowed) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    def decorate(view):
        view._postino_roles = frozenset(allowed) | {"admin"}
        return view

    return decorate


def public(view):
    """Mark a view as open to anyone (login page, health check, tracking pixel)."""
    view._postino_public = True
    return view


def api_view(view):
    """Mark a view as authenticated by a customer API key instead of a staff login."""
    view._postino_api = True
    return view


def view_access(view) -> tuple[str, frozenset[str]]:
    """Describe how a view is protected: ('public'|'api'|'roles'|'none', roles)."""
    if getattr(view, "_postino_public", False):
        return "public", frozenset()
    if getattr(view, "_postino_api", False):
        return "api", frozenset()
    allowed = getattr(view, "_postino_roles", None)
    if allowed:
        return "roles", allowed
    return "none", frozenset()


def _htmx_page() -> str | None:
    """The local path of the page an htmx request came from (to return to after login)."""
    parts = urlsplit(request.headers.get("HX-Current-URL", ""))
    if parts.netloc and parts.netloc != request.host:
        return None
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _check_access():
    """Before every request: enforce the view's declared access."""
    if request.endpoint is None:
        return None  # 404 / 405 are handled by Flask
    if request.endpoint == "static":
        return None
    view = current_app.view_functions.get(request.endpoint)
    kind, allowed = view_access(view)
    if kind in ("public", "api"):
        return None
    if not current_user.is_authenticated:
        if request.headers.get("HX-Request"):
            # a redirect would swap the login page into the fragment: send the whole tab there
            return client_redirect(login_url(login_manager.login_view, _htmx_page()))
        return login_manager.unauthorized()
    if kind == "none" or current_user.role not in allowed:
        g.required_roles = sorted(allowed - {"admin"}) or ["admin"]
        abort(403)
    return None


@login_manager.user_loader
def _load_user(user_id: str):
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.active else None


def init_app(app: Flask) -> None:
    """Install the access check and the login manager's settings."""
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    login_manager.session_protection = "strong"
    app.before_request(_check_access)
