"""Blueprints: thin views that parse input, call one service and pick a page or a partial."""
from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    """Register every feature's blueprint."""
    from . import (
        api,
        api_docs,
        audit,
        auth,
        billing,
        customers,
        dkim,
        doctor,
        health,
        home,
        jobs,
        log,
        metrics,
        settings,
        suppressions,
        templates,
        tracking,
        users,
        webhooks,
    )

    for module in (api, api_docs, audit, auth, billing, customers, dkim, doctor, health, home,
                   jobs, log, metrics, settings, suppressions, templates, tracking, users,
                   webhooks):
        app.register_blueprint(module.bp)
    if app.config.get("POSTINO_DEMO"):
        from . import demo

        app.register_blueprint(demo.bp)
