"""Parsing real-world report formats: standard DSNs, non-standard bounces, complaints, junk."""
from __future__ import annotations

import pytest

from dashboard.services.bounces import reports

from .conftest import report

RCPT = "Mario.Rossi@Example.org"
pytestmark = pytest.mark.usefixtures("app")  # fixtures carry a signed VERP address


def parse(name: str):
    """The reports parsed from a fixture addressed to RCPT."""
    return reports.parse(report(name, recipient=RCPT))


@pytest.mark.parametrize("name, kind, status, source", [
    ("postfix_hard.eml", "hard", "5.1.1", "dsn"),
    ("gmail_dsn.eml", "hard", "5.1.1", "dsn"),
    ("office365_ndr.eml", "hard", "5.1.10", "dsn"),
    ("exim_hard.eml", "hard", "5.1.1", "heuristic"),
    ("exchange_legacy.eml", "hard", "5.1.1", "heuristic"),
    ("qmail_hard.eml", "hard", "5.1.1", "heuristic"),
    ("qmail_mailbox_full.eml", "soft", "4.2.2", "heuristic"),
    ("soft_dsn.eml", "soft", "4.2.2", "dsn"),
    ("delayed_dsn.eml", "delayed", "4.4.1", "dsn"),
    ("success_dsn.eml", "delivered", "2.0.0", "dsn"),
])
def test_each_report_format_is_read_with_its_recipient_and_kind(name, kind, status, source):
    """Every format yields the recipient, its status code and the right kind."""
    [result] = parse(name)
    assert (result.kind, result.status, result.source) == (kind, status, source)
    assert result.recipient == RCPT.lower()
    assert result.diagnostic


def test_the_dsn_diagnostic_code_is_unfolded_and_loses_its_type():
    """A folded Diagnostic-Code reads as one line, without the 'smtp;' prefix."""
    [result] = parse("postfix_hard.eml")
    assert result.diagnostic.lower().startswith("550 5.1.1 <mario.rossi@example.org>")
    assert "\n" not in result.diagnostic and result.smtp_code == 550


def test_a_mailbox_full_in_a_non_standard_bounce_is_soft():
    """qmail's permanent error about a full mailbox: the recipient's temporary trouble."""
    [result] = parse("qmail_mailbox_full.eml")
    assert result.kind == "soft" and result.smtp_code == 452


def test_an_arf_report_is_a_complaint_for_the_original_recipient():
    """RFC 5965 feedback reports are complaints naming the Original-Rcpt-To."""
    [result] = parse("arf_complaint.eml")
    assert result.kind == "complaint" and result.recipient == RCPT.lower()
    assert result.extra["feedback_type"] == "abuse"


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\xff\xfe\x00 binary garbage",
    b"From: someone@example.com\r\n\r\nHello, just a normal reply.",
    b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: message/delivery-status\r\n\r\n\r\n--x--",
    b"Content-Type: multipart/report; report-type=feedback-report; boundary=\"y\"\r\n\r\n"
    b"--y\r\nContent-Type: message/feedback-report\r\n\r\n",
    "Subject: caf\u00e9\r\n\r\n\u2603".encode("utf-8"),
])
def test_junk_is_never_fatal(raw):
    """Reports that are not reports parse to nothing (or a complaint without recipient)."""
    result = reports.parse(raw)
    assert all(r.recipient is None for r in result)


def test_the_kind_follows_who_is_at_fault_not_the_status_class():
    """A 5.x.x is hard only when it is the recipient's fault; Action delayed is delayed."""
    assert reports.classify("5.1.1", "failed") == "hard"
    assert reports.classify("5.7.1", "failed") == "failed"
    assert reports.classify("5.7.1", "failed", "550 5.7.1 blocked using zen.spamhaus.org"
                            ) == "failed"
    assert reports.classify("4.2.2", "failed") == "soft"
    assert reports.classify("4.4.7", "delayed") == "delayed"
    assert reports.classify("4.4.7", "failed") == "soft"  # expired: the server was unreachable
    assert reports.classify("2.0.0", "delivered") == "delivered"
    assert reports.classify(None, "delivered") == "delivered"
    assert reports.classify(None, "failed") == "failed"
