"""Banners shown on every page while something needs staff attention."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, select
from werkzeug.routing import BuildError

from ... import reasons
from ...extensions import db
from ...models import Alert, Customer, Message
from ..core import settings
from . import health, jobs


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
    for alert in alerts:
        if alert.cause == "relay_account":  # delivery.outcomes' relay breaker
            banners.append(Banner(_(
                "Our relay refuses our own sending account: %(words)s. Mail is kept and "
                "retried; check the relay account (MAIL_USERNAME, its sending limit and its "
                "send-as rights).", words=alert.text), "danger"))
        elif alert.cause not in health.CAUSES:
            banners.append(Banner(reasons.text(alert.text), "warning"))
    banners.extend(health_banners(alerts))
    return banners


def health_alert_text(alert: Alert) -> str:
    """The banner text of a health alert, in the reader's language."""
    if alert.cause == health.WORKER_CAUSE:
        return _("No worker heartbeat for over 5 minutes: mail is not being sent. "
                 "Check that `flask worker` runs.")
    if alert.cause == health.BACKLOG_CAUSE:
        return _("Mail is waiting: the oldest due message has waited over 15 minutes.")
    return reasons.text(alert.text)


def health_banners(open_alerts: list[Alert]) -> list[Banner]:
    """Banners for open health alerts, and for a dead worker nobody is left to alert about."""
    jobs_url = url_for("jobs.index")
    result = [Banner(health_alert_text(alert), "warning", jobs_url, _("Jobs"))
              for alert in open_alerts if alert.cause in health.CAUSES]
    if not any(alert.cause == health.WORKER_CAUSE for alert in open_alerts):
        age = jobs.heartbeat_age_seconds()
        if age is not None and age > health.HEARTBEAT_ALERT_SECONDS:
            # No worker: the health-check job cannot run either, so the web says it.
            dead = Alert(cause=health.WORKER_CAUSE, text="")
            result.append(Banner(health_alert_text(dead), "danger", jobs_url, _("Jobs")))
    return result
