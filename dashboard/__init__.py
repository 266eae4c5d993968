"""Postino: the notification-email desk. `create_app` builds the Flask application."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from . import config as config_module
from .extensions import csrf, db, login_manager, migrate

# not `htmx`: importing the dashboard.htmx module rebinds that name in this package
from .extensions import htmx as htmx_extension

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: dict | None = None) -> Flask:
    """Build the app: config from the environment, then `config` on top (tests use it)."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        static_folder=str(ROOT / "static"),
        static_url_path="/static",
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(config_module.from_environment(app.instance_path))
    if config:
        app.config.from_mapping(config)
    config_module.ensure_secrets(app.config, app.instance_path)
    if not app.debug and not app.testing:
        # Flask ships SESSION_COOKIE_SECURE=False, so setdefault alone would never apply it.
        for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
            if key not in (config or {}):
                app.config[key] = True
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_extension.init_app(app)
    login_manager.init_app(app)

    from . import i18n

    i18n.init_app(app)

    from .database import init_engine_events

    with app.app_context():
        init_engine_events(db.engine)

    from . import auth, errors, reasons, security, ui

    auth.init_app(app)
    ui.init_app(app)
    reasons.init_app(app)
    errors.init_app(app)
    security.init_app(app)

    from .blueprints import register_blueprints

    register_blueprints(app)

    from . import cli

    cli.init_app(app)
    return app
