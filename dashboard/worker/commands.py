"""`flask sweep` and `flask worker`: the queue, by hand or on a schedule."""
from __future__ import annotations

import click
from flask import Flask, current_app


@click.command("sweep")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 5000))
def sweep_command(batch_size: int) -> None:
    """One pass over the due queue; last line: sent=N deferred=N failed=N held=N."""
    from ..services.delivery.sweep import sweep
    from ..services.operations import jobs

    with jobs.recorded("sweep") as run:
        result = sweep(batch_size=batch_size)
        run.counts = result.as_dict()
    click.echo(result.line())


@click.command("worker")
def worker_command() -> None:
    """Run the scheduler: sweep every POSTINO_SWEEP_SECONDS, plus purge, expiry and checks."""
    from ..services.operations import jobs
    from .scheduler import make_scheduler

    app = current_app._get_current_object()
    abandoned = jobs.abandon_stale()  # runs a crashed worker left "running"
    if abandoned:
        click.echo(f"postino worker: {abandoned} job runs of a stopped worker marked abandoned")
    scheduler = make_scheduler(app)
    click.echo(f"postino worker: {len(scheduler.get_jobs())} jobs, "
               f"sweep every {app.config['POSTINO_SWEEP_SECONDS']}s (Ctrl+C to stop)")
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def register_cli(app: Flask) -> None:
    """Register the queue commands."""
    app.cli.add_command(sweep_command)
    app.cli.add_command(worker_command)
