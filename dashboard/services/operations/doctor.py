"""The delivery doctor: walks the seed's four causes, in order, against the real data.

(a) sending off, (b) spam classification, (c) suppression list, (d) temporary problems;
when no message is found within the retention period it says so. One function,
`diagnose`, builds every verdict; the page, its actions and the tests all go through it.
Refusals are read by who is at fault (bounces.fault): a refusal about us or the sender
(DMARC, blocklist, spam filter, reputation) is cause (b), with the advice that fixes it;
cause (c) is about the recipient's own faults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import func, or_, select
from werkzeug.routing import BuildError

from ... import reasons
from ...addresses import normalise
from ...extensions import db
from ...models import (
    Customer,
    Message,
    Suppression,
    SuppressionRemoval,
    User,
    normalise_reference,
    utcnow,
)
from .. import ServiceError
from ..bounces import fault, suppressions
from ..bounces.fault_labels import class_label, reason_label
from ..core import settings
from ..messages import intake

MAX_MESSAGES = 50
ACCEPTED = ("sent", "delivered", "opened")
TEMPORARY = ("deferred", "failed")
CAUSES = ("sending", "spam", "suppression", "temporary")


@dataclass
class Action:
    """The button (or link) that fixes a cause, for the roles allowed to press it."""

    kind: str  # turn_on | resume | lift | resend | link
    label: str
    url: str | None = None
    method: str = "post"
    roles: tuple[str, ...] = ("admin",)
    confirm: str | None = None
    values: dict = field(default_factory=dict)


@dataclass
class Verdict:
    """The doctor's word on one cause: colour, a title, plain text, evidence and the fix."""

    cause: str  # sending | spam | suppression | temporary | nothing
    colour: str  # green | amber | red
    title: str
    text: str
    evidence: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self):
        # names and reasons are pasted into sentences: "… S.p.A.." must read "… S.p.A."
        self.title, self.text = reasons.tidy(self.title), reasons.tidy(self.text)
        self.evidence = [reasons.tidy(line) for line in self.evidence]


@dataclass
class Diagnosis:
    """Every verdict for one question, and the messages read to reach them."""

    address: str | None
    reference: str | None
    customer: Customer | None
    retention_days: int
    verdicts: list[Verdict]
    messages: list[Message]
    suppressions: list[Suppression]

    @property
    def found(self) -> bool:
        """True when at least one message matched within the retention period."""
        return bool(self.messages)

    @property
    def primary(self) -> Verdict | None:
        """The most likely cause: the first red verdict, else the first amber one."""
        for colour in ("red", "amber"):
            for verdict in self.verdicts:
                if verdict.colour == colour:
                    return verdict
        return None

    def verdict(self, cause: str) -> Verdict | None:
        """The verdict for one cause, if any."""
        return next((v for v in self.verdicts if v.cause == cause), None)

    def query(self) -> dict:
        """The question as form values (carried by the action forms to re-ask it)."""
        return {"address": self.address or "", "reference": self.reference or "",
                "customer": self.customer.code if self.customer else ""}


def url_or_none(endpoint: str, **values) -> str | None:
    """url_for, or None outside a request (the service also runs from tests and scripts)."""
    try:
        return url_for(endpoint, **values)
    except (BuildError, RuntimeError):
        return None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _answer(code: int | None, text: str | None) -> str:
    return " ".join(part for part in (str(code) if code else "", (text or "")[:200]) if part) or "—"


def parse_query(address: str | None, reference: str | None) -> tuple[str | None, str | None]:
    """Check the doctor's input: an address and/or a reference, at least one of them."""
    address = (address or "").strip() or None
    reference = (reference or "").strip() or None
    if address is not None:
        try:
            address = normalise(address, "address")
        except ServiceError:  # the validator's own words are English only
            raise ServiceError(_("Enter a valid email address."), "address") from None
    if reference is not None:
        reference = intake.parse_reference(reference)
    if address is None and reference is None:
        raise ServiceError(_("Enter an email address or a reference (or both)."), "address")
    return address, reference


