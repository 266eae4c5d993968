"""The six notifications: their variables, sample data and default templates."""
from __future__ import annotations

from pathlib import Path

from flask_babel import lazy_gettext as _l

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
LANGUAGES = ("it", "en")

# event -> variables (name -> description), the optional ones (templates test them with
# `is defined`; every other variable must be in the notification's data) and sample data.
CATALOG: dict[str, dict] = {
    "user_invitation": {
        "variables": {
            "user_name": _l("Name of the invited user"),
            "inviter_name": _l("Who sent the invitation"),
            "company_name": _l("The customer's company name"),
            "link": _l("Registration link"),
        },
        "sample": {
            "user_name": "Giulia Rossi",
            "inviter_name": "Marco Bianchi",
            "company_name": "Ferramenta Rossi S.r.l.",
            "link": "https://app.example.com/invite/8f2c1a",
        },
    },
    "password_reset": {
        "variables": {
            "user_name": _l("Name of the user"),
            "link": _l("Password reset link"),
            "expires_hours": _l("Hours before the link expires"),
        },
        "sample": {
            "user_name": "Giulia Rossi",
            "link": "https://app.example.com/reset/4d9e7b",
            "expires_hours": 24,
        },
    },
    "order_closed": {
        "variables": {
            "order_number": _l("Order number"),
            "order_date": _l("Order date"),
            "total": _l("Order total, formatted"),
            "customer_name": _l("The buyer's name"),
            "agent_name": _l("Sales agent who closed the order"),
            "link": _l("Link to the order"),
        },
        "sample": {
            "order_number": "ORD-2026-00421",
            "order_date": "26/11/2026",
            "total": "€ 1.284,50",
            "customer_name": "Bar Centrale di Verdi Luca",
            "agent_name": "Marco Bianchi",
            "link": "https://app.example.com/orders/ORD-2026-00421",
        },
    },
    "activity_closed": {
        "variables": {
            "activity_title": _l("Title of the CRM activity"),
            "activity_date": _l("When it was closed"),
            "customer_name": _l("The customer the activity is about"),
            "agent_name": _l("Who closed it"),
            "outcome": _l("Outcome notes (optional)"),
            "link": _l("Link to the activity"),
        },
        "sample": {
            "activity_title": "Visita commerciale",
            "activity_date": "26/11/2026",
            "customer_name": "Bar Centrale di Verdi Luca",
            "agent_name": "Marco Bianchi",
            "outcome": "Ordine confermato, consegna entro venerdì",
            "link": "https://app.example.com/activities/7731",
        },
        "optional": ("outcome",),
    },
    "document_sent": {
        "variables": {
            "document_title": _l("Title of the document"),
            "sender_name": _l("Who sent it"),
            "message": _l("A short note from the sender (optional)"),
            "link": _l("Link to the document"),
        },
        "sample": {
            "document_title": "Listino prezzi 2027",
            "sender_name": "Marco Bianchi",
            "message": "Le invio il nuovo listino, resto a disposizione.",
            "link": "https://app.example.com/documents/1182",
        },
        "optional": ("message",),
    },
    "processing_blocked": {
        "variables": {
            "company_name": _l("Whose processing is blocked"),
            "reason": _l("Why it is blocked"),
            "since": _l("Since when"),
            "link": _l("Where to fix it"),
        },
        "sample": {
            "company_name": "Ferramenta Rossi S.r.l.",
            "reason": "Il server SMTP rifiuta la password (535)",
            "since": "26/11/2026 09:12",
            "link": "https://postino.example.com/customers/ROSSI",
        },
    },
}


def default_source(event: str, language: str) -> dict[str, str | None]:
    """The shipped default template of an event in a language: subject, html, text."""
    base = DEFAULTS_DIR / event
    text_path = base / f"{language}.txt"
    return {
        "subject": (base / f"{language}.subject").read_text(encoding="utf-8").strip(),
        "html": (base / f"{language}.html").read_text(encoding="utf-8"),
        "text": text_path.read_text(encoding="utf-8") if text_path.exists() else None,
    }


def known_variables(event: str) -> frozenset[str]:
    """Every variable an event's templates may use."""
    return frozenset(CATALOG[event]["variables"])


def required_variables(event: str) -> tuple[str, ...]:
    """The variables a notification of this event must carry in its data."""
    optional = set(CATALOG[event].get("optional", ()))
    return tuple(name for name in CATALOG[event]["variables"] if name not in optional)
