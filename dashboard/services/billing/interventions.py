"""Configuration interventions: every change of a customer's sending configuration, billable
by the seed's rule, beside the estimate given beforehand; and the customer_smtp periods.

The seed: changing the default sending settings "comporterà un costo di cui può essere
richiesta una stima tramite assistenza", and mode (c) is "a pagamento". So a change to or
within custom_from and customer_smtp is billable by default, a return to standard is not, and
an admin may waive the charge with a reason. Only field names are kept, never their values:
secrets (the SMTP password) cannot reach these records.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ...extensions import db
from ...models import (
    ConfigurationEstimate,
    ConfigurationIntervention,
    Customer,
    CustomerSmtpPeriod,
    User,
    utcnow,
)
from .. import ServiceError
from ..core import audit

MAX_MINUTES = 10_000  # about twenty working days: anything above is a typo
MAX_CENTS = 100_000_000  # one million euros
AUTO = "auto"  # link the customer's latest open estimate (the CLI)
PAID_MODE = "customer_smtp"
AMOUNT_RE = re.compile(r"^\d{1,7}([.,]\d{1,2})?$")


@dataclass
class Request:
    """What the person saving a change says about it: the form's fields or the CLI's flags."""

    minutes: object = None  # as typed; None or "" when not given
    ticket: str | None = None  # ticket reference or requesting person
    waive: str | None = None  # the reason for waiving the charge; None: not waived
    estimate: object = AUTO  # an estimate id, None (no estimate) or AUTO
    require_minutes: bool = False  # the web form: a billable change needs its minutes now


@dataclass
class Checked:
    """A Request made clean for one change, ready to record."""

    minutes: int | None
    ticket: str | None
    waive: str | None
    billable: bool
    estimate: ConfigurationEstimate | None


def billable_by_default(mode_after: str) -> bool:
    """A change that leaves the customer on custom_from or customer_smtp is a paid one."""
    return mode_after != "standard"


def parse_minutes(raw) -> int | None:
    """'45' → 45, '' or None → None; ServiceError on anything else."""
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip()
    if not text.isdigit() or int(text) > MAX_MINUTES:
        raise ServiceError(_l("Minutes must be a whole number from 0 to %(max)d.",
                              max=MAX_MINUTES), "minutes")
    return int(text)


def _one_line(value, limit: int) -> str | None:
    """Stripped, line breaks folded into spaces, cut to `limit` characters; None when empty."""
    text = " ".join(str(value or "").split())
    return text[:limit] or None


def check(customer: Customer, request: Request, mode_after: str,
          changing: bool = True) -> tuple[Checked, dict[str, str]]:
    """Clean a Request for a change that leaves the customer in `mode_after`.

    Returns the clean values and the errors per field (minutes, ticket, waive, estimate);
    the billable rules apply only when something changes.
    """
    errors: dict[str, str] = {}
    minutes = None
    try:
        minutes = parse_minutes(request.minutes)
    except ServiceError as exc:
        errors["minutes"] = exc.message
    ticket = _one_line(request.ticket, 200)
    waive = None if request.waive is None else _one_line(request.waive, 1000)
    default = billable_by_default(mode_after)
    if request.waive is not None and waive is None:
        errors["waive"] = str(_l("Give the reason for waiving the charge."))
    billable = default and request.waive is None
    if changing and request.waive is not None and not default:
        errors["waive"] = str(_l("Only a billable change can be waived: a return to the "
                                 "standard mode is never billable."))
    if changing and billable and "minutes" not in errors:
        if minutes == 0 or (minutes is None and request.require_minutes):
            errors["minutes"] = str(_l("A billable change needs the minutes spent (more "
                                       "than 0)."))
    estimate = None
    if request.estimate == AUTO:
        estimate = latest_open_estimate(customer) if default else None
    elif request.estimate not in (None, ""):
        estimate = db.session.get(ConfigurationEstimate, int(request.estimate)) \
            if str(request.estimate).isdigit() else None
        if estimate is None or estimate.customer_id != customer.id or not is_open(estimate):
            errors["estimate"] = str(_l("Choose one of this customer's open estimates."))
            estimate = None
    return Checked(minutes, ticket, waive, billable, estimate), errors


def record(customer: Customer, fields: list[str], mode_before: str, checked: Checked,
           actor: User | None = None, actor_label: str | None = None) -> ConfigurationIntervention:
    """Add the intervention for a change just applied to `customer` (committed by the caller),
    and open or close its customer_smtp period when the mode crossed that line."""
    now = utcnow()
    intervention = ConfigurationIntervention(
        customer_id=customer.id, changed_at=now, mode_before=mode_before or "standard",
        mode_after=customer.sending_mode, fields=sorted(fields),
        actor_id=actor.id if actor is not None else None,
        actor_label=actor_label or (actor.email if actor is not None else "system"),
        ticket=checked.ticket, minutes=checked.minutes, billable=checked.billable,
        waived_reason=checked.waive,
        estimate_id=checked.estimate.id if checked.estimate is not None else None)
    db.session.add(intervention)
    db.session.flush()
    audit.record("customer.intervention", actor, "configuration_intervention", intervention.id,
                 customer_id=customer.id, actor_label=actor_label,
                 after={"fields": intervention.fields, "mode": intervention.mode_after,
                        "billable": intervention.billable, "minutes": intervention.minutes,
                        "ticket": intervention.ticket,
                        "estimate_id": intervention.estimate_id},
                 note=("waived: " + checked.waive) if checked.waive else None)
    entering = intervention.mode_before != PAID_MODE and intervention.mode_after == PAID_MODE
    leaving = intervention.mode_before == PAID_MODE and intervention.mode_after != PAID_MODE
    if entering:
        db.session.add(CustomerSmtpPeriod(customer_id=customer.id, started_at=now,
                                          start_evidence="change",
                                          start_intervention_id=intervention.id))
    elif leaving:
        periods = db.session.scalars(select(CustomerSmtpPeriod).where(
            CustomerSmtpPeriod.customer_id == customer.id,
            CustomerSmtpPeriod.ended_at.is_(None))).all()
        if not periods:  # on customer_smtp with no record of when it began: as the migration
            periods = [CustomerSmtpPeriod(customer_id=customer.id,
                                          started_at=customer.created_at or now,
                                          start_evidence="created")]
            db.session.add(periods[0])
        for period in periods:
            period.ended_at = now
            period.end_intervention_id = intervention.id
    return intervention


def for_customer(customer: Customer, limit: int = 10) -> list[ConfigurationIntervention]:
    """A customer's latest interventions, newest first, with their estimates."""
    return list(db.session.scalars(
        select(ConfigurationIntervention)
        .options(joinedload(ConfigurationIntervention.estimate))
        .where(ConfigurationIntervention.customer_id == customer.id)
        .order_by(ConfigurationIntervention.changed_at.desc(),
                  ConfigurationIntervention.id.desc()).limit(limit)))