def retention_days(customer: Customer | None = None) -> int:
    """How many days of messages Postino keeps (the customer's own period when it has one)."""
    if customer is not None and customer.retention_days:
        return int(customer.retention_days)
    return int(settings.get("retention_days"))


def find_messages(address: str | None, reference: str | None, customer: Customer | None,
                  since: datetime) -> list[Message]:
    """The most recent messages matching the question, newest first."""
    query = select(Message).where(Message.created_at >= since)
    if address:
        query = query.where(Message.recipient == address)
    if reference:  # the normalised column is the indexed one
        query = query.where(Message.reference_norm == normalise_reference(reference),
                            Message.reference == reference)
    if customer is not None:
        query = query.where(Message.customer_id == customer.id)
    query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(MAX_MESSAGES)
    return list(db.session.scalars(query))


def diagnose(address: str | None = None, reference: str | None = None,
             customer: Customer | None = None, now: datetime | None = None) -> Diagnosis:
    """Walk causes (a)-(d) in order for an address and/or a reference; returns every verdict."""
    address, reference = parse_query(address, reference)
    now = now or utcnow()
    days = retention_days(customer)
    found = find_messages(address, reference, customer, now - timedelta(days=days))
    customers = [customer] if customer is not None else _distinct(m.customer for m in found)
    addresses = [address] if address else _distinct(m.recipient for m in found)
    entries = _active_suppressions(addresses, customer, now)
    verdicts = [
        _sending_verdict(customers, found),
        _sender_refusal_verdict(found, now) or _spam_verdict(found),
        _suppression_verdict(addresses, entries, customer, found, now),
        _temporary_verdict(found),
    ]
    if not found:
        verdicts.append(_nothing_verdict(address, reference, customer, days))
    return Diagnosis(address, reference, customer, days, verdicts, found, entries)


def _distinct(items) -> list:
    seen: list = []
    for item in items:
        if item is not None and item not in seen:
            seen.append(item)
    return seen


# (a) sending off ---------------------------------------------------------------------------

def _sending_verdict(customers: list[Customer], found: list[Message]) -> Verdict:
    """Global switch, customer switch, customer paused: then no user receives notifications."""
    held = [m for m in found if m.status == "held"]
    if not settings.sending_enabled():
        return Verdict(
            "sending", "red", _("Sending is off for everyone"),
            _("No user of any customer receives notifications: the global switch in Settings "
              "is off. Messages are held, not lost, and go out when sending is turned on."),
            evidence=[_("%(n)d of the messages read are held.", n=len(held))] if held else [],
            actions=[Action("turn_on", _("Turn sending on"), url_or_none("doctor.turn_on"),
                            values={"scope": "global"},
                            confirm=_("Turn sending on for everyone?"))],
            messages=held,
        )
    for customer in customers:
        if not customer.sending_enabled:
            return Verdict(
                "sending", "red",
                _("Sending is off for %(name)s", name=customer.name),
                _("No user of this customer receives notifications: its sending switch is off. "
                  "Its messages are held and go out when sending is turned on."),
                evidence=_held_evidence(customer, held),
                actions=[Action("turn_on", _("Turn sending on for %(name)s", name=customer.name),
                                url_or_none("doctor.turn_on"),
                                values={"scope": "customer", "code": customer.code},
                                confirm=_("Turn sending on for %(name)s?", name=customer.name)),
                         *_customer_link(customer)],
                messages=[m for m in held if m.customer_id == customer.id],
            )
        if customer.paused:
            return Verdict(
                "sending", "red",
                _("%(name)s is paused (processing blocked)", name=customer.name),
                _("No user of this customer receives notifications: its processing was blocked "
                  "since %(since)s because %(reason)s. Its messages are held; resume it once "
                  "the cause is fixed.", since=_when(customer.paused_at),
                  reason=reasons.text(customer.paused_reason) or _("of repeated errors")),
                evidence=_held_evidence(customer, held),
                actions=[Action("resume", _("Resume %(name)s", name=customer.name),
                                url_or_none("doctor.resume"), values={"code": customer.code},
                                confirm=_("Resume %(name)s and release its held mail?",
                                          name=customer.name)),
                         *_customer_link(customer)],
                messages=[m for m in held if m.customer_id == customer.id],
            )
    names = ", ".join(c.name for c in customers)
    text = (_("Sending is on for everyone and for %(names)s.", names=names) if names
            else _("Sending is on for everyone."))
    return Verdict("sending", "green", _("Sending is on"), text)


