"""`flask purge`: retention by hand, the same service the daily job runs."""
from __future__ import annotations

import click
from flask import Flask


@click.command("purge")
@click.option("--older-than", "older_than", type=click.IntRange(1, None), default=None,
              metavar="DAYS",
              help="Purge messages older than DAYS instead of the retention setting "
                   "(customers with their own retention keep it).")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def purge_command(older_than: int | None, dry_run: bool) -> None:
    """Delete messages past retention (never pending ones), in small batches; prints counts."""
    from ..services.operations import purge

    result = purge.run_job(older_than, dry_run, actor_label="cli")
    if result.skipped:
        click.echo("skipped: another purge is running (it holds the lock)")
        return
    click.echo(result.line())


def register_cli(app: Flask) -> None:
    """Register the operations commands."""
    app.cli.add_command(purge_command)