# -- estimates --------------------------------------------------------------------------------

def is_open(estimate: ConfigurationEstimate) -> bool:
    """Neither withdrawn nor already linked to the change it was given for."""
    if estimate.withdrawn_at is not None:
        return False
    return db.session.scalar(select(ConfigurationIntervention.id).where(
        ConfigurationIntervention.estimate_id == estimate.id)) is None


def estimates(customer: Customer) -> list[ConfigurationEstimate]:
    """Every estimate given to a customer, newest first."""
    return list(db.session.scalars(
        select(ConfigurationEstimate).where(ConfigurationEstimate.customer_id == customer.id)
        .order_by(ConfigurationEstimate.estimated_on.desc(), ConfigurationEstimate.id.desc())))


def open_estimates(customer: Customer) -> list[ConfigurationEstimate]:
    """The estimates still waiting for their change, newest first."""
    used = select(ConfigurationIntervention.estimate_id).where(
        ConfigurationIntervention.estimate_id.is_not(None))
    return list(db.session.scalars(
        select(ConfigurationEstimate).where(
            ConfigurationEstimate.customer_id == customer.id,
            ConfigurationEstimate.withdrawn_at.is_(None),
            ConfigurationEstimate.id.not_in(used))
        .order_by(ConfigurationEstimate.estimated_on.desc(), ConfigurationEstimate.id.desc())))