def _held_evidence(customer: Customer, held: list[Message]) -> list[str]:
    from .banners import held_count

    return [ngettext("%(num)d message of %(name)s is held.",
                     "%(num)d messages of %(name)s are held.", held_count(customer.id),
                     name=customer.name)]


def _customer_link(customer: Customer) -> list[Action]:
    url = url_or_none("customers.detail", code=customer.code) or url_or_none("customers.index")
    if url is None:
        return []
    return [Action("link", _("Open %(name)s", name=customer.name), url, method="get")]


# (b) spam classification -------------------------------------------------------------------

def _spam_verdict(found: list[Message]) -> Verdict:
    """The last message the recipient's server accepted: then look in the spam folder."""
    accepted = next((m for m in found if m.status in ACCEPTED), None)
    if accepted is None:
        refused = _dmarc_refusal_verdict(found)
        if refused is not None:
            return refused
        return Verdict("spam", "green", _("Not a spam question"),
                       _("No message was accepted by the recipient's server, so spam "
                         "filtering cannot be the cause."))
    customer = accepted.customer
    # not nested in the call below: pybabel does not extract a gettext inside another one
    server = (_("customer's own SMTP server") if accepted.transport == "customer_smtp"
              else _("recipient's server"))
    evidence = [_("Accepted at %(when)s by the %(server)s with %(answer)s.",
                  when=_when(accepted.sent_at), server=server,
                  answer=_answer(accepted.last_smtp_code, accepted.last_smtp_text))]
    if accepted.delivered_at:
        evidence.append(_("Delivery confirmed by the recipient's server at %(when)s.",
                          when=_when(accepted.delivered_at)))
    if accepted.open_count or accepted.opened_at:
        evidence.append(ngettext(
            "Opened once, at %(when)s (opens are approximate: some mail programs block "
            "images, others open every message).",
            "Opened %(num)d times, first at %(when)s (opens are approximate: some mail "
            "programs block images, others open every message).",
            accepted.open_count or 1, when=_when(accepted.opened_at)))
    else:
        evidence.append(_("Not opened yet, as far as Postino can tell (opens are approximate: "
                          "many mail programs block images)."))
    colour = "amber"
    fixes: list[Action] = []
    if customer is not None and customer.sending_mode == "custom_from":
        dns_colour, dns_lines, fixes = _custom_from_evidence(customer)
        evidence.extend(dns_lines)
        if dns_colour == "red":
            colour = "red"
    if customer is not None and customer.sending_mode == "customer_smtp":
        evidence.append(_("This customer sends through its own SMTP account: we see only its "
                          "server's answer; bounces reach the customer's mailbox."))
    if (accepted.open_count or accepted.opened_at) and colour == "amber":
        return Verdict("spam", "green", _("The message was received and opened"),
                       _("The last message was accepted by the recipient's server and opened. "
                         "If the user cannot find it, ask them to search all folders of the "
                         "mailbox, including the spam (junk) folder."),
                       evidence=evidence, messages=[accepted],
                       actions=_message_link(accepted))
    return Verdict(
        "spam", colour, _("Accepted by the recipient's server: check the spam folder"),
        _("The last message was handed over to the recipient's mail server, so Postino did "
          "its part. If the user does not see it, it was probably classified as spam: check "
          "the junk folder of the mail program (e.g. Apple Mail), and also the web mail of "
          "the provider (Gmail, Yahoo, Outlook.com/Live, Libero, Alice), which may keep junk "
          "mail without passing it on to the mail program. If the provider blocks our mail, "
          "the user's mail administrator should add our sender (or its IP) to the whitelist."),
        evidence=evidence, messages=[accepted], actions=_message_link(accepted) + fixes,
    )


# (b) for custom_from: does DMARC pass on the customer's DKIM key? (delivery.dkim_keys)

