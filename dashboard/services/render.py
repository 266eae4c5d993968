"""Rendering notifications: one function used alike by sending, preview and resend.

Templates run in Jinja's immutable sandbox with StrictUndefined: a template cannot reach
Python internals, and a missing variable is an error that names the variable.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import css_inline
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import select

from ..extensions import db
from ..models import Customer, Template
from ..notifications import CATALOG, LANGUAGES, default_source
from . import ServiceError

MAX_TEMPLATE_BYTES = 200 * 1024
MAX_RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 2_000_000
_UNDEFINED_RE = re.compile(r"'(?:[^']*? object' has no attribute ')?([A-Za-z_][A-Za-z0-9_]*)'")


class RenderError(ServiceError):
    """A template that cannot render: carries the field to blame and, when known, a line."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 part: str | None = None):
        super().__init__(message, field)
        self.line = line
        self.part = part


@dataclass
class Rendered:
    """A rendered notification, ready to be stored on a message."""

    subject: str
    html: str
    text: str
    template_version_id: int | None
    source: str  # "default" or "override v<N>"


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus a wall-clock budget checked on every attribute and call."""

    _local = threading.local()

    def _check_budget(self) -> None:
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise SecurityError("the template took too long to render")

    def getattr(self, obj, attribute):
        self._check_budget()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        self._check_budget()
        return super().getitem(obj, argument)

    def call(self, __context, __obj, *args, **kwargs):
        self._check_budget()
        return super().call(__context, __obj, *args, **kwargs)


_html_env = _BoundedEnvironment(autoescape=True, undefined=StrictUndefined)
_text_env = _BoundedEnvironment(autoescape=False, undefined=StrictUndefined)
_inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
_text_config = ParserConfig(display_links=True)


@lru_cache(maxsize=512)
def _compile(kind: str, source: str):
    env = _html_env if kind == "html" else _text_env
    return env.from_string(source)


def _render_part(kind: str, source: str, data: dict, part: str) -> str:
    """Render one part with the sandbox, the time budget and errors that name the culprit."""
    if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise RenderError(f"the {part} is larger than {MAX_TEMPLATE_BYTES // 1024} KB",
                          part=part)
    try:
        template = _compile(kind, source)
    except TemplateSyntaxError as exc:
        raise RenderError(f"syntax error in the {part}, line {exc.lineno}: {exc.message}",
                          line=exc.lineno, part=part) from None
    env = _html_env if kind == "html" else _text_env
    env._local.deadline = time.monotonic() + MAX_RENDER_SECONDS
    try:
        out = template.render(**data)
    except UndefinedError as exc:
        match = _UNDEFINED_RE.search(exc.message or "")
        name = match.group(1) if match else None
        field = f"data.{name}" if name else "data"
        raise RenderError(f"missing template variable: {name or exc.message}", field,
                          part=part) from None
    except SecurityError as exc:
        raise RenderError(f"the {part} tried something not allowed: {exc}", part=part) from None
    except RecursionError:
        raise RenderError(f"the {part} recurses too deeply", part=part) from None
    except Exception as exc:  # arithmetic, type errors, … inside the template
        raise RenderError(f"the {part} failed to render: {exc}", part=part) from None
    finally:
        env._local.deadline = None
    if len(out) > MAX_OUTPUT_CHARS:
        raise RenderError(f"the rendered {part} is too large", part=part)
    return out


def html_to_text(html: str) -> str:
    """The plain-text part derived from HTML, links kept."""
    return get_text(html, _text_config).strip() + "\n"


def inline_css(html: str) -> str:
    """Inline <style> rules into style attributes (no remote stylesheets are ever loaded)."""
    try:
        return _inliner.inline(html)
    except ValueError:
        return html


def render_source(source: dict, data: dict) -> tuple[str, str, str]:
    """Render a template source {subject, html, text?} with data: (subject, html, text)."""
    subject = _render_part("text", source["subject"], data, "subject").strip()
    if any(ch in subject for ch in "\r\n\x00"):
        raise RenderError("the subject must be a single line", "data", part="subject")
    html = _render_part("html", source["html"], {**data, "subject": subject}, "html")
    html = inline_css(html)
    text_source = source.get("text")
    if text_source:
        text = _render_part("text", text_source, {**data, "subject": subject}, "text")
    else:
        text = html_to_text(html)
    return subject, html, text


def override_for(customer: Customer | None, event: str, language: str) -> Template | None:
    """The customer's active override of this event and language, if any."""
    if customer is None:
        return None
    return db.session.scalar(
        select(Template).where(
            Template.customer_id == customer.id,
            Template.event == event,
            Template.language == language,
            Template.active.is_(True),
        )
    )


def pick_language(customer: Customer | None, requested: str | None) -> str:
    """The notification's language, else the customer's default, else Italian."""
    if requested in LANGUAGES:
        return requested
    if customer is not None and customer.default_language in LANGUAGES:
        return customer.default_language
    return "it"


def render_notification(customer: Customer | None, event: str, language: str,
                        data: dict) -> Rendered:
    """Render an event for a customer: its override when one exists, else the default."""
    if event not in CATALOG:
        raise RenderError(f"unknown event {event}", "event")
    template = override_for(customer, event, language)
    if template is not None and template.current_version is not None:
        version = template.current_version
        source = {"subject": version.subject, "html": version.html, "text": version.text}
        subject, html, text = render_source(source, data)
        return Rendered(subject, html, text, version.id, f"override v{version.number}")
    subject, html, text = render_source(default_source(event, language), data)
    return Rendered(subject, html, text, None, "default")
