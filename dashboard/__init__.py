"""Postino: the notification-email desk. `create_app` builds the Flask application."""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

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
        config_module.check_secrets(app.config)
    config_module.private_sqlite_file(app.config["SQLALCHEMY_DATABASE_URI"])
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not app.debug and not app.testing:
        # Cookies follow the public address: Secure over https. Over plain http a Secure
        # cookie is dropped by the browser and login silently fails, so it is not Secure
        # there, and the start says why that is unsafe. (Flask ships them False.)
        secure = config_module.is_https(app.config["POSTINO_PUBLIC_URL"])
        for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
            if key not in (config or {}):
                app.config[key] = secure
        public_host = urlsplit(app.config["POSTINO_PUBLIC_URL"] or "").netloc
        if not secure and not config_module.is_loopback_host(public_host):
            logging.getLogger(__name__).warning(
                "POSTINO_PUBLIC_URL is %s (plain http): session cookies are not Secure and "
                "passwords cross the network unencrypted. Serve the dashboard over HTTPS and "
                "set POSTINO_PUBLIC_URL=https://...", app.config["POSTINO_PUBLIC_URL"])
    proxies = int(app.config.get("POSTINO_TRUSTED_PROXIES") or 0)
    if proxies > 0:
        # Only when configured: otherwise anyone could forge X-Forwarded-For to dodge the
        # login throttle, or X-Forwarded-Proto to look like HTTPS.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies,
                                x_host=proxies, x_port=proxies)

    from .database import engine_options, init_engine_events

    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    csrf.init_app(app)
    htmx_extension.init_app(app)
    login_manager.init_app(app)

    from . import i18n

    i18n.init_app(app)

    with app.app_context():
        init_engine_events(db.engine)

    from . import auth, errors, reasons, security, ui

    auth.init_app(app)
    ui.init_app(app)
    reasons.init_app(app)
    errors.init_app(app)
    security.init_app(app)

    from .services.operations import alerts

    alerts.listen()  # delivery announces pauses and relay trouble; operations raises alerts

    from .blueprints import register_blueprints

    register_blueprints(app)

    from . import cli

    cli.init_app(app)
    return app
