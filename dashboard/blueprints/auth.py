"""Staff login, logout and language choice."""
from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField
from wtforms.validators import DataRequired

from ..auth import public, roles
from ..config import is_https, is_loopback_host
from ..i18n import LANGUAGES
from ..services import ServiceError
from ..services.accounts import users

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    """Email and password; 'remember me' is off unless ticked."""

    email = EmailField("email", validators=[DataRequired()])
    password = PasswordField("password", validators=[DataRequired()])
    remember = BooleanField("remember", default=False)


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login."""
    # Browsers read "/\evil.com" and "/\t/evil.com" as "//evil.com": refuse them too.
    if target and any(c == "\\" or ord(c) < 33 or ord(c) == 127 for c in target):
        target = None
    if target and target.startswith("/") and not target.startswith("//"):
        if not urlsplit(target).netloc:
            return target
    return url_for("home.index")


def _plain_http_warning() -> tuple[str, str] | None:
    """Why logging in over this plain-HTTP request fails or is unsafe, as (level, text).

    Browsers keep Secure cookies only over HTTPS (and on localhost), so a Secure session
    cookie over plain HTTP makes every login bounce back here without a word.
    """
    if request.is_secure or is_loopback_host(request.host):
        return None
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        public_url = current_app.config.get("POSTINO_PUBLIC_URL") or ""
        target = (public_url if is_https(public_url)
                  else request.url.replace("http://", "https://", 1))
        return "error", _(
            "This page was opened over plain HTTP, but the session cookie is only sent over "
            "HTTPS: your browser will not keep the login. Open %(url)s instead, or ask the "
            "administrator to serve the dashboard over HTTPS.", url=target)
    return "warning", _(
        "This connection is not encrypted (plain HTTP): your password and your session travel "
        "in clear. Ask the administrator to serve the dashboard over HTTPS.")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """Log a staff member in; repeated failures per account and per client address make
    the next attempt wait longer and longer (429 with Retry-After)."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = LoginForm()
    error = None
    status = 200
    if form.validate_on_submit():
        result = users.attempt_login(form.email.data, form.password.data, request.remote_addr)
        if result.wait:
            seconds = math.ceil(result.wait)
            error = ngettext("Too many failed attempts. Try again in %(num)d second.",
                             "Too many failed attempts. Try again in %(num)d seconds.", seconds)
            response = make_response(render_template(
                "auth/login.html", form=form, error=error, transport=_plain_http_warning()), 429)
            response.headers["Retry-After"] = str(seconds)
            return response
        if result.user is not None:
            login_user(result.user, remember=bool(form.remember.data))
            return redirect(_safe_next(request.args.get("next")))
        error = _("Wrong email or password.")
        status = 401
    elif request.method == "POST":
        error = _("Enter your email and password.")
        status = 422
    return render_template("auth/login.html", form=form, error=error,
                           transport=_plain_http_warning()), status


@bp.route("/logout", methods=["POST"])
@roles("admin", "support", "billing")
def logout():
    """Log out (POST, so a link elsewhere cannot log staff out)."""
    logout_user()
    flash(_("You are logged out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/language", methods=["POST"])
@roles("admin", "support", "billing")
def language():
    """Remember the UI language the user picked."""
    choice = request.form.get("language", "")
    try:
        users.set_language(current_user, choice)
    except ServiceError:
        flash(_("Unknown language."), "error")
    else:
        flash(_("Language: %(name)s", name=LANGUAGES[choice]), "info")
    return redirect(_safe_next(request.form.get("next")))
