"""Template helpers shared by every page: labels, banners."""
from __future__ import annotations

from flask import Flask
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from .addresses import envelope

STATUS_LABELS = {
    "queued": _l("queued"),
    "sending": _l("sending"),
    "sent": _l("sent"),
    "deferred": _l("deferred"),
    "failed": _l("failed"),
    "suppressed": _l("suppressed"),
    "held": _l("held"),
    "delivered": _l("delivered"),
    "bounced": _l("bounced"),
    "opened": _l("opened"),
}
# Timeline steps that are not statuses (a status step shows its badge).
STEP_LABELS = {
    "expired": _l("expired"),
    "released": _l("released"),
    "resent": _l("resent"),
    "bounce": _l("bounce"),
    "delayed": _l("delivery delayed"),
    "complaint": _l("complaint"),
    "report": _l("report"),
}
ROLE_LABELS = {"admin": _l("admin"), "support": _l("support"), "billing": _l("billing")}
EVENT_LABELS = {
    "user_invitation": _l("User invitation"),
    "password_reset": _l("Password reset"),
    "order_closed": _l("Order closed"),
    "activity_closed": _l("Activity closed"),
    "document_sent": _l("Document sent"),
    "processing_blocked": _l("Processing blocked"),
}
MODE_LABELS = {
    "standard": _l("Standard (our relay, our senders)"),
    "custom_from": _l("Customer's From (our relay)"),
    "customer_smtp": _l("Customer's own SMTP account"),
}


def status_label(status: str) -> str:
    """A message status in the user's language."""
    return str(STATUS_LABELS.get(status, status))


def a_labels(address: str) -> str:
    """An address with its domain as sent (A-labels, punycode); as it is if it cannot be."""
    try:
        return envelope(address or "")
    except ValueError:
        return address


def role_label(role: str) -> str:
    """A role in the user's language."""
    return str(ROLE_LABELS.get(role, role))


def init_app(app: Flask) -> None:
    """Expose labels and banners to every template."""

    @app.context_processor
    def _helpers():
        from .services.bounces.fault_labels import class_label, reason_label
        from .services.operations.banners import active_banners

        def banners():
            if not current_user.is_authenticated:
                return []
            return active_banners()

        return {
            "banners": banners,
            "status_label": status_label,
            "role_label": role_label,
            "event_label": lambda e: str(EVENT_LABELS.get(e, e)),
            "mode_label": lambda m: str(MODE_LABELS.get(m, m)),
            "fault_class_label": class_label,
            "fault_reason_label": reason_label,
            "step_label": lambda s: str(STEP_LABELS.get(s, s)),
        }

    app.jinja_env.filters["role_label"] = role_label
    app.jinja_env.filters["status_label"] = status_label
    app.jinja_env.filters["a_labels"] = a_labels