def _custom_from_evidence(customer: Customer) -> tuple[str, list[str], list[Action]]:
    """A custom_from customer's authentication: (colour, evidence lines, fixes).

    DMARC passes when we sign with a verified key of its domain; otherwise the stored DNS
    check says how receivers treat the mail, and the DKIM line names what is missing, with
    the link to the DKIM section of the customer's page.
    """
    from ..delivery import dkim_keys

    domain = dkim_keys.domain_of(customer.from_address) or "?"
    key = dkim_keys.active_key(customer, domain)
    if key is not None and key.verified_at is not None:
        return "green", [_("DMARC passes with DKIM: mail From %(domain)s is signed with the "
                           "customer's key %(selector)s, whose record was found in DNS "
                           "(checked %(when)s).", domain=domain, selector=key.selector,
                           when=_when(key.checked_at or key.verified_at))], []
    dns_colour, dns_line = _dns_evidence(customer)
    lines = [dns_line, _dkim_line(key, domain)]
    policy = ((customer.dns_check or {}).get("dmarc") or {}).get("policy")
    if policy in ("reject", "quarantine") and (customer.dns_check or {}).get("verdict") != "pass":
        lines.append(_("DMARC fails for mail From %(domain)s: neither SPF nor DKIM aligns, and "
                       "its policy (p=%(policy)s) tells receivers to %(what)s.", domain=domain,
                       policy=policy, what=_("refuse it") if policy == "reject"
                       else _("file it as spam")))
    lines.append(_("Fix: generate a DKIM key in the DKIM section of the customer's page, have "
                   "the customer publish its record, then check DNS: we sign from then on and "
                   "DMARC passes.") if key is None else
                 _("Fix: have the customer publish the record shown in the DKIM section of its "
                   "page, then check DNS: we sign from then on and DMARC passes."))
    return dns_colour, lines, _dkim_link(customer)


def _dkim_line(key, domain: str) -> str:
    """What is wrong with the customer's DKIM, in one line."""
    from ..delivery import dkim_keys

    if key is None:
        return _("DKIM not published: no DKIM key of %(domain)s signs this customer's mail.",
                 domain=domain)
    name = dkim_keys.record_name(key.selector, key.domain)
    status = ((key.dns_check or {}).get("records", {}).get("rsa") or {}).get("status")
    if key.forced:
        return _("DKIM signing is forced, but the record %(name)s was not found in DNS: "
                 "receivers fail the signature if it is not really published.", name=name)
    if status == "differs":
        return _("DKIM not published as expected: the record %(name)s differs from our key, so "
                 "we do not sign.", name=name)
    if status == "missing":
        return _("DKIM not published: the record %(name)s is missing in DNS, so we do not sign.",
                 name=name)
    return _("DKIM not published yet: the record %(name)s was not found so far, so we do not "
             "sign.", name=name)


def _dkim_link(customer: Customer) -> list[Action]:
    url = url_or_none("customers.detail", code=customer.code)
    if url is None:
        return []
    return [Action("link", _("Open the DKIM section of %(name)s", name=customer.name),
                   url + "#dkim", method="get", roles=("support",))]


def _dmarc_refusal_verdict(found: list[Message]) -> Verdict | None:
    """Nothing was accepted and a custom_from customer's domain tells receivers to refuse
    mail we send unsigned (DMARC p=reject, no verified DKIM key): that is cause (b)."""
    from ..delivery import dkim_keys

    for customer in _distinct(m.customer for m in found):
        if customer.sending_mode != "custom_from" or not customer.dns_check:
            continue
        if customer.dns_check.get("verdict") != "reject":
            continue
        domain = dkim_keys.domain_of(customer.from_address) or "?"
        key = dkim_keys.active_key(customer, domain)
        if key is not None and key.verified_at is not None:
            continue
        _colour, lines, fixes = _custom_from_evidence(customer)
        return Verdict(
            "spam", "red", _("DMARC fails: %(domain)s tells receivers to refuse our mail",
                             domain=domain),
            _("%(name)s sends with its own address in From through our mail server, and its "
              "domain's DMARC policy asks receivers to refuse mail it has not authenticated. "
              "Signing with the customer's DKIM key fixes it.", name=customer.name),
            evidence=lines, actions=fixes,
            messages=[m for m in found if m.customer_id == customer.id][:5],
        )
    return None


