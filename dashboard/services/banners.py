"""Banners shown on every page while something needs staff attention."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, select
from werkzeug.routing import BuildError

from .. import reasons
from ..extensions import db
from ..models import Alert, Customer, Message
from .core import settings


@dataclass
class Banner:
    """One banner: text, level, and optionally a one-click fix for the right roles."""

    text: str
    level: str = "warning"
    action_url: str | None = None
    action_label: str | None = None
    action_roles: tuple[str, ...] = field(default=("admin",))
    confirm: str | None = None

    def __post_init__(self):
        self.text = reasons.tidy(self.text)  # a name or reason ending in "." inside a sentence


def _url(endpoint: str, **values) -> str | None:
    try:
        return url_for(endpoint, **values)
    except BuildError:
        return None


def held_count(customer_id: int | None = None) -> int:
    """How many messages are held (for everyone, or for one customer)."""
    query = select(func.count(Message.id)).where(Message.status == "held")
    if customer_id is not None:
        query = query.where(Message.customer_id == customer_id)
    return db.session.scalar(query) or 0


def active_banners() -> list[Banner]:
    """The banners to show now: sending off, paused customers, open health alerts."""
    banners: list[Banner] = []
    if not settings.sending_enabled():
        banners.append(Banner(
            ngettext("Sending is off: %(num)d message held.",
                     "Sending is off: %(num)d messages held.", held_count()), "danger",
            _url("settings.sending", state="on"), _("Turn sending on"),
        ))
    paused = db.session.scalars(select(Customer).where(Customer.paused.is_(True))).all()
    for customer in paused:
        banners.append(Banner(
            _("Processing blocked for %(name)s: %(reason)s. Its mail is held.",
              name=customer.name, reason=reasons.text(customer.paused_reason) or _("paused")),
            "danger",
            _url("customers.resume", code=customer.code), _("Resume"),
        ))
    alerts = db.session.scalars(
        select(Alert).where(Alert.cleared_at.is_(None), Alert.customer_id.is_(None))
        .order_by(Alert.raised_at)
    ).all()
    from . import health

    for alert in alerts:
        if alert.cause == "relay_account":  # delivery.outcomes' relay breaker
            banners.append(Banner(_(
                "Our relay refuses our own sending account: %(words)s. Mail is kept and "
                "retried; check the relay account (MAIL_USERNAME, its sending limit and its "
                "send-as rights).", words=alert.text), "danger"))
        elif alert.cause not in health.CAUSES:
            banners.append(Banner(reasons.text(alert.text), "warning"))
    banners.extend(health.banners(alerts))
    return banners
