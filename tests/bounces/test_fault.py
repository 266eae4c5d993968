"""The classifier's rules: precedence of text over codes, stages, and what each class does."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.services.bounces import fault
from dashboard.services.bounces.fault import classify


@pytest.mark.parametrize("reply, reason", [
    ("550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using Spamhaus", "blocklist"),
    ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", "quota"),
    ("550 5.4.5 Daily user sending limit exceeded", "quota"),
    ("550 5.7.60 SMTP; Client does not have permissions to send as this sender", "send_as_denied"),
])
def test_provider_words_override_the_generic_code(reply, reason):
    """The text names the real cause: never a refused recipient."""
    verdict = classify(fault.parse_code(reply), None, reply, stage="rcpt")
    assert verdict.reason == reason and not verdict.suppresses


def test_a_specific_code_beats_generic_words():
    """'550 5.1.1 … access denied' is an unknown user; '550 5.7.1 … mailbox unavailable' is
    the site's policy: generic words speak only when the code does not."""
    assert classify(550, None, "550 5.1.1 <a@b.example>: access denied").reason == "unknown_user"
    assert classify(550, None, "550 5.7.1 Requested action not taken: mailbox unavailable"
                    ).fault_class == fault.SENDER_REPUTATION
    assert classify(550, None, "550 Requested action not taken: mailbox unavailable"
                    ).fault_class == fault.RECIPIENT_PERMANENT


def test_a_4xx_unknown_user_is_only_temporary():
    """Address verification in progress or a server in soft-bounce mode: soft, not hard."""
    verdict = classify(450, None, "450 4.1.1 <a@b.example>: Recipient address rejected: "
                       "User unknown in local recipient table")
    assert (verdict.fault_class, verdict.reason) == (fault.RECIPIENT_TEMPORARY, "unknown_user")
    assert verdict.soft and not verdict.suppresses


def test_an_unexplained_5xx_never_suppresses():
    """Nothing recognisable: unknown, the message fails, nobody is suppressed."""
    verdict = classify(550, None, "550 Rejected", stage="rcpt")
    assert verdict == fault.Verdict(fault.UNKNOWN, "unclassified", True)
    assert not verdict.suppresses and not verdict.soft


def test_a_refusal_before_rcpt_is_never_the_recipients_fault():
    """At MAIL FROM a '5.1.1 user unknown' is about our sender, on our account."""
    verdict = classify(550, None, "550 5.1.1 <bounces+x@postino.example>: user unknown",
                       stage="mail")
    assert verdict.fault_class == fault.ACCOUNT_TRANSPORT and not verdict.suppresses


def test_no_reply_at_send_time_is_our_connection():
    """A timeout or a refused connection to our transport: transient, not the recipient's."""
    assert classify(None, None, "timeout talking to relay:25 after 30s", stage="connect"
                    ).reason == "timeout"
    assert classify(None, None, "connection refused by relay:25", stage="rcpt"
                    ).reason == "connection"


def test_an_expiry_because_the_recipients_server_was_unreachable_is_soft():
    """A relay DSN 'failed' with 4.4.7 or a connection timeout counts one soft bounce;
    the same while only delayed counts nothing."""
    assert classify(None, "4.4.7", "retry timeout exceeded", "failed").soft
    assert classify(None, "4.4.1", "connect to mx: Connection timed out", "failed").soft
    assert not classify(None, "4.4.1", "connect to mx: Connection timed out", "delayed").soft
    assert not classify(421, None, "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily "
                        "deferred due to user complaints", "failed").soft


def test_dsn_successes_and_auto_replies_are_deliveries():
    """Action delivered/relayed/expanded, 2.x.x and auto-replies never suppress."""
    for action in ("delivered", "relayed", "expanded"):
        assert classify(None, "2.0.0", "250 ok", action).fault_class == fault.DELIVERED
    assert fault.auto_reply().fault_class == fault.DELIVERED
    assert fault.complaint("abuse").suppresses and fault.complaint(None).reason == "abuse"


def test_every_reason_has_a_class_and_words_in_both_languages(app):
    """The translation table covers every reason and class the classifier can return."""
    from flask_babel import force_locale

    from dashboard.services.bounces import fault_labels

    assert set(fault_labels.REASON_LABELS) == set(fault.REASONS)
    assert set(fault_labels.CLASS_LABELS) == set(fault.CLASSES)
    with force_locale("it"):
        italian = fault_labels.reason_label("unknown_user")
    with force_locale("en"):
        english = fault_labels.reason_label("unknown_user")
    assert italian != english and english == "the address does not exist"


def test_the_classifier_imports_alone_without_flask():
    """Pure module: importable (and usable) without Flask, SQLAlchemy or the package."""
    path = Path(fault.__file__)
    code = ("import sys, importlib.util\n"
            "sys.modules['flask'] = None; sys.modules['sqlalchemy'] = None\n"
            f"spec = importlib.util.spec_from_file_location('fault', {str(path)!r})\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['fault'] = m\n"
            "spec.loader.exec_module(m)\n"
            "print(m.classify(550, None, '550 5.1.1 no such user').reason)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "unknown_user"