def _dns_evidence(customer: Customer) -> tuple[str, str]:
    """The stored DNS verdict of a custom_from customer (delivery.dns_check): (colour, line).

    pass: SPF authorises our relay; risk: it does not (or DMARC quarantines unaligned mail);
    reject: DMARC rejects unaligned mail; dns_error: the lookup failed.
    """
    check = customer.dns_check or {}
    if not check:
        return "amber", _("The customer's own From address is used over our relay, and its "
                          "SPF/DMARC records were never checked: receiving servers may treat "
                          "the mail as spam.")
    when = _when(customer.dns_checked_at)
    spf = (check.get("spf") or {}).get("result") or "?"
    policy = (check.get("dmarc") or {}).get("policy") or _("none")
    details = _("(SPF: %(spf)s, DMARC policy: %(policy)s)", spf=spf, policy=policy)
    verdict = check.get("verdict")
    if verdict == "pass":
        return "green", _("The DNS check of %(when)s found our relay authorised by the "
                          "customer's domain %(details)s.", when=when, details=details)
    if verdict == "reject":
        return "red", _("The DNS check of %(when)s found that the customer's domain tells "
                        "receiving servers to refuse our mail %(details)s: the customer must "
                        "authorise our relay in SPF, or switch to the standard sending mode.",
                        when=when, details=details)
    if verdict == "dns_error":
        return "amber", _("The DNS check of %(when)s could not read the customer's domain: "
                          "%(errors)s", when=when,
                          errors="; ".join(check.get("errors") or []) or "?")
    return "amber", _("The DNS check of %(when)s found that the customer's domain does not "
                      "authorise our relay %(details)s: receiving servers may treat the mail "
                      "as spam.", when=when, details=details)


def _message_link(message: Message) -> list[Action]:
    url = url_or_none("log.message", public_id=message.public_id)
    if url is None:
        return []
    return [Action("link", _("Open the message"), url, method="get",
                   roles=("support",))]


# (b) refusals about us or the sender ---------------------------------------------------------

REFUSED = ("failed", "deferred", "bounced")
REFUSAL_WINDOW = timedelta(days=7)
AUTH_REASONS = ("dmarc", "spf", "dkim", "unauthenticated")
REPUTATION_REASONS = ("blocklist", "ip_reputation", "ptr")


def _sender_refusal_verdict(found: list[Message], now: datetime) -> Verdict | None:
    """The latest message was refused because of us or the sender (DMARC/SPF/DKIM, a
    blocklist, reputation, a spam or content filter): the seed's cause (b), spelled out."""
    refused = next((m for m in found if m.status in REFUSED
                    and m.fault_class == fault.SENDER_REPUTATION), None)
    if refused is None:
        return None
    accepted = next((m for m in found if m.status in ACCEPTED), None)
    if accepted is not None and accepted.created_at > refused.created_at:
        return None  # a later message went through: the ordinary spam question applies
    customer = refused.customer
    reason = refused.fault_reason or "policy"
    evidence = [_("%(id)s was refused by the recipient's server at %(when)s: %(reason)s "
                  "(%(answer)s).", id=refused.public_id,
                  when=_when(refused.updated_at or refused.created_at),
                  reason=reason_label(reason),
                  answer=_answer(refused.last_smtp_code, refused.last_smtp_text))]
    evidence += _refusal_counts(customer, refused.transport, now)
    actions = _message_link(refused)
    if reason in AUTH_REASONS:
        title = _("Refused: the sender's domain does not authorise our mail")
        if customer is not None and customer.sending_mode == "custom_from":
            _colour, lines, fixes = _custom_from_evidence(customer)
            evidence.extend(lines)
            text = _("The recipient's server refused the message because it failed the "
                     "sender authentication checks (SPF, DKIM, DMARC): the customer's own "
                     "From address is used over our relay, which its domain does not "
                     "authorise (the risk the seed warns about for mode b). On the "
                     "customer's page, generate a DKIM key and have the customer publish "
                     "its record (Postino then signs the mail and DMARC passes), or have it "
                     "authorise our relay in SPF, or switch it to the standard sending mode. "
                     "The recipient is not suppressed.")
            actions = actions + (fixes or _customer_link(customer))
        else:
            text = _("The recipient's server refused the message because it failed the "
                     "sender authentication checks (SPF, DKIM, DMARC) of our sending "
                     "domain: staff must check our own SPF, DKIM and DMARC records. The "
                     "recipient is not suppressed.")
    elif reason in REPUTATION_REASONS:
        title = _("Refused: our sending server's reputation")
        text = _("The recipient's server refused the message because of our sending server "
                 "(a blocklist, its reputation, or its reverse DNS name), as the server's "
                 "answer says. Staff must have the IP delisted (the answer names the list) "
                 "or fix the server's name; meanwhile the recipient's mail administrator can "
                 "whitelist our IP. The recipient is not suppressed.")
    else:
        title = _("Refused by the recipient's spam or content filter")
        text = _("The recipient's server refused the message because of its content or "
                 "its own policy (spam filter, virus check, size limit). Ask the recipient's "
                 "mail administrator to whitelist our sender, and check the template and "
                 "its attachments. The recipient is not suppressed.")
    colour = "amber" if refused.status == "deferred" else "red"  # still being retried
    return Verdict("spam", colour, title, text, evidence=evidence, actions=actions,
                   messages=[refused])


