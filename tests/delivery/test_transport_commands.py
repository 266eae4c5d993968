"""Our MAIL/RCPT/DATA (which skip smtplib's address re-parsing and regex dot-stuffing) put
on the wire exactly what smtplib would: checked over a real SMTP server."""
import smtplib

import pytest

from dashboard.services.delivery.transport import SmtpSettings, SmtpTransport

BODY = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: dots\r\n\r\n"
        b".starts with a dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n\r\n.\r\nend")


def _send_both(sink, envelope_from, recipient, body):
    transport = SmtpTransport(SmtpSettings(host=sink.host, port=sink.port, timeout=5))
    ours = transport.send(envelope_from, recipient, body)
    transport.close()
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as smtp:
        smtp.sendmail(envelope_from, [recipient], body)
    return ours, sink.wait_for(2)


@pytest.mark.parametrize("envelope_from, recipient", [
    ("bounces+abc123.f00d@bounces.postino.example.com", "buyer.one+tag@example.com"),
    ("sender@example.com", "user@[127.0.0.1]"),  # not a plain address: smtplib's own path
])
def test_the_server_receives_what_smtplib_would_send(smtp_sink, envelope_from, recipient):
    """Same envelope and the same un-stuffed body, dots at line starts included."""
    ours, (got, reference) = _send_both(smtp_sink, envelope_from, recipient, BODY)
    assert ours.status == "sent" and ours.code == 250
    assert (got.mail_from, got.rcpt_tos) == (reference.mail_from, reference.rcpt_tos) \
        == (envelope_from, [recipient])
    assert got.data == reference.data == BODY + b"\r\n"  # every dot line back as it was
