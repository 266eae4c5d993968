"""Settings (gear menu → Settings): the global sending switch and the global values."""
from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from ..auth import roles
from ..htmx import render, trigger
from ..services.accounts import global_settings
from ..services.core import settings
from ..services.delivery import sending as sending_service
from ..services.operations import banners
from .dkim import section_context as dkim_context

bp = Blueprint("settings", __name__, url_prefix="/settings")


def _context(values: dict | None = None, errors: dict | None = None) -> dict:
    """Everything the Settings page needs, built in one place."""
    return {
        "values": values if values is not None else global_settings.form_values(),
        "errors": errors or {},
        "defaults": global_settings.defaults(),
        "sending_enabled": settings.sending_enabled(),
        "held": banners.held_count(),
        **dkim_context(None),
    }


@bp.route("/", methods=["GET", "POST"])
@roles("admin")
def index():
    """Show the settings; POST saves them (422 with errors beside the fields, nothing saved)."""
    if request.method == "POST":
        form = {key: request.form.get(key, "") for key in request.form}
        try:
            changed = global_settings.save(form, current_user)
        except global_settings.SettingsInvalid as exc:
            return render("settings/index.html", "settings/_form.html", status=422,
                          **_context(form, exc.errors))
        message = _("Settings saved.") if changed else _("Nothing changed.")
        if request.headers.get("HX-Request"):
            response = render("settings/index.html", "settings/_form.html",
                              saved=message, **_context())
            return trigger(response, "banners")
        flash(message, "success")
        return redirect(url_for("settings.index"))
    return render("settings/index.html", **_context())


@bp.route("/sending/<state>", methods=["POST"])
@roles("admin")
def sending(state: str):
    """Turn sending on or off for everyone (turning off is confirmed in the page first)."""
    if state not in ("on", "off"):
        abort(404)
    released = sending_service.set_global(state == "on", current_user)
    if state == "on":
        message = ngettext("Sending is on. %(num)d held message went back to the queue.",
                           "Sending is on. %(num)d held messages went back to the queue.",
                           released)
    else:
        message = _("Sending is off: new and queued messages are held, nothing is lost.")
    if request.headers.get("HX-Request"):
        response = render("settings/_sending.html", saved=message, **_context())
        return trigger(response, "banners")
    flash(message, "success")
    return redirect(request.referrer or url_for("settings.index"))

