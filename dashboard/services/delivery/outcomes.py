"""What the sweep does with a server's answer: the rules of DESIGN.md ("Bounces and the
suppression list") for send-time replies, apart from the sweep's own machinery.

`decide` is pure: the transport's Outcome in, a Decision out (the message's status, what it
means for the recipient, for the transport's circuit breaker). `record_recipient` and
`update_breaker` apply it to the database, through the sweep's session.

| class (bounces.fault) | message | recipient | breaker |
|---|---|---|---|
| recipient_permanent | failed | suppressed at once | - |
| recipient_temporary | failed on 5xx, deferred on 4xx | one soft bounce | - |
| sender_reputation | failed on 5xx, deferred on 4xx | - (doctor's cause (b)) | - |
| account_transport | deferred | - | counts |
| transient, unknown | failed on 5xx, deferred otherwise | - | - |
| (sent) | sent | - | reset |

A message that expires after retries whose last answer said the recipient's own server
could not be reached counts one soft bounce.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...extensions import db
from ...models import Customer, Message, Suppression, TransportBreaker, utcnow
from ..bounces import fault, suppressions
from . import sending, signals
from .transport import Outcome

FAILURES_BEFORE_TRIP = 3  # account/transport refusals in a row before pausing or alerting
RELAY_KEY = "relay"
RELAY_ALERT = "relay_account"
# what a tripped breaker says about the account, in the words of the pause reason
_TROUBLE = {
    "auth": "authentication", "quota": "sending limit", "rate_limited": "sending rate",
    "send_as_denied": "send-as permission", "relay_denied": "relay permission",
    "tls_required": "TLS", "tls_failed": "TLS", "account_disabled": "account",
    "sender_not_verified": "sender verification", "sender_rejected": "sender address",
}


@dataclass(frozen=True)
class Decision:
    """What one answer does: to the message, the recipient and the transport."""

    status: str  # sent | deferred | failed
    verdict: fault.Verdict | None
    breaker: str | None = None  # "reset" after a success, "count" for an account refusal
    replied: bool = False  # the answer came from a server (not our own connection failing)

    @property
    def suppresses(self) -> bool:
        """The recipient's own permanent failure: on the list at once."""
        return (self.verdict is not None and self.verdict.fault_class == fault.RECIPIENT_PERMANENT
                and self.status == "failed")

    @property
    def soft(self) -> bool:
        """Counts one soft bounce for the recipient now."""
        return self.verdict is not None and self.verdict.fault_class == fault.RECIPIENT_TEMPORARY

    @property
    def unreachable(self) -> bool:
        """The recipient's server could not be reached (counts if the message expires)."""
        return (self.verdict is not None and self.verdict.fault_class == fault.TRANSIENT
                and self.verdict.reason in fault.UNREACHABLE_REASONS
                and self.verdict.permanent is False and self.replied)


def decide(outcome: Outcome) -> Decision:
    """The rules for one send-time answer (pure: no database)."""
    if outcome.status == "sent":
        return Decision("sent", None, "reset", True)
    verdict = fault.classify(outcome.code, None, outcome.text, stage=outcome.stage)
    if outcome.status == "auth_failed" and verdict.fault_class != fault.ACCOUNT_TRANSPORT:
        verdict = fault.Verdict(fault.ACCOUNT_TRANSPORT, "auth", verdict.permanent)
    final = outcome.status == "failed"  # a 5xx: retrying the same message will not help
    replied = outcome.code is not None
    if verdict.fault_class == fault.ACCOUNT_TRANSPORT:
        # never the recipient's doing: keep the message and retry once the account is fixed
        return Decision("deferred", verdict, "count", replied)
    return Decision("failed" if final else "deferred", verdict, None, replied)


def status_reason(decision: Decision, stage: str) -> str | None:
    """The message's status reason (English, as stored; pages show the reason's label)."""
    verdict = decision.verdict
    if decision.status == "failed":
        return f"refused by the server at {stage}"
    if verdict is None:
        return None
    if verdict.reason == "auth":
        return "authentication failed"
    if verdict.fault_class == fault.ACCOUNT_TRANSPORT:
        return f"refused for the sending account ({verdict.reason}): kept and retried"
    if verdict.fault_class == fault.SENDER_REPUTATION:
        return f"refused for now by the receiving server ({verdict.reason})"
    return None


def record_recipient(message: Message, outcome: Outcome, decision: Decision,
                     expired: bool = False) -> Suppression | None:
    """The list rules for the recipient: a hard refusal suppresses, a temporary one (or an
    expiry because its server stayed unreachable) counts one soft bounce."""
    verdict = decision.verdict
    if verdict is None:
        return None
    if expired and decision.unreachable:
        verdict = fault.Verdict(fault.TRANSIENT, verdict.reason, True)  # now it is final
    elif not (decision.suppresses or decision.soft):
        return None
    return suppressions.record_send_refusal(message, outcome.code, outcome.text, verdict)


def update_breaker(customer: Customer, decision: Decision, outcome: Outcome,
                   cache: dict) -> None:
    """The transport's circuit breaker: account/transport refusals in a row trip it (a
    customer's own SMTP: the customer is paused with the server's words; our relay: a
    processing_blocked alert to staff, through signals.relay_tripped); any success resets
    it. `cache` (per batch) keeps the relay's count so a success costs no query once the
    count is known to be 0."""
    if decision.breaker is None:
        return
    if customer.sending_mode == "customer_smtp":
        _customer_breaker(customer, decision, outcome)
    else:
        _relay_breaker(decision, outcome, cache)


def _words(decision: Decision, outcome: Outcome) -> str:
    trouble = _TROUBLE.get(decision.verdict.reason if decision.verdict else "", "account")
    answer = " ".join(filter(None, [str(outcome.code or ""), outcome.text[:200]]))
    return f"repeated SMTP {trouble} failures ({answer})"


def _customer_breaker(customer: Customer, decision: Decision, outcome: Outcome) -> None:
    if decision.breaker == "reset":
        if customer.auth_failures:
            customer.auth_failures = 0
        return
    customer.auth_failures = (customer.auth_failures or 0) + 1
    if customer.auth_failures >= FAILURES_BEFORE_TRIP and not customer.paused:
        sending.pause_customer(customer, _words(decision, outcome))


def _relay_breaker(decision: Decision, outcome: Outcome, cache: dict) -> None:
    if decision.breaker == "reset":
        if cache.get(RELAY_KEY) == 0:
            return
        row = db.session.get(TransportBreaker, RELAY_KEY)
        if row is not None and row.failures:
            row.failures, row.tripped_at, row.updated_at = 0, None, utcnow()
            signals.relay_recovered.send()
        cache[RELAY_KEY] = 0
        return
    row = db.session.get(TransportBreaker, RELAY_KEY)
    if row is None:
        row = TransportBreaker(key=RELAY_KEY, failures=0)
        db.session.add(row)
    now = utcnow()
    row.failures = (row.failures or 0) + 1
    row.last_code, row.last_text = outcome.code, outcome.text[:2000]
    row.last_reason = decision.verdict.reason if decision.verdict else None
    row.updated_at = now
    cache[RELAY_KEY] = row.failures
    if row.failures >= FAILURES_BEFORE_TRIP and row.tripped_at is None:
        row.tripped_at = now
        words = _words(decision, outcome)
        signals.relay_tripped.send(words=words)

