"""Sending lanes: several SMTP connections per transport, each driven by a thread of its own.

A relay 20 ms away answers each command 20 ms late; one connection then carries a dozen
messages a second however fast the rest is. A worker therefore opens up to `Policy.lanes`
connections per transport (our relay: 8 by default, a customer's own server: 2) and keeps
one message in flight on each. The sweep's own thread still does everything else: checks,
rate limits, building the message, turning the answer into a status, writing it; a lane's
thread only runs `transport.send`, which spends its time waiting for the network (and lets
the GIL go meanwhile). Threads rather than asyncio: the transport, smtplib's TLS and the
database drivers are blocking code already tested as such, and measured on a 20 ms relay
the threads are not the limit (docs/BENCHMARKS.md).

Each lane keeps the sweep's guarantee on its own: its next message's data goes out only
once the outcome of its previous message is committed (`before_data` waits for that
write), so a worker killed at any moment re-sends at most one message per lane.
"""
from __future__ import annotations

import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ...models import Customer, Message
from . import modes, rate_limits
from .pipelining import PipeliningTransport
from .rate_limits import Policy

log = logging.getLogger(__name__)
# All lanes of a transport busy: wait this long for one to finish before opening another.
# A server that answers within it (one on this machine or the next) is kept to the lanes it
# keeps busy (threads cost CPU); one further away opens all its lanes within milliseconds.
OPEN_AFTER = 0.002
CLAIM_ROUNDS = 4  # a claim holds at least this many messages per lane
CLAIM_SECONDS = 0.25  # and about this long of sending at the rate seen so far
MIN_CLAIM = 8


def claim_size(lanes: int, largest: int, rate: float | None = None) -> int:
    """How many messages a worker claims at once: at least CLAIM_ROUNDS per lane of our
    relay, and about CLAIM_SECONDS of sending at the rate this sweep has reached (`rate`,
    messages a second), never more than `largest`.

    Small enough that several workers on one queue finish within a fraction of a second of
    each other (a claim of 200 left one worker sending the last 200 alone), large enough
    that on a fast relay the claim and the batch's loading stay a small part of a message's
    cost."""
    size = max(MIN_CLAIM, CLAIM_ROUNDS * lanes)
    if rate:
        size = max(size, int(rate * CLAIM_SECONDS))
    return max(1, min(largest, size))


@dataclass
class Job:
    """One message in flight on a lane."""

    message: Message
    batch: object  # the sweep's Batch the message came in
    lane: Lane
    future: Future
    started_at: datetime  # when its send was reserved and handed over
    before: tuple  # (attempts, suppression_id) before this attempt


@dataclass
class Lane:
    """One connection to a transport and the thread that talks over it."""

    key: str
    transport: PipeliningTransport
    executor: ThreadPoolExecutor
    job: Job | None = None  # the message in flight, if any
    written: Future | None = None  # the write of this lane's previous outcome

    def previous_committed(self) -> None:
        """Block until the outcome of this lane's previous message is committed."""
        written = self.written
        if written is not None:
            written.result()


@dataclass
class Lanes:
    """Every lane of one sweep, per transport key, opened as the queue needs them."""

    policies: dict[str, Policy] = field(default_factory=dict)
    slowdowns: dict[str, rate_limits.Slowdown] = field(default_factory=dict)
    _lanes: dict[str, list[Lane]] = field(default_factory=dict)
    # a transport found at its limit: until when, and how many messages were put after it
    blocked: dict[str, list] = field(default_factory=dict)

    def new_batch(self) -> None:
        """Read the policies and slow-downs again (once per claim: cheap, and other workers'
        quota refusals reach this one within a batch). A transport found at its limit stays
        so until the time found: the messages after it keep being spaced from there."""
        self.policies.clear()
        self.slowdowns.clear()

    def policy(self, customer: Customer) -> Policy:
        """The lanes and limits of this customer's transport."""
        key = modes.transport_key(customer)
        policy = self.policies.get(key)
        if policy is None:
            policy = self.policies[key] = rate_limits.policy_for(customer)
            self.slowdowns[key] = rate_limits.slowdown(key)
        return policy

    def admit(self, policy: Policy, now: datetime) -> datetime | None:
        """None when one more message of this transport may go now (and it is counted
        against its limits), else the time the limits allow the next one."""
        blocked = self.blocked.get(policy.key)
        if blocked is not None and blocked[0] > now:
            return blocked[0]
        if not policy.limited and not self.slowdowns[policy.key].level:
            return None
        wait_until = rate_limits.reserve(policy, now)
        if wait_until is not None:
            self.blocked[policy.key] = [wait_until, 0]
        return wait_until

    def expected(self, policy: Policy) -> datetime:
        """When the next message waiting for this transport's limit may expect to go: the
        first at the time the window frees, the others spaced at the limit's rate."""
        blocked = self.blocked[policy.key]
        level = self.slowdowns.get(policy.key, rate_limits.Slowdown()).level
        at = blocked[0] + timedelta(seconds=blocked[1] * rate_limits.spacing(policy, level))
        blocked[1] += 1
        return at

    def slowed(self, key: str) -> None:
        """A quota refusal slowed this transport down: read it again before the next send."""
        self.slowdowns[key] = rate_limits.slowdown(key)
        self.blocked.pop(key, None)

    def idle(self, customer: Customer, policy: Policy, open_new: bool = True) -> Lane | None:
        """A lane of this transport with nothing in flight, opened (with `open_new`) if the
        policy allows one more; None when all its lanes are busy. Opening one decrypts the
        customer's password (CredentialsError when it cannot)."""
        lanes = self._lanes.setdefault(policy.key, [])
        for lane in lanes:
            if lane.job is None:
                return lane
        if not open_new or len(lanes) >= policy.lanes:
            return None
        settings = modes.transport_settings(customer)
        lane = Lane(policy.key, PipeliningTransport(settings), ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"lane-{policy.key}-{len(lanes)}"))
        lanes.append(lane)
        return lane

    def busy(self, key: str | None = None) -> list[Job]:
        """The jobs in flight (of one transport, or all)."""
        groups = [self._lanes.get(key, [])] if key is not None else self._lanes.values()
        return [lane.job for lanes in groups for lane in lanes if lane.job is not None]

    def finished(self, key: str | None = None, block: bool = False,
                 timeout: float | None = None) -> list[Job]:
        """Jobs whose send has ended, in the order they were handed over; with `block`,
        waits (at most `timeout` s) for at least one (of `key`'s lanes, or any) when none
        has."""
        jobs = self.busy(key)
        if block and jobs and not any(job.future.done() for job in jobs):
            wait([job.future for job in jobs], timeout=timeout, return_when=FIRST_COMPLETED)
        done = [job for job in self.busy() if job.future.done()]
        return sorted(done, key=lambda job: job.started_at)

    def close(self) -> None:
        """Let every thread finish, then QUIT every connection."""
        for lanes in self._lanes.values():
            for lane in lanes:
                lane.executor.shutdown(wait=True)
                lane.transport.close()
        self._lanes.clear()

    def count(self) -> int:
        return sum(len(lanes) for lanes in self._lanes.values())
