"""Pipelining (RFC 2920): MAIL, RCPT and DATA in one write where the server advertises it,
one at a time where it does not; every answer read and reported as before. Real aiosmtpd
servers (aiosmtpd reads pipelined commands in order; the tests make it advertise it)."""
import socket
import threading

import pytest

from dashboard.services.delivery.pipelining import PipeliningTransport
from dashboard.services.delivery.transport import SmtpSettings

RAW = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMessage-ID: <t@x>\r\n\r\n"
       b".a dot first\r\nhello\r\n")


def _transport(server, **settings) -> PipeliningTransport:
    settings.setdefault("timeout", 5)
    return PipeliningTransport(SmtpSettings(host=server.host, port=server.port, **settings))


@pytest.mark.parametrize("pipelining", [True, False])
def test_commands_are_pipelined_only_where_the_server_offers_it(smtp_server, pipelining):
    """With PIPELINING the DATA command is already waiting when RCPT is read; without it the
    client waits for each reply. Either way the message arrives whole."""
    server = smtp_server(pipelining=pipelining)
    transport = _transport(server)
    outcomes = [transport.send("sender@example.com", f"b{i}@example.com", RAW)
                for i in range(3)]
    assert transport.pipelining() is pipelining
    transport.close()
    assert [o.status for o in outcomes] == ["sent"] * 3
    assert server.handler.data_behind_rcpt == [pipelining] * 3
    got = server.wait_for(3)
    assert [g.rcpt_tos for g in got] == [[f"b{i}@example.com"] for i in range(3)]
    assert all(g.data == RAW for g in got)


def test_a_refusal_at_rcpt_in_a_pipelined_group_fails_that_message_only(smtp_server):
    """550 at RCPT: the DATA behind it is refused by the server, nothing is delivered, the
    refusal is reported at its stage, and the same connection carries the next message."""
    server = smtp_server(pipelining=True, faults={"gone@example.com": "550",
                                                  "busy@example.com": "451"})
    transport = _transport(server)
    refused = transport.send("sender@example.com", "gone@example.com", RAW)
    connection = transport.smtp
    later = transport.send("sender@example.com", "busy@example.com", RAW)
    sent = transport.send("sender@example.com", "ok@example.com", RAW)
    assert (refused.status, refused.code, refused.stage) == ("failed", 550, "rcpt")
    assert "No such user" in refused.text
    assert (later.status, later.code, later.stage) == ("deferred", 451, "rcpt")
    assert sent.status == "sent" and transport.smtp is connection
    transport.close()
    assert [g.rcpt_tos for g in server.wait_for(1)] == [["ok@example.com"]]
    assert server.handler.data_behind_rcpt == [True, True, True]


def test_a_refusal_at_mail_is_reported_at_mail_and_the_connection_stays_in_step(smtp_server):
    """MAIL refused: the RCPT and DATA behind it get their 503s, read and set aside."""
    server = smtp_server(pipelining=True, faults={
        "blocked@example.com": "mail:550 5.7.60 not allowed to send as this sender"})
    transport = _transport(server)
    refused = transport.send("blocked@example.com", "b@example.com", RAW)
    sent = transport.send("sender@example.com", "b@example.com", RAW)
    transport.close()
    assert (refused.status, refused.code, refused.stage) == ("failed", 550, "mail")
    assert "send as" in refused.text
    assert sent.status == "sent"
    assert len(server.wait_for(1)) == 1


def test_a_refusal_after_the_data_is_reported_at_data(smtp_server):
    """The answer to the message itself (554 after the dot) is the data stage's."""
    server = smtp_server(pipelining=True, faults={
        "quota@example.com": "data:554 5.2.0 STOREDRV.Submission.Exception:"
                             "SubmissionQuotaExceededException"})
    transport = _transport(server)
    outcome = transport.send("sender@example.com", "quota@example.com", RAW)
    transport.close()
    assert (outcome.status, outcome.code, outcome.stage) == ("failed", 554, "data")
    assert "SubmissionQuota" in outcome.text


def test_before_data_runs_after_354_and_stopping_there_delivers_nothing(smtp_server):
    """The hook runs once the group is answered; raising drops the connection mid-DATA and
    the server keeps nothing."""
    server = smtp_server(pipelining=True)
    transport = _transport(server)
    calls = []

    def stop():
        calls.append(transport._stage)
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError):
        transport.send("sender@example.com", "b@example.com", RAW, before_data=stop)
    assert calls == ["data"] and transport.smtp is None
    assert transport.send("sender@example.com", "c@example.com", RAW).status == "sent"
    transport.close()
    assert [g.rcpt_tos for g in server.wait_for(1)] == [["c@example.com"]]


