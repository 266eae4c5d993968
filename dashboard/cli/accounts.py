"""`flask create-user` and `flask create-customer`: the staff and the customers."""
from __future__ import annotations

import click
from flask import Flask
from flask_babel import force_locale

from ..models import ROLES
from ..services import ServiceError
from . import fail


@click.command("create-user")
@click.argument("email")
@click.option("--role", required=True, metavar="|".join(ROLES),
              help="admin, support or billing.")
@click.option("--password", default=None, help="Prompted for when omitted.")
@click.option("--name", default="")
def create_user_command(email: str, role: str, password: str | None, name: str) -> None:
    """Create a staff user."""
    from ..services.accounts import users

    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with force_locale("en"):  # services translate their messages; the CLI speaks English
            user = users.create_user(email, role, password, name=name)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"created {user.role} {user.email}")


@click.command("create-customer")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--language", default="it", type=click.Choice(["it", "en"]))
def create_customer_command(code: str, name: str, language: str) -> None:
    """Create a customer; the API key is printed as the last line (shown once)."""
    from ..services.accounts import customers

    try:
        with force_locale("en"):
            customer, key = customers.create_customer(code, name, language=language)
    except ServiceError as exc:
        fail(exc.message)
    click.echo(f"created customer {customer.code} ({customer.name}); API key:")
    click.echo(key)


def register_cli(app: Flask) -> None:
    """Register the accounts commands."""
    app.cli.add_command(create_user_command)
    app.cli.add_command(create_customer_command)
