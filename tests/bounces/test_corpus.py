"""The labelled corpus: every send-time reply and every bounce message gets its class and
reason (tests/bounces/corpus, written from RFC 3463/3464/5965 and the providers' docs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.services.bounces import fault, parsing

CORPUS = Path(__file__).parent / "corpus"


def _rows(name: str, width: int) -> list[list[str]]:
    rows = []
    for line in (CORPUS / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            row = [cell.strip() for cell in line.split(" | ")]
            assert len(row) == width, line
            rows.append(row)
    return rows


REPLIES = _rows("replies.txt", 4)
MESSAGES = _rows("labels.txt", 5)


def test_the_corpus_has_at_least_150_labelled_items_in_every_class():
    """Enough items, and each class is represented by replies and by messages."""
    assert len(REPLIES) + len(MESSAGES) >= 150
    assert len(MESSAGES) >= 100
    classes = {row[2] for row in REPLIES} | {row[2] for row in MESSAGES}
    assert set(fault.CLASSES) <= classes
    assert {row[0] for row in MESSAGES} == {p.name for p in (CORPUS / "eml").glob("*.eml")}


@pytest.mark.parametrize("stage, reply, expected_class, expected_reason", REPLIES,
                         ids=[f"{i:03d}-{row[1][:40]}" for i, row in enumerate(REPLIES)])
def test_every_send_time_reply_is_classified_by_who_is_at_fault(stage, reply, expected_class,
                                                                expected_reason):
    """The reply as the server gave it (code and text) at its SMTP stage."""
    verdict = fault.classify(fault.parse_code(reply), None, reply, stage=stage)
    assert (verdict.fault_class, verdict.reason) == (expected_class, expected_reason)


def _raw(name: str) -> bytes:
    """The message with CRLF line ends, as it arrives over SMTP."""
    raw = (CORPUS / "eml" / name).read_bytes()
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize("name, recipient, expected_class, expected_reason, kind", MESSAGES,
                         ids=[row[0] for row in MESSAGES])
def test_every_bounce_message_yields_its_recipient_class_and_reason(name, recipient,
                                                                    expected_class,
                                                                    expected_reason, kind):
    """One outcome per message: the failed (or complaining) recipient and the verdict."""
    reports = parsing.parse(_raw(name))
    if expected_class == "none":
        assert reports == []
        return
    recipient = None if recipient == "-" else recipient  # the report names nobody
    assert [(r.recipient, r.fault_class, r.fault_reason, r.kind) for r in reports] == [
        (recipient, expected_class, expected_reason, kind)]


def test_only_recipient_faults_and_complaints_would_suppress_in_the_corpus():
    """Over the whole corpus: nothing outside those two classes is a hard bounce."""
    for name, *_rest in MESSAGES:
        for report in parsing.parse(_raw(name)):
            if report.kind == "hard":
                assert report.fault_class == fault.RECIPIENT_PERMANENT, name
            if report.fault_class not in (fault.RECIPIENT_PERMANENT, fault.COMPLAINT):
                assert not report.verdict.suppresses, name
