"""The command line (`flask <command>`, the contract in DESIGN.md): every module that defines
commands registers them itself with `register_cli(app)`; MODULES lists those modules."""
from __future__ import annotations

from importlib import import_module

import click
from flask import Flask

MODULES = (
    "dashboard.cli.accounts",      # create-user, create-customer
    "dashboard.cli.customers",     # customer-settings, sending, rotate-credentials
    "dashboard.cli.operations",    # purge
    "dashboard.cli.suppressions",  # reclassify-suppressions
    "dashboard.worker.commands",   # sweep, worker
    "dashboard.demo",              # demo
    "dashboard.bounce_listener",   # bounce-listener
)


def fail(message: str) -> None:
    """Print a one-line error and exit with status 2 (bad arguments)."""
    click.echo(f"Error: {message}", err=True)
    raise SystemExit(2)


def init_app(app: Flask) -> None:
    """Register every command."""
    for name in MODULES:
        import_module(name).register_cli(app)
