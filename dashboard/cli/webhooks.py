"""`flask webhooks`: one pass of the webhook job by hand (outbox, then due deliveries)."""
from __future__ import annotations

import click
from flask import Flask


@click.command("webhooks")
@click.option("--max-seconds", type=click.FloatRange(1, None), default=60.0,
              help="Stop delivering after this many seconds (what is left waits).")
def webhooks_command(max_seconds: float) -> None:
    """Read new events into the webhook outbox and deliver the due ones; prints counts."""
    from ..services.operations import jobs
    from ..services.webhooks import delivery

    with jobs.recorded("webhooks") as run:
        run.counts = delivery.run(max_seconds=max_seconds)
    click.echo(" ".join(f"{key}={value}" for key, value in run.counts.items()))


def register_cli(app: Flask) -> None:
    """Register the webhook command."""
    app.cli.add_command(webhooks_command)