def _refusal_counts(customer: Customer | None, transport: str | None,
                    now: datetime) -> list[str]:
    """How often this customer's mail on this transport was refused for sender reasons
    lately: one unlucky message or a deliverability problem."""
    if customer is None:
        return []
    query = (select(Message.fault_reason, func.count())
             .where(Message.customer_id == customer.id, Message.status.in_(REFUSED),
                    Message.created_at >= now - REFUSAL_WINDOW,
                    Message.fault_class == fault.SENDER_REPUTATION)
             .group_by(Message.fault_reason))
    if transport:
        query = query.where(Message.transport == transport)
    counts = db.session.execute(query).all()
    total = sum(n for _reason, n in counts)
    if total <= 1:
        return []
    reasons = ", ".join(f"{reason_label(r)} ({n})" for r, n in
                        sorted(counts, key=lambda row: -row[1]))
    return [_("%(n)d messages of %(name)s were refused for reasons about us or the sender "
              "in the last 7 days: %(reasons)s.", n=total, name=customer.name,
              reasons=reasons)]


def _entry_fault_evidence(entry: Suppression) -> list[str]:
    """Why an entry is there, in words; and when the current rules would not create it."""
    if entry.fault_class:
        line = _("Who is at fault: %(who)s, %(reason)s.", who=class_label(entry.fault_class),
                 reason=reason_label(entry.fault_reason))
        if suppressions.recipient_fault(entry):
            return [line]
        return [line, _("The current rules would not create this entry: lift it (not "
                        "billable), or have an admin run the reclassification.")]
    if entry.reason in suppressions.RECIPIENT_REASONS and not suppressions.recipient_fault(
            entry):
        return [_("This entry was created by the old rules for a refusal that was not the "
                  "recipient's fault: lift it (not billable), or have an admin run the "
                  "reclassification.")]
    return []


# (c) suppression list ----------------------------------------------------------------------

def _active_suppressions(addresses: list[str], customer: Customer | None,
                         now: datetime) -> list[Suppression]:
    """Active entries for the addresses: in the customer's scope, or in any scope."""
    if not addresses:
        return []
    if customer is not None:
        return [e for a in addresses if (e := suppressions.active_for(a, customer, now))]
    query = select(Suppression).where(
        Suppression.address.in_(addresses), Suppression.lifted_at.is_(None),
        or_(Suppression.expires_at.is_(None), Suppression.expires_at > now),
    ).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    return list(db.session.scalars(query))


def _reason(entry: Suppression) -> str:
    labels = {"hard_bounce": _("hard bounce"), "soft_bounce": _("repeated soft bounces"),
              "complaint": _("spam complaint"), "manual": _("added by staff")}
    return labels.get(entry.reason, entry.reason)


