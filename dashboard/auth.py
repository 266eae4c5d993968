"""Access control: every view declares who may use it, and a central check enforces it.

A view is reachable only when it is marked with `@roles(...)`, `@public` or `@api_view`;
an unmarked view is refused (deny by default), so a forgotten decorator cannot open a page.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, request
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


def _local(url: str | None) -> str | None:
    """The same-site path (and query) of `url`, None for another site or nothing."""
    parts = urlsplit(url or "")
    if not parts.path or (parts.netloc and parts.netloc != request.host):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _return_to() -> str | None:
    """Where to come back after logging in again: the page (and search) the user was on.

    An htmx GET that refines the page it came from (a search or a pager: same path, its own
    query) is the search the user wants; any other htmx request, or a form posted after the
    session expired, returns to the page it came from, not to an address that only accepts
    POST."""
    here = request.full_path if request.query_string else request.path
    if request.method == "GET" and not request.headers.get("HX-Request"):
        return here
    came_from = _local(request.headers.get("HX-Current-URL") or request.referrer)
    if request.method == "GET" and (came_from is None or (
            request.query_string and urlsplit(came_from).path == request.path)):
        return here
    return came_from


def login_again():
    """Send an anonymous visitor (an expired session) to the login form, to come back to
    the page and search they were on."""
    target = login_url(login_manager.login_view, _return_to())
    if request.headers.get("HX-Request"):
        # a redirect would swap the login page into the fragment: send the whole tab there
        return client_redirect(target)
    return redirect(target)


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
        return login_again()
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
