"""`flask customer-settings`, `flask sending on|off` and `flask rotate-credentials`: the same
services, validation and audit as the Customers and Settings pages."""
from __future__ import annotations

import click
from flask import Flask
from flask_babel import force_locale

from ..models import SENDING_MODES
from ..services.delivery.rate_limits import PRESETS
from ..services.delivery.transport import AUTHS, SECURITIES
from . import fail

CLI_ACTOR = "cli"


@click.command("customer-settings")
@click.argument("code")
@click.option("--mode", "mode", required=True, type=click.Choice(SENDING_MODES))
@click.option("--from-address", default=None)
@click.option("--from-name", default=None)
@click.option("--smtp-host", default=None)
@click.option("--smtp-port", default=None)
@click.option("--smtp-security", default=None, type=click.Choice(SECURITIES))
@click.option("--smtp-auth", default=None, type=click.Choice(AUTHS))
@click.option("--smtp-username", default=None)
@click.option("--smtp-password", default=None, help="Stored encrypted; never printed.")
@click.option("--smtp-lanes", default=None, metavar="N",
              help="Connections each worker opens to the customer's server (default 2).")
@click.option("--rate-preset", default=None, type=click.Choice(list(PRESETS)),
              help="A provider's published limits (custom: the --rate-limit-* values).")
@click.option("--rate-limit-second", default=None, metavar="N")
@click.option("--rate-limit-minute", default=None, metavar="N")
@click.option("--rate-limit-hour", default=None, metavar="N")
@click.option("--rate-limit-day", default=None, metavar="N",
              help="Messages the customer's server accepts per window (the ones given replace "
                   "the stored limits; none given: unchanged).")
@click.option("--minutes", default=None, metavar="N",
              help="Minutes spent on the change. A billable change without them is recorded "
                   "with its minutes to be completed (on the Billing page).")
@click.option("--ticket", default=None, metavar="TEXT",
              help="Ticket reference or requesting person.")
@click.option("--waive", default=None, metavar="REASON",
              help="Do not bill this change (it would be billable): the reason.")
@click.option("--confirm-plaintext", is_flag=True,
              help="Accept a login over --smtp-security none (the password travels unencrypted).")
def customer_settings_command(code: str, mode: str, minutes: str | None, ticket: str | None,
                              waive: str | None, confirm_plaintext: bool, **options) -> None:
    """Set a customer's sending mode and its fields (validated and audited like the web page);
    the change is recorded as a configuration intervention, billable unless it returns the
    customer to standard or is waived."""
    from ..services.accounts import customer_settings, customers
    from ..services.billing import interventions

    customer = customers.by_code(code)
    if customer is None:
        fail(f"no customer with code {code!r}")
    data = {"sending_mode": mode}
    data.update({name: value for name, value in options.items() if value is not None})
    request = interventions.Request(minutes=minutes, ticket=ticket, waive=waive)
    with force_locale("en"):
        try:
            result = customer_settings.save(customer, data, actor_label=CLI_ACTOR,
                                            intervention=request,
                                            confirm_plaintext=confirm_plaintext)
        except customer_settings.SettingsInvalid as exc:
            for field, message in exc.errors.items():
                click.echo(f"Error: --{field.replace('_', '-').replace('sending-mode', 'mode')}"
                           f": {message}", err=True)
            raise SystemExit(2) from None
    changed = ", ".join(sorted(result["after"])) or "nothing"
    click.echo(f"customer {customer.code}: mode={customer.sending_mode}; changed: {changed}")
    if result["intervention"] is not None:
        click.echo(_intervention_line(result["intervention"]))
    dns = result["dns"]
    if dns is not None:
        click.echo(f"DNS check of {dns['domain']}: {dns['verdict']}"
                   + (f" ({'; '.join(dns['errors'])})" if dns.get("errors") else ""))


def _intervention_line(intervention) -> str:
    """One line saying how the change was recorded for billing."""
    if intervention.waived_reason:
        billing = f"not billable (waived: {intervention.waived_reason})"
    elif not intervention.billable:
        billing = "not billable (return to standard)"
    elif intervention.minutes is None:
        billing = "billable, minutes to be completed on the Billing page"
    else:
        billing = "billable"
    minutes = "" if intervention.minutes is None else f", {intervention.minutes} min"
    estimate = intervention.estimate
    if estimate is not None:
        given = " / ".join(filter(None, [f"{estimate.minutes} min" if estimate.minutes else "",
                                         f"EUR {estimate.amount_cents / 100:.2f}"
                                         if estimate.amount_cents else ""]))
        minutes += f" (estimate of {estimate.estimated_on:%Y-%m-%d}: {given})"
    return f"intervention #{intervention.id}: {billing}{minutes}"


@click.command("sending")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--customer", "code", default=None, help="Only this customer (its code).")
def sending_command(state: str, code: str | None) -> None:
    """Turn sending on or off, for everyone or for one customer (off holds mail, never loses it)."""
    from ..services.accounts import customers
    from ..services.delivery import sending

    enabled = state == "on"
    if code:
        customer = customers.by_code(code)
        if customer is None:
            fail(f"no customer with code {code!r}")
        released = sending.set_customer(customer, enabled)
        target = f"customer {customer.code}"
    else:
        released = sending.set_global(enabled)
        target = "everyone"
    click.echo(f"sending {state} for {target}"
               + (f"; {released} held messages back in the queue" if enabled else
                  "; new and queued messages are held"))


@click.command("rotate-credentials")
def rotate_credentials_command() -> None:
    """Re-encrypt every stored secret with the first key of POSTINO_CREDENTIALS_KEY."""
    from ..services.accounts import customer_settings
    from ..services.delivery.credentials import CredentialsError

    try:
        count = customer_settings.rotate_credentials(CLI_ACTOR)
    except CredentialsError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        raise SystemExit(1) from None
    click.echo(f"re-encrypted {count} stored secrets (SMTP passwords, DKIM keys, webhook "
               "secrets) with the first key")


def register_cli(app: Flask) -> None:
    """Register the sending-mode commands."""
    app.cli.add_command(customer_settings_command)
    app.cli.add_command(sending_command)
    app.cli.add_command(rotate_credentials_command)
