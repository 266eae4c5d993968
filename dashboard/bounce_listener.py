"""`flask bounce-listener`: the SMTP server of the bounce domain.

It accepts the null sender, accepts RCPT only for signed VERP addresses (anything else is
refused with 550 at RCPT), and records every report against its message. A report it cannot
read is still accepted and kept as evidence; an error inside never stops the server.
"""
from __future__ import annotations

import asyncio
import logging
import time

import click
from aiosmtpd.controller import Controller
from flask import Flask

log = logging.getLogger(__name__)
DATA_SIZE_LIMIT = 10 * 1024 * 1024


class BounceHandler:
    """aiosmtpd handler: VERP check at RCPT, intake at DATA (database work off the loop)."""

    def __init__(self, app: Flask):
        self.app = app

    def _verp(self, address: str) -> str | None:
        from .extensions import db
        from .services.delivery import verp

        with self.app.app_context():
            try:
                return verp.parse(address)
            finally:
                db.session.remove()

    def _ingest(self, public_ids: list[str], raw: bytes) -> None:
        from .extensions import db
        from .services.bounces import reports

        with self.app.app_context():
            try:
                for public_id in public_ids:
                    reports.ingest(public_id, raw)
            except Exception:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        """Only signed VERP addresses of our bounce domain are accepted."""
        try:
            public_id = await asyncio.get_running_loop().run_in_executor(None, self._verp,
                                                                         address)
        except Exception:
            log.exception("VERP check failed for %r", address)
            return "451 4.3.0 Temporary failure, try again later"
        if public_id is None:
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.public_ids = [*getattr(envelope, "public_ids", []), public_id]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        """Record the report for every accepted VERP recipient."""
        public_ids = list(dict.fromkeys(getattr(envelope, "public_ids", [])))
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._ingest, public_ids,
                                                             raw)
        except Exception:
            log.exception("could not record a report for %s", public_ids)
            return "451 4.3.0 Temporary failure, try again later"
        return "250 2.0.0 Report recorded"


def start(app: Flask, host: str = "127.0.0.1", port: int = 2525) -> Controller:
    """Start the listener in a background thread (for `flask demo` and tests); returns it."""
    controller = Controller(BounceHandler(app), hostname=host, port=port,
                            data_size_limit=DATA_SIZE_LIMIT, ready_timeout=10,
                            server_hostname=app.config.get("POSTINO_BOUNCE_DOMAIN") or None)
    controller.start()
    return controller


def register_cli(app: Flask) -> None:
    """Register `flask bounce-listener`."""

    @app.cli.command("bounce-listener")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=2525, show_default=True, type=int)
    def bounce_listener(host: str, port: int) -> None:
        """Receive bounces and complaints for signed VERP addresses (Ctrl-C stops)."""
        from flask import current_app

        controller = start(current_app._get_current_object(), host, port)
        click.echo(f"bounce listener on {host}:{port}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
