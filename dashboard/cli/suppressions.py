"""`flask reclassify-suppressions`: re-read the evidence of automatic suppressions with the
current rules (services.bounces.reclassify, the same run as the Suppressions page's button)."""
from __future__ import annotations

import click
from flask import Flask


@click.command("reclassify-suppressions")
@click.option("--dry-run", is_flag=True, help="Only print what would be lifted.")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
def reclassify_command(dry_run: bool, batch_size: int) -> None:
    """Lift the automatic suppressions the current rules would not create (reason
    'reclassified', audited, never billable); prints each change, then the counts."""
    from ..services.bounces import reclassify

    verb = "would lift" if dry_run else "lifted"

    def on_change(change: dict) -> None:
        click.echo(f"{verb} #{change['id']} {change['address']} ({change['scope']}, "
                   f"{change['reason']}): {change['why']}")

    summary = reclassify.run(dry_run=dry_run, batch=batch_size, on_change=on_change)
    click.echo(summary.line())


def register_cli(app: Flask) -> None:
    """Register the suppression list's commands."""
    app.cli.add_command(reclassify_command)
