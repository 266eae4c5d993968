"""SMTP pipelining (RFC 2920): MAIL FROM, RCPT TO and DATA in one write.

smtplib waits for each reply before the next command, so a message costs four round trips
(MAIL, RCPT, DATA, the message); against a relay 20 ms away that alone caps one connection
at about a dozen messages a second. Where the server advertises PIPELINING, this transport
sends the three commands together and reads their replies in order: two round trips.

Everything else is SmtpTransport's, unchanged: connection, TLS, AUTH, the SMTPUTF8 and
A-label rules, timeouts, what each failure becomes, and the hooks. `before_data` runs after
the server's 354 and before a byte of the message: nothing is delivered until the final
dot, so a worker that stops there (or dies) has sent nothing; on error the connection is
dropped without QUIT, as in the middle of any message.
"""
from __future__ import annotations

import smtplib
from email.utils import parseaddr

from .transport import _PLAIN_ADDRESS, SmtpTransport, _content


def _address(smtp: smtplib.SMTP, address: str) -> str:
    """The address as smtplib's mail()/rcpt() would put it (quoteaddr), cheaply when plain."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address) if parseaddr(address)[1] else f"<{address}>"


def _line(smtp: smtplib.SMTP, command: str, options: list[str]) -> bytes:
    """One command line, encoded as smtplib.putcmd would (and refusing what it refuses)."""
    if options and smtp.does_esmtp:
        command += " " + " ".join(options)
    if "\r" in command or "\n" in command:
        raise ValueError("command and arguments contain prohibited newline characters")
    return f"{command}\r\n".encode(smtp.command_encoding)


class PipeliningTransport(SmtpTransport):
    """SmtpTransport that pipelines each message's commands where the server allows it."""

    def pipelining(self) -> bool:
        """True when the connected server advertises PIPELINING."""
        return self.smtp is not None and self.smtp.has_extn("pipelining")

    def _transaction(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str,
                     data: bytes, mail_options: list[str], rcpt_options: list[str],
                     before_data=None, while_server_works=None) -> tuple[int, bytes]:
        """MAIL + RCPT + DATA in one write, their replies read in order, then the message.

        A refused MAIL or RCPT ends the message there, its later replies read (a DATA the
        server accepted anyway gets an empty message, as RFC 2920 asks), so the connection
        stays in step for the next one; the caller sends RSET as after any refusal."""
        if not smtp.has_extn("pipelining"):
            return super()._transaction(smtp, envelope_from, recipient, data, mail_options,
                                        rcpt_options, before_data, while_server_works)
        self._stage = "mail"
        if any(option.lower() == "smtputf8" for option in mail_options):
            smtp.command_encoding = "utf-8"  # what smtplib's mail() does for SMTPUTF8
        group = (_line(smtp, f"MAIL FROM:{_address(smtp, envelope_from)}", mail_options)
                 + _line(smtp, f"RCPT TO:{_address(smtp, recipient)}", rcpt_options)
                 + b"DATA\r\n")
        smtp.send(group)
        mail = smtp.getreply()
        if mail[0] != 250:
            self._stale = mail[0] == 421  # closing: nothing of this message was taken
            if mail[0] != 421:
                self._drain(smtp, 2)
            return mail
        self._stage = "rcpt"
        rcpt = smtp.getreply()
        if rcpt[0] not in (250, 251):
            if rcpt[0] != 421:
                self._drain(smtp, 1)
            return rcpt
        self._stage = "data"
        code, reply = smtp.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        if before_data is not None:
            before_data()
        return _content(smtp, data, while_server_works)

    def _drain(self, smtp: smtplib.SMTP, replies: int) -> None:
        """Read the replies still owed for a refused message; a DATA accepted despite the
        refusal gets an empty message. A connection that fails here is dropped (the next
        message opens a fresh one): the refusal already read is what gets reported."""
        try:
            for _ in range(replies):
                code, _reply = smtp.getreply()
            if code == 354:
                smtp.send(b".\r\n")
                smtp.getreply()
        except (OSError, smtplib.SMTPException):
            self.discard()