def _suggested_customer(entry: Suppression) -> Customer | None:
    """Who asks for the lift, when it is certain: the entry's own customer, or the only one
    that wrote to the address (never the latest of several: the user chooses)."""
    if entry.customer is not None:
        return entry.customer
    return suppressions.suggested_customer(entry)


def _suppression_verdict(addresses: list[str], entries: list[Suppression],
                         customer: Customer | None, found: list[Message],
                         now: datetime) -> Verdict:
    """An active entry stops every message to the address: show why and since when."""
    history: list[str] = []
    for address in addresses:
        for removal in suppressions.history(address)[:5]:
            history.append(_("%(address)s was lifted on %(when)s: %(reason)s%(billable)s.",
                             address=address, when=_when(removal.removed_at),
                             reason=removal.reason,
                             billable=_(" (billable)") if removal.billable else ""))
    if not addresses:
        return Verdict("suppression", "green", _("No address to check"),
                       _("Give an email address to check the suppression list."))
    if not entries:
        return Verdict("suppression", "green", _("Not on the suppression list"),
                       _("%(addresses)s is not on the suppression list.",
                         addresses=", ".join(addresses)), evidence=history)
    evidence: list[str] = []
    actions: list[Action] = []
    for entry in entries:
        scope = (_("for the relay") if entry.scope == "relay" else
                 _("for the own SMTP of %(name)s",
                   name=entry.customer.name if entry.customer else "?"))
        line = _("%(address)s is suppressed %(scope)s since %(when)s: %(reason)s",
                 address=entry.address, scope=scope, when=_when(entry.created_at),
                 reason=_reason(entry))
        if entry.smtp_code or entry.diagnostic:
            answer = " ".join(filter(None, [entry.smtp_code, entry.diagnostic]))
            line += f" ({_answer(None, answer)})"
        if entry.expires_at:
            line += " " + _("until %(when)s", when=_when(entry.expires_at))
        evidence.append(line + ".")
        evidence.extend(_entry_fault_evidence(entry))
        previous = suppressions.preview_lift(entry, now).previous
        if previous is not None:
            evidence.append(_("Billable: %(address)s was already lifted on %(when)s, inside "
                              "the %(days)d-day billing window; lifting it again is invoiced "
                              "by the time spent.", address=entry.address,
                              when=_when(previous.removed_at),
                              days=int(settings.get("billing_window_days"))))
        requester = customer or _suggested_customer(entry)
        candidates = [] if entry.customer is not None else suppressions.senders(entry.address)
        actions.append(Action(
            "lift", _("Lift %(address)s", address=entry.address), url_or_none("doctor.lift"),
            roles=("admin",) if entry.reason == "complaint" else ("support",),
            values={"suppression_id": entry.id, "billable": previous is not None,
                    "customer": requester.code if requester else "",
                    "senders": [c.code for c in candidates]},
            confirm=(_("Lift %(address)s from the suppression list? This removal is BILLABLE: "
                       "it is invoiced to the requesting customer by the minutes spent.",
                       address=entry.address) if previous is not None else
                     _("Lift %(address)s from the suppression list?", address=entry.address)),
        ))
        link = url_or_none("suppressions.index", q=entry.address)
        if link:
            actions.append(Action("link", _("Open in Suppressions"), link, method="get",
                                  roles=("support",)))
    stopped = [m for m in found if m.status == "suppressed"]
    if stopped:
        evidence.append(_("%(n)d of the messages read were not sent because of it.",
                          n=len(stopped)))
    return Verdict(
        "suppression", "red", _("The address is on the suppression list"),
        _("Postino does not send to this address any more, because its mail server refused "
          "mail (or the user reported it as spam). Check the address with the customer "
          "(mailbox full, unknown address, server unreachable…), lift it with a reason, then "
          "resend the notification. If it keeps coming back, the customer's mail "
          "administrators must fix the mailbox; repeated removals are billable."),
        evidence=evidence + history, actions=actions, messages=stopped,
    )


# (d) temporary problems --------------------------------------------------------------------

