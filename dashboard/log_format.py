"""Log lines: human-readable by default, one JSON object per line with POSTINO_LOG_FORMAT=json
(for log shippers). A line names the message and the customer when the code knows them: pass
`extra={"message_id": …, "customer": …}`, or wrap the work in `context(...)`."""
from __future__ import annotations

import contextvars
import json
import logging
from contextlib import contextmanager
from datetime import UTC, datetime

HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# aiosmtpd logs every connection and command at INFO on `mail.log`: noise at the default level
QUIET = {"mail.log": logging.WARNING}
# and, from its own AUTH code, a deprecation WARNING about an attribute nobody here uses, on
# every login (aio-libs/aiosmtpd#347): dropped, so a warning on mail.log means something
UPSTREAM_NOISE = ("Session.login_data is deprecated",)
_context: contextvars.ContextVar[dict | None] = contextvars.ContextVar("postino_log_context",
                                                                        default=None)


@contextmanager
def context(**fields):
    """Name the message / customer a block of work is about, on every line it logs."""
    merged = {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def _request_customer() -> str | None:
    """The customer code of the API call being served, if any."""
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover - Flask is always there
        return None
    if not has_request_context():
        return None
    customer = g.get("customer")
    return getattr(customer, "code", None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, message_id and customer when
    known, the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        body = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        known = dict(_context.get() or {})
        for key in ("message_id", "customer"):
            value = getattr(record, key, None)
            if value is not None:
                known[key] = value
        if "customer" not in known:
            customer = _request_customer()
            if customer:
                known["customer"] = customer
        body.update({k: str(v) for k, v in known.items() if k in ("message_id", "customer")})
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Set up the root logger once per process: JSON or human lines on stderr, chatty
    libraries quieted. A process that configured logging itself keeps its handlers, with
    the JSON formatter put on them when asked for."""
    root = logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(HUMAN)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        root.addHandler(handler)
        root.setLevel(level)
    elif log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(formatter)
    for name, quiet in QUIET.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(quiet)
    mail_log = logging.getLogger("mail.log")
    if _drop_upstream_noise not in mail_log.filters:
        mail_log.addFilter(_drop_upstream_noise)


def _drop_upstream_noise(record: logging.LogRecord) -> bool:
    """False for the library warnings listed in UPSTREAM_NOISE (the record is dropped)."""
    return not (isinstance(record.msg, str) and record.msg.startswith(UPSTREAM_NOISE))