def test_dsn_smtputf8_and_international_domains_are_sent_as_before(smtp_server):
    """DSN parameters, SMTPUTF8 for a non-ASCII local part and A-label domains all go out
    in the pipelined group exactly as one command at a time."""
    server = smtp_server(pipelining=True, dsn=True, smtputf8=True)
    transport = _transport(server)
    first = transport.send("bounces+x@bounces.example.com", "anna@bücher.example", RAW,
                           dsn_envid="ENV1")
    second = transport.send("sender@example.com", "jörg@example.com", RAW)
    transport.close()
    assert first.status == second.status == "sent"
    one, two = server.wait_for(2)
    assert one.rcpt_tos == ["anna@xn--bcher-kva.example"]
    assert "ENVID=ENV1" in one.mail_options and "NOTIFY=SUCCESS,FAILURE,DELAY" in one.rcpt_options
    assert two.rcpt_tos == ["jörg@example.com"] and "SMTPUTF8" in two.mail_options
    assert server.handler.data_behind_rcpt == [True, True]


def test_a_server_without_smtputf8_gets_nothing_for_a_non_ascii_local_part(smtp_server):
    """As today: unsupported, nothing sent, even when pipelining is offered."""
    server = smtp_server(pipelining=True)
    transport = _transport(server)
    outcome = transport.send("sender@example.com", "jörg@example.com", RAW)
    transport.close()
    assert outcome.status == "unsupported" and "SMTPUTF8" in outcome.text
    assert server.handler.data_behind_rcpt == []


def test_a_silent_server_times_out_as_a_deferral(smtp_server):
    """A server that never answers the message is a timeout, deferred, at the data stage."""
    server = smtp_server(pipelining=True, faults={"slow@example.com": "stall"})
    transport = _transport(server, timeout=1)
    outcome = transport.send("sender@example.com", "slow@example.com", RAW)
    assert (outcome.status, outcome.stage) == ("deferred", "data")
    assert "timeout" in outcome.text and transport.smtp is None


def test_starttls_and_auth_then_pipelining(smtp_server, server_tls, ca_pem):
    """Over STARTTLS with AUTH the group is pipelined too (PIPELINING read from the second
    EHLO, after TLS)."""
    server = smtp_server(starttls_context=server_tls, auth=("mailer", "s3cret"),
                         pipelining=True)
    transport = _transport(server, security="starttls", auth="login", username="mailer",
                           password="s3cret", ca_pem=ca_pem)
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    transport.close()
    assert outcome.status == "sent"
    [got] = server.wait_for(1)
    assert got.authenticated_as == "mailer"
    assert server.handler.data_behind_rcpt == [True]


def test_a_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one():
    """A server that hung up between messages (idle timeout): the pipelined group hits a
    closed connection before MAIL was answered, so nothing was taken and one fresh try is
    safe."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sessions = []

    def serve():
        for index in range(2):
            conn, _ = listener.accept()
            file = conn.makefile("rb")
            conn.sendall(b"220 hi\r\n")
            file.readline()
            conn.sendall(b"250-hi\r\n250 PIPELINING\r\n")
            if index == 0:
                file.close()
                conn.close()  # dropped before any message
                sessions.append("dropped")
                continue
            lines = [file.readline() for _ in range(3)]
            conn.sendall(b"250 ok\r\n250 ok\r\n354 go\r\n")
            body = b""
            while not body.endswith(b"\r\n.\r\n"):
                body += file.readline()
            conn.sendall(b"250 queued\r\n")
            sessions.append(b"".join(lines))
            file.readline()
            conn.sendall(b"221 bye\r\n")
            file.close()
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = PipeliningTransport(SmtpSettings(host="127.0.0.1", port=port, timeout=5))
    transport.connect()
    outcome = transport.send("sender@example.com", "b@example.com", RAW)
    transport.close()
    thread.join(5)
    listener.close()
    assert outcome.status == "sent", outcome
    assert sessions[0] == "dropped"
    assert sessions[1].startswith(b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<b@example.com>")