def latest_open_estimate(customer: Customer) -> ConfigurationEstimate | None:
    """The estimate the next change most likely answers."""
    found = open_estimates(customer)
    return found[0] if found else None


def parse_amount(raw) -> int | None:
    """'150', '150,5' or '150.50' euros → cents; '' → None; ServiceError otherwise."""
    text = str(raw or "").strip().replace(" ", "").removeprefix("€")
    if not text:
        return None
    if not AMOUNT_RE.match(text):
        raise ServiceError(_l("Enter an amount in euros, e.g. 150 or 150,50."), "amount")
    units, _, cents = text.replace(",", ".").partition(".")
    return int(units) * 100 + int((cents + "00")[:2])


def add_estimate(customer: Customer, estimated_on, minutes, amount, note: str,
                 actor: User | None) -> ConfigurationEstimate:
    """Record an estimate (minutes or amount, a note, its date), audited; every error at once
    (ServiceError on the first field, `errors` on the exception)."""
    errors: dict[str, str] = {}
    day = None
    if isinstance(estimated_on, date):
        day = estimated_on
    elif str(estimated_on or "").strip():
        try:
            day = date.fromisoformat(str(estimated_on).strip())
        except ValueError:
            errors["estimated_on"] = str(_l("Use the format YYYY-MM-DD."))
    else:
        day = utcnow().date()
    clean = {}
    for name, parse in (("minutes", parse_minutes), ("amount", parse_amount)):
        try:
            clean[name] = parse(minutes if name == "minutes" else amount)
        except ServiceError as exc:
            errors[name] = exc.message
    if not errors and not clean["minutes"] and not clean["amount"]:
        errors["minutes"] = str(_l("Give the estimated minutes, the amount, or both."))
    note = (note or "").strip()[:2000]
    if not note:
        errors["note"] = str(_l("Say what the estimate is for."))
    if errors:
        field, message = next(iter(errors.items()))
        error = ServiceError(message, field)
        error.errors = errors
        raise error
    estimate = ConfigurationEstimate(customer_id=customer.id, estimated_on=day,
                                     minutes=clean["minutes"] or None,
                                     amount_cents=clean["amount"] or None, note=note,
                                     created_by_id=actor.id if actor is not None else None)
    db.session.add(estimate)
    db.session.flush()
    audit.record("customer.estimate", actor, "configuration_estimate", estimate.id,
                 customer_id=customer.id,
                 after={"estimated_on": day.isoformat(), "minutes": estimate.minutes,
                        "amount_cents": estimate.amount_cents}, note=note)
    db.session.commit()
    return estimate


def withdraw_estimate(estimate: ConfigurationEstimate, actor: User | None) -> None:
    """Withdraw an open estimate (the customer declined), audited; kept for the record."""
    if not is_open(estimate):
        raise ServiceError(_l("Only an open estimate can be withdrawn."), "estimate")
    estimate.withdrawn_at = utcnow()
    audit.record("customer.estimate_withdrawn", actor, "configuration_estimate", estimate.id,
                 customer_id=estimate.customer_id, before={"withdrawn_at": None},
                 after={"withdrawn_at": estimate.withdrawn_at.isoformat()})
    db.session.commit()


def estimate_for(estimate_id: int) -> ConfigurationIntervention | None:
    """The intervention an estimate was linked to, if any."""
    return db.session.scalar(select(ConfigurationIntervention).where(
        ConfigurationIntervention.estimate_id == estimate_id))


def periods_for(customer: Customer) -> list[CustomerSmtpPeriod]:
    """A customer's customer_smtp periods, newest first."""
    return list(db.session.scalars(
        select(CustomerSmtpPeriod).where(CustomerSmtpPeriod.customer_id == customer.id)
        .order_by(CustomerSmtpPeriod.started_at.desc(), CustomerSmtpPeriod.id.desc())))

