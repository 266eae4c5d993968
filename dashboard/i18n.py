"""Italian and English: the catalogs are compiled at start, the language is chosen per user."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, current_app, g, has_request_context, request
from flask_babel import get_locale
from flask_login import current_user

from .extensions import babel

LANGUAGES = {"it": "Italiano", "en": "English"}
SOURCE_DIR = Path(__file__).resolve().parent / "translations"


def compile_catalogs(target: Path) -> None:
    """Compile every .po under SOURCE_DIR into `target` when the .mo is missing or stale."""
    for po_path in SOURCE_DIR.glob("*/LC_MESSAGES/messages.po"):
        lang = po_path.parent.parent.name
        mo_path = target / lang / "LC_MESSAGES" / "messages.mo"
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        fd, tmp = tempfile.mkstemp(dir=mo_path.parent, suffix=".mo")
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalog)
        os.replace(tmp, mo_path)


def select_locale() -> str:
    """The user's chosen language, else the browser's best match, else Italian."""
    if not has_request_context():  # CLI, scheduler: no user, no browser
        return current_app.config.get("BABEL_DEFAULT_LOCALE", "it")
    # during a database outage the user row cannot be read: the browser's language then
    if (not g.get("postino_database_down") and current_user and current_user.is_authenticated
            and current_user.language in LANGUAGES):
        return current_user.language
    return request.accept_languages.best_match(list(LANGUAGES)) or "it"


def init_app(app: Flask) -> None:
    """Compile the catalogs into the instance folder and wire Flask-Babel."""
    target = Path(app.instance_path) / "translations"
    compile_catalogs(target)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(target)
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["LANGUAGES"] = LANGUAGES
    app.jinja_env.globals["get_locale"] = get_locale
