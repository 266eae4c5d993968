"""Configuration: every setting is read from the environment here, and only here."""
from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

MIN_SECRET_KEY = 32


def _bool(value: str | None, default: bool = False) -> bool:
    """Parse an environment flag the way operators write them."""
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    """Read an integer variable, failing loudly when it is not one."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a whole number, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    """Read a number of seconds, failing loudly when it is not one."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from None


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    """Read a variable that takes one of a few words, failing loudly on any other."""
    raw = (os.environ.get(name) or default).strip().lower()
    if raw not in allowed:
        raise RuntimeError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def from_environment(instance_path: str) -> dict:
    """Build the config mapping from environment variables with development defaults."""
    default_db = "sqlite:///" + str(Path(instance_path) / "postino.sqlite3")
    return {
        "SQLALCHEMY_DATABASE_URI": os.environ.get("DATABASE_URL") or default_db,
        "POSTINO_DATABASE_IS_DEFAULT": not os.environ.get("DATABASE_URL"),
        "SECRET_KEY": os.environ.get("SECRET_KEY") or None,
        "MAIL_SERVER": os.environ.get("MAIL_SERVER", "localhost"),
        "MAIL_PORT": _int("MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool(os.environ.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _bool(os.environ.get("MAIL_USE_SSL")),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_TIMEOUT": _int("MAIL_TIMEOUT", 30),
        "POSTINO_SENDER_NOTIFICATION": os.environ.get(
            "POSTINO_SENDER_NOTIFICATION", "Postino <notification@postino.example.com>"
        ),
        "POSTINO_SENDER_REGISTRATION": os.environ.get(
            "POSTINO_SENDER_REGISTRATION", "Postino <registration@postino.example.com>"
        ),
        "POSTINO_BOUNCE_DOMAIN": os.environ.get(
            "POSTINO_BOUNCE_DOMAIN", "bounces.postino.example.com"
        ),
        "POSTINO_CREDENTIALS_KEY": os.environ.get("POSTINO_CREDENTIALS_KEY") or None,
        "POSTINO_RETENTION_DAYS": _int("POSTINO_RETENTION_DAYS", 30),
        "POSTINO_PUBLIC_URL": os.environ.get("POSTINO_PUBLIC_URL", "http://localhost:5000"),
        "POSTINO_SWEEP_SECONDS": _int("POSTINO_SWEEP_SECONDS", 5),
        "POSTINO_LEASE_SECONDS": _int("POSTINO_LEASE_SECONDS", 300),
        "POSTINO_RELAY_IPS": os.environ.get("POSTINO_RELAY_IPS", "127.0.0.1"),
        "POSTINO_DNS_NAMESERVERS": os.environ.get("POSTINO_DNS_NAMESERVERS", ""),
        "POSTINO_DNS_TIMEOUT": _float("POSTINO_DNS_TIMEOUT", 3.0),
        "POSTINO_TRUSTED_PROXIES": _int("POSTINO_TRUSTED_PROXIES", 0),
        "POSTINO_SMTP_TEST_TIMEOUT": _float("POSTINO_SMTP_TEST_TIMEOUT", 10.0),
        "POSTINO_DB_CONNECT_TIMEOUT": _float("POSTINO_DB_CONNECT_TIMEOUT", 5.0),
        "POSTINO_DB_STATEMENT_TIMEOUT": _float("POSTINO_DB_STATEMENT_TIMEOUT", 10.0),
        "POSTINO_DB_LOCK_TIMEOUT": _float("POSTINO_DB_LOCK_TIMEOUT", 5.0),
        "POSTINO_JOB_HEARTBEAT_SECONDS": _float("POSTINO_JOB_HEARTBEAT_SECONDS", 10.0),
        "POSTINO_LOG_FORMAT": _choice("POSTINO_LOG_FORMAT", ("text", "json"), "text"),
        "POSTINO_METRICS_TOKEN": os.environ.get("POSTINO_METRICS_TOKEN") or None,
        "POSTINO_METRICS_ALLOW": os.environ.get("POSTINO_METRICS_ALLOW", "127.0.0.1,::1"),
        "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
        "POSTINO_WEBHOOK_TIMEOUT": _float("POSTINO_WEBHOOK_TIMEOUT", 10.0),
        "POSTINO_WEBHOOK_CA_FILE": os.environ.get("POSTINO_WEBHOOK_CA_FILE") or None,
        "POSTINO_WEBHOOK_ALLOW_HTTP": _bool(os.environ.get("POSTINO_WEBHOOK_ALLOW_HTTP")),
        "POSTINO_DEMO": False,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "MAX_CONTENT_LENGTH": 10 * 1024 * 1024 + 64 * 1024,
        "WTF_CSRF_TIME_LIMIT": None,
        "BABEL_DEFAULT_LOCALE": "it",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    }


def _instance_secret(instance_path: str, filename: str, make) -> str:
    """Read a generated secret from the instance folder, creating it (mode 0600) on first start."""
    path = Path(instance_path) / filename
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    log.warning("Generated %s into %s (embedded SQLite default)", filename, path)
    return value


def ensure_secrets(config: dict, instance_path: str) -> None:
    """Fill missing secrets for the embedded default, or fail loudly for a shared database."""
    # Decided by the database actually used: a config override may point at PostgreSQL too.
    embedded = str(config["SQLALCHEMY_DATABASE_URI"]).startswith("sqlite")
    wanted = {
        "SECRET_KEY": ("secret_key", lambda: secrets.token_urlsafe(48)),
        "POSTINO_CREDENTIALS_KEY": ("credentials_key", lambda: Fernet.generate_key().decode()),
    }
    for name, (filename, make) in wanted.items():
        if config.get(name):
            continue
        if not embedded:
            raise RuntimeError(
                f"{name} is not set. With a shared database (DATABASE_URL is not SQLite) every "
                f"node must use the same {name}: set it in the environment."
            )
        config[name] = _instance_secret(instance_path, filename, make)


def check_secrets(config: dict) -> None:
    """Refuse a weak SECRET_KEY or a malformed POSTINO_CREDENTIALS_KEY at start, naming the
    variable: the first would sign sessions with a guessable key, the second would only fail
    the first time a customer's SMTP password is encrypted. Debug and tests are exempt."""
    secret = str(config.get("SECRET_KEY") or "")
    if len(secret) < MIN_SECRET_KEY:
        raise RuntimeError(
            f"SECRET_KEY is {len(secret)} characters long: use at least {MIN_SECRET_KEY} random "
            "characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'")
    raw = str(config.get("POSTINO_CREDENTIALS_KEY") or "")
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise RuntimeError("POSTINO_CREDENTIALS_KEY is empty: set one or more Fernet keys, "
                           "comma-separated")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise RuntimeError(
                f"POSTINO_CREDENTIALS_KEY: key {number} of {len(keys)} is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with python -c 'from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from None


def private_sqlite_file(uri: str) -> None:
    """Create a SQLite database file readable by its owner only (0600), like the key files.

    SQLite gives the -wal and -shm files it creates the database file's permissions, so they
    are private too. An existing file is left as it is, with a warning when others may read it.
    """
    url = make_url(uri)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return
    path = Path(url.database)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o): chmod 600 it", path, mode)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:  # another process created it in between
        pass


def is_https(url: str) -> bool:
    """True when a public URL is served over HTTPS."""
    return urlsplit(url or "").scheme.lower() == "https"


def is_loopback_host(host: str) -> bool:
    """True for localhost names and loopback addresses (browsers treat them as secure)."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
