"""Commands owned by feature modules, registered here so the app factory stays small."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Each feature module exposes `register_cli(app)`; add yours to the list."""
    from importlib import import_module

    for name in ("demo", "worker", "bounce_listener", "ops_cli", "customer_cli",
                 "suppressions_cli", "webhook_cli"):
        module = import_module(f"dashboard.{name}")
        module.register_cli(app)
