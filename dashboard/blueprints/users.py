"""Users (admin): list, create, change role, deactivate — every change audited."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired

from ..auth import roles
from ..extensions import db
from ..htmx import render
from ..models import ROLES, User
from ..services import ServiceError
from ..services.accounts import users

bp = Blueprint("users", __name__, url_prefix="/users")


class UserForm(FlaskForm):
    """A new staff user."""

    email = EmailField("email", validators=[DataRequired()])
    name = StringField("name")
    role = SelectField("role", choices=list(ROLES))
    password = PasswordField("password", validators=[DataRequired()])


def _context(form: UserForm | None = None) -> dict:
    """Everything the users page needs, built in one place."""
    rows = db.session.scalars(select(User).order_by(User.email)).all()
    return {"users": rows, "form": form or UserForm(), "roles": ROLES}


@bp.route("/", methods=["GET", "POST"])
@roles("admin")
def index():
    """List users; POST creates one (422 with errors beside the fields)."""
    form = UserForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                users.create_user(form.email.data, form.role.data, form.password.data,
                                  name=form.name.data or "", actor=current_user)
            except ServiceError as exc:
                db.session.rollback()
                getattr(form, exc.field, form.email).errors = [exc.message]
                return render("users/index.html", status=422, **_context(form))
            flash(_("User created."), "success")
            return redirect(url_for("users.index"))
        return render("users/index.html", status=422, **_context(form))
    return render("users/index.html", **_context(form))


@bp.route("/<int:user_id>", methods=["POST"])
@roles("admin")
def update(user_id: int):
    """Change a user's role or active flag; answers the updated row for htmx."""
    user = db.get_or_404(User, user_id)
    role = request.form.get("role") or None
    active = request.form.get("active")
    error = None
    try:
        users.update_user(user, current_user, role=role,
                          active=None if active is None else active == "1")
    except ServiceError as exc:
        db.session.rollback()
        error = exc.message
    status = 422 if error else 200
    if request.headers.get("HX-Request"):
        return render("users/_row.html", user=user, roles=ROLES, error=error, status=status)
    if error:
        flash(error, "error")
    return redirect(url_for("users.index"))
