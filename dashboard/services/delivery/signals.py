"""What delivery announces to the rest of the application, which listens without delivery
knowing who listens (operations' alerts raise and clear banners and emails on these).

Each is a blinker signal sent synchronously, inside the sweep's (or the caller's)
transaction: a listener's writes are committed with the rest of the outcome.
"""
from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

# sender: the Customer; reason=the pause reason (stored words). After the customer's row
# is marked paused, before commit.
customer_paused = _signals.signal("customer-paused")
# sender: the Customer, after its pause was lifted and committed.
customer_resumed = _signals.signal("customer-resumed")
# sender: None; words=what the relay keeps answering. Our relay refused our sending
# account FAILURES_BEFORE_TRIP times in a row (outcomes.RELAY_ALERT is the cause).
relay_tripped = _signals.signal("relay-tripped")
# sender: None. The relay accepted a message again after refusing our account.
relay_recovered = _signals.signal("relay-recovered")