def _temporary_verdict(found: list[Message]) -> Verdict:
    """Deferred messages (with their next retry) and failed ones not resent yet."""
    resent = {m.resend_of_id for m in found if m.resend_of_id}
    if found:
        resent |= set(db.session.scalars(
            select(Message.resend_of_id).where(Message.resend_of_id.in_([m.id for m in found]))))
    failed = [m for m in found if m.status == "failed" and m.id not in resent]
    deferred = [m for m in found if m.status == "deferred"]
    evidence = []
    for m in deferred:
        evidence.append(ngettext(
            "%(id)s: deferred after %(num)d attempt (%(answer)s); next retry at %(when)s.",
            "%(id)s: deferred after %(num)d attempts (%(answer)s); next retry at %(when)s.",
            m.attempts, id=m.public_id, answer=_answer(m.last_smtp_code, m.last_smtp_text),
            when=_when(m.next_attempt_at)))
    for m in failed:
        evidence.append(ngettext(
            "%(id)s: failed after %(num)d attempt: %(reason)s (%(answer)s).",
            "%(id)s: failed after %(num)d attempts: %(reason)s (%(answer)s).",
            m.attempts, id=m.public_id, reason=reasons.text(m.status_reason) or _("refused"),
            answer=_answer(m.last_smtp_code, m.last_smtp_text)))
    if failed:
        return Verdict(
            "temporary", "red", _("Delivery failed"),
            _("The mail service could not deliver the message. Once the cause is fixed, resend "
              "it: a new message is sent, the original stays as it was."),
            evidence=evidence, messages=failed + deferred,
            actions=[Action("resend", _("Resend %(id)s", id=m.public_id),
                            url_or_none("doctor.resend"), roles=("support",),
                            values={"public_id": m.public_id},
                            confirm=_("Send this notification again to %(to)s?", to=m.recipient))
                     for m in failed[:5]],
        )
    if deferred:
        return Verdict(
            "temporary", "amber", _("Delivery is being retried"),
            _("The recipient's server (or ours) answered with a temporary problem. Postino "
              "retries with growing delays; nothing to do unless it keeps failing."),
            evidence=evidence, messages=deferred,
        )
    pending = [m for m in found if m.status in ("queued", "sending")]
    if pending:
        return Verdict("temporary", "green", _("Waiting in the queue"),
                       ngettext("%(num)d message is queued and will be sent shortly.",
                                "%(num)d messages are queued and will be sent shortly.",
                                len(pending)),
                       messages=pending)
    return Verdict("temporary", "green", _("No temporary problem"),
                   _("No message read is deferred or failed."))


# nothing found -----------------------------------------------------------------------------

def _nothing_verdict(address: str | None, reference: str | None, customer: Customer | None,
                     days: int) -> Verdict:
    """No message matched within the retention period: maybe it never reached Postino."""
    what = " · ".join(filter(None, [address, reference]))
    text = ngettext("Postino has no message for %(what)s in the last %(num)d day (the "
                    "retention period; older messages are deleted).",
                    "Postino has no message for %(what)s in the last %(num)d days (the "
                    "retention period; older messages are deleted).", days, what=what)
    if customer is not None:
        text += " " + _("Only messages of %(name)s were searched.", name=customer.name)
    return Verdict(
        "nothing", "amber", _("No message found"),
        text + " " + _("If the event happened within this period, it may never have reached "
                       "Postino: check that the platform raised it (the order was really "
                       "closed, the document really sent) and that the address is right."),
    )


# actions -----------------------------------------------------------------------------------

def lift(entry: Suppression, reason: str, customer: Customer | None, minutes: int,
         actor: User | None) -> SuppressionRemoval:
    """Lift a suppression from the doctor: the suppressions service's rules and records."""
    return suppressions.lift(entry, customer=customer, reason=reason, ticket=None,
                             minutes=minutes, actor=actor)


def resend(original: Message, actor: User | None) -> Message:
    """Resend a message from the doctor: the Log's resend (refused while suppressed)."""
    from ..messages import resend as resend_service

    return resend_service.resend(original, actor=actor)
