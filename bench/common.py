"""What the sending benchmarks share: a free port, the app's config for a local relay, and
quiet logging (the figures are what they print)."""
from __future__ import annotations

import logging
import socket


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (aiosmtpd's Controller refuses port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def relay_config(database: str, port: int, credentials_key: str) -> dict:
    """create_app's config: `database`, our relay on 127.0.0.1:`port` in plain SMTP."""
    return {
        "SQLALCHEMY_DATABASE_URI": database,
        "SECRET_KEY": "bench-secret-key-of-at-least-32-characters",
        "POSTINO_CREDENTIALS_KEY": credentials_key,
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_TIMEOUT": 30,
        "MAIL_USE_TLS": False, "MAIL_USE_SSL": False, "MAIL_USERNAME": None,
    }


def quiet_logging() -> None:
    """Only warnings from the app, its migrations and the SMTP server."""
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("alembic", "mail.log", "dashboard"):
        logging.getLogger(name).setLevel(logging.WARNING)
