"""The six notifications: their variables, sample data and default templates."""
from __future__ import annotations

from pathlib import Path

DEFAULTS_DIR = Path(__file__).resolve().parent / "defaults"
LANGUAGES = ("it", "en")

# event -> variables (name -> description) and sample data for previews.
CATALOG: dict[str, dict] = {
    "user_invitation": {
        "variables": {
            "user_name": "Name of the invited user",
            "inviter_name": "Who sent the invitation",
            "company_name": "The customer's company name",
            "link": "Registration link",
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
            "user_name": "Name of the user",
            "link": "Password reset link",
            "expires_hours": "Hours before the link expires",
        },
        "sample": {
            "user_name": "Giulia Rossi",
            "link": "https://app.example.com/reset/4d9e7b",
            "expires_hours": 24,
        },
    },
    "order_closed": {
        "variables": {
            "order_number": "Order number",
            "order_date": "Order date",
            "total": "Order total, formatted",
            "customer_name": "The buyer's name",
            "agent_name": "Sales agent who closed the order",
            "link": "Link to the order",
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
            "activity_title": "Title of the CRM activity",
            "activity_date": "When it was closed",
            "customer_name": "The customer the activity is about",
            "agent_name": "Who closed it",
            "outcome": "Outcome notes",
            "link": "Link to the activity",
        },
        "sample": {
            "activity_title": "Visita commerciale",
            "activity_date": "26/11/2026",
            "customer_name": "Bar Centrale di Verdi Luca",
            "agent_name": "Marco Bianchi",
            "outcome": "Ordine confermato, consegna entro venerdì",
            "link": "https://app.example.com/activities/7731",
        },
    },
    "document_sent": {
        "variables": {
            "document_title": "Title of the document",
            "sender_name": "Who sent it",
            "message": "A short note from the sender",
            "link": "Link to the document",
        },
        "sample": {
            "document_title": "Listino prezzi 2027",
            "sender_name": "Marco Bianchi",
            "message": "Le invio il nuovo listino, resto a disposizione.",
            "link": "https://app.example.com/documents/1182",
        },
    },
    "processing_blocked": {
        "variables": {
            "company_name": "Whose processing is blocked",
            "reason": "Why it is blocked",
            "since": "Since when",
            "link": "Where to fix it",
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
