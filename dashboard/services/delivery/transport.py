"""SMTP transports: our relay and customers' own servers, over one reused connection.

smtplib is used directly rather than through Flask-Mail's Connection: Flask-Mail has no
timeout and no certificate check, and it drops `sendmail`'s per-recipient answers, which
Postino needs to tell a refused recipient (failed) from a busy server (deferred).
"""
from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

from flask import current_app

from ...addresses import envelope
from ..core import measures

SECURITIES = ("ssl", "starttls", "none")
AUTHS = ("plain", "login", "none")


@dataclass
class SmtpSettings:
    """Where and how to connect. `password` is plain text only in memory, never stored so."""

    host: str
    port: int
    security: str = "none"  # ssl | starttls | none
    auth: str = "none"  # plain | login | none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    verify: bool = True
    ca_pem: str | None = field(default=None, repr=False)
    name: str = "relay"

    def ssl_context(self) -> ssl.SSLContext:
        """Certificates verified by default; a pasted CA is trusted in addition."""
        context = ssl.create_default_context()
        if self.ca_pem:
            context.load_verify_locations(cadata=self.ca_pem)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass
class Outcome:
    """The server's answer to one message: sent, deferred (retry), failed, or auth_failed;
    or unsupported: the server lacks what the message needs (SMTPUTF8), nothing was sent."""

    status: str
    code: int | None
    text: str
    stage: str = "connect"  # connect | mail | rcpt | data

    @property
    def ok(self) -> bool:
        return self.status == "sent"


def relay_settings() -> SmtpSettings:
    """Our relay, from the MAIL_* settings."""
    cfg = current_app.config
    security = "none"
    if cfg.get("MAIL_USE_SSL"):
        security = "ssl"
    elif cfg.get("MAIL_USE_TLS"):
        security = "starttls"
    username = cfg.get("MAIL_USERNAME")
    return SmtpSettings(
        host=cfg.get("MAIL_SERVER") or "localhost",
        port=int(cfg.get("MAIL_PORT") or 25),
        security=security,
        auth="login" if username else "none",
        username=username,
        password=cfg.get("MAIL_PASSWORD"),
        timeout=float(cfg.get("MAIL_TIMEOUT") or 30),
        name="relay",
    )


def _text(value) -> str:
    """A server's reply as text; NUL (which PostgreSQL cannot store) is dropped."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "")


def _by_code(code: int | None, text: str, stage: str = "connect") -> Outcome:
    if code is not None and 500 <= code < 600:
        return Outcome("failed", code, text, stage)
    return Outcome("deferred", code, text, stage)


class SmtpTransport:
    """One SMTP connection, opened on first use and reused for a whole sweep."""

    def __init__(self, settings: SmtpSettings, local_hostname: str | None = None):
        self.settings = settings
        self.local_hostname = local_hostname or socket.gethostname()
        self.smtp: smtplib.SMTP | None = None
        self.sent_on_connection = 0
        self._stale = False  # the last attempt found a reused connection closed before MAIL
        self._stage = "connect"  # where the exchange of the message in hand has got to

    # -- connection -------------------------------------------------------------------
    def connect(self) -> smtplib.SMTP:
        """Connect, secure and authenticate; raises smtplib/OSError/ssl errors."""
        s = self.settings
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self.local_hostname,
                                    timeout=s.timeout, context=s.ssl_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, local_hostname=self.local_hostname,
                                timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=s.ssl_context())
                smtp.ehlo()
            if s.auth != "none" and s.username:
                self._login(smtp)
        except BaseException:
            _quietly_close(smtp)
            raise
        self.smtp = smtp
        self.sent_on_connection = 0
        return smtp

    def _login(self, smtp: smtplib.SMTP) -> None:
        s = self.settings
        if s.auth == "plain":
            smtp.user, smtp.password = s.username, s.password or ""
            smtp.auth("PLAIN", smtp.auth_plain)
        elif s.auth == "login":
            smtp.user, smtp.password = s.username, s.password or ""
            smtp.auth("LOGIN", smtp.auth_login)

    def close(self) -> None:
        """Say QUIT and forget the connection."""
        if self.smtp is not None:
            _quietly_close(self.smtp)
        self.smtp = None

    def discard(self) -> None:
        """Drop the connection without a word: its state is unknown (an error left it in the
        middle of a message), and a QUIT there could be read as the message's text."""
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            try:
                smtp.close()
            except OSError:
                pass

    def supports_dsn(self) -> bool:
        """True when the connected server advertises DSN (RFC 3461)."""
        return self.smtp is not None and self.smtp.has_extn("dsn")

    # -- sending ----------------------------------------------------------------------
    def send(self, envelope_from: str, recipient: str, data: bytes,
             dsn_envid: str | None = None, before_data=None, while_server_works=None,
             smtputf8: str | None = None) -> Outcome:
        """Send one message to one recipient; every SMTP or network failure becomes an
        Outcome. Anything else raised on the way (and what `before_data` raises) is passed
        on, the connection dropped first: its state is then unknown.

        Addresses go out with their domain in A-labels (punycode). A non-ASCII local part,
        here or in the headers (`smtputf8` names that address), needs a server offering
        SMTPUTF8: MAIL FROM then carries the SMTPUTF8 parameter (RFC 6531); a server without
        it gets nothing and the Outcome is `unsupported`.

        `before_data`, when given, is called once the recipient is accepted and before DATA,
        the point after which the message may be delivered (the sweep waits there for the
        previous message's outcome to be committed, and checks it still holds the lease).
        `while_server_works` is called once the message is handed over and before reading
        the server's answer to it: work done there overlaps with the server's (the sweep
        builds the next message); it must not raise.
        """
        sender, rcpt = envelope(envelope_from), envelope(recipient)
        if not (sender.isascii() and rcpt.isascii()):
            smtputf8 = smtputf8 or (recipient if not rcpt.isascii() else envelope_from)
        reused = self.smtp is not None
        args = (sender, rcpt, data, dsn_envid, before_data, while_server_works, smtputf8)
        started = time.monotonic()
        try:
            outcome = self._attempt(*args)
            if reused and self._stale:
                # The server had closed the reused connection (idle timeout, per-connection
                # limit) before our MAIL FROM: nothing was delivered, so one fresh try is
                # safe. Never after RCPT/DATA began: a retry could deliver it twice.
                outcome = self._attempt(*args)
        except BaseException:
            self.discard()
            raise
        measures.observe_send(self.settings.name, outcome.status, time.monotonic() - started)
        return outcome

    def _attempt(self, envelope_from: str, recipient: str, data: bytes,
                 dsn_envid: str | None, before_data=None, while_server_works=None,
                 smtputf8: str | None = None) -> Outcome:
        self._stale = False
        try:
            smtp = self.smtp or self.connect()
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            return Outcome("auth_failed", exc.smtp_code, _text(exc.smtp_error))
        except smtplib.SMTPNotSupportedError as exc:
            self.close()
            return Outcome("deferred", None, f"server does not support it: {exc}")
        except smtplib.SMTPResponseException as exc:
            self.close()
            if exc.smtp_code in (530, 534, 535, 538):
                return Outcome("auth_failed", exc.smtp_code, _text(exc.smtp_error))
            return Outcome("deferred", exc.smtp_code, _text(exc.smtp_error))
        except ssl.SSLCertVerificationError as exc:
            self.close()
            return Outcome("deferred", None, f"TLS certificate not trusted: {exc.verify_message}")
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return Outcome("deferred", None, _describe(exc, self.settings))
        mail_options: list[str] = []
        rcpt_options: list[str] = []
        if smtputf8:
            if not smtp.has_extn("smtputf8"):
                return Outcome("unsupported", None, (
                    f"{smtputf8} has a non-ASCII local part: only a server offering SMTPUTF8 "
                    f"(RFC 6531) can take it, and {self.settings.host}:{self.settings.port} "
                    f"does not offer it"), "mail")
            mail_options.append("SMTPUTF8")
        if dsn_envid and smtp.has_extn("dsn"):
            mail_options += ["RET=HDRS", f"ENVID={dsn_envid}"]
            rcpt_options = ["NOTIFY=SUCCESS,FAILURE,DELAY"]
        self._stage = "mail"
        try:
            code, reply = self._transaction(smtp, envelope_from, recipient, data, mail_options,
                                            rcpt_options, before_data, while_server_works)
            stage = self._stage
            if stage != "data" or code != 250:
                return self._refused(code, reply, stage)
        except smtplib.SMTPDataError as exc:  # the server refused DATA itself (no 354)
            stage = self._stage
            return self._refused(exc.smtp_code, exc.smtp_error, stage)
        except (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            stage = self._stage
            self.close()
            if isinstance(exc.__context__, (socket.timeout, TimeoutError)):
                # smtplib reports a read timeout as a disconnect: say what really happened
                return Outcome("deferred", None, _describe(exc.__context__, self.settings),
                               stage)
            self._stale = stage == "mail"
            return Outcome("deferred", None, f"connection dropped: {exc or type(exc).__name__}",
                           stage)
        except smtplib.SMTPResponseException as exc:
            self.close()
            return _by_code(exc.smtp_code, _text(exc.smtp_error), self._stage)
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            return Outcome("deferred", None, _describe(exc, self.settings), self._stage)
        self.sent_on_connection += 1
        return Outcome("sent", code, _text(reply), stage)

    def _transaction(self, smtp: smtplib.SMTP, envelope_from: str, recipient: str,
                     data: bytes, mail_options: list[str], rcpt_options: list[str],
                     before_data=None, while_server_works=None) -> tuple[int, bytes]:
        """MAIL, RCPT, DATA, one reply at a time. Returns the reply that ended it, and
        `self._stage` names its stage: a refusal at MAIL or RCPT, or the answer to the data
        (delivery.pipelining overrides this for servers offering PIPELINING)."""
        self._stage = "mail"
        code, reply = _mail(smtp, envelope_from, mail_options)
        if code != 250:
            self._stale = code == 421  # "closing transmission channel"
            return code, reply
        self._stage = "rcpt"
        code, reply = _rcpt(smtp, recipient, rcpt_options)
        if code not in (250, 251):
            return code, reply
        if before_data is not None:
            before_data()
        self._stage = "data"
        return _data(smtp, data, while_server_works)

    def _refused(self, code: int, reply, stage: str) -> Outcome:
        """A refusal: 421 means the server is closing the channel, anything else is RSET."""
        if code == 421:
            self.close()
        else:
            self._reset()
        return _by_code(code, _text(reply), stage)

    def _reset(self) -> None:
        """RSET after a refusal so the connection can carry the next message."""
        if self.smtp is None:
            return
        try:
            self.smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()


# -- the commands of one message --------------------------------------------------------
# smtplib's mail()/rcpt() re-parse each address with email.utils.parseaddr and data()
# dot-stuffs with a regular expression: together about a fifth of what a send costs us.
# Plain addresses (what the API and the VERP sender produce) are sent as they are, others
# go through smtplib; DATA does what smtplib does for bytes, stuffing with one replace.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]+@[A-Za-z0-9.\-]+")


def _mail(smtp: smtplib.SMTP, sender: str, options: list[str]) -> tuple[int, bytes]:
    if not _PLAIN_ADDRESS.fullmatch(sender) or any(o.lower() == "smtputf8" for o in options):
        return smtp.mail(sender, options)
    optionlist = " " + " ".join(options) if options and smtp.does_esmtp else ""
    smtp.putcmd("mail", f"FROM:<{sender}>{optionlist}")
    return smtp.getreply()


def _rcpt(smtp: smtplib.SMTP, recipient: str, options: list[str]) -> tuple[int, bytes]:
    if not _PLAIN_ADDRESS.fullmatch(recipient):
        return smtp.rcpt(recipient, options)
    optionlist = " " + " ".join(options) if options and smtp.does_esmtp else ""
    smtp.putcmd("rcpt", f"TO:<{recipient}>{optionlist}")
    return smtp.getreply()


def _data(smtp: smtplib.SMTP, data: bytes, while_server_works=None) -> tuple[int, bytes]:
    """smtplib's DATA for bytes (sent as they are), dot-stuffed with one replace;
    `while_server_works` runs between handing the message over and reading the answer."""
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    return _content(smtp, data, while_server_works)


def _content(smtp: smtplib.SMTP, data: bytes, while_server_works=None) -> tuple[int, bytes]:
    """The message after the server's 354, then its answer."""
    stuffed = data.replace(b"\n.", b"\n..")  # what smtplib's (?m)^\. substitution does
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")
    if while_server_works is not None:
        while_server_works()
    return smtp.getreply()


def _describe(exc: BaseException, settings: SmtpSettings) -> str:
    """A plain description of a connection-level failure, never including credentials."""
    where = f"{settings.host}:{settings.port}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timeout talking to {where} after {settings.timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {settings.host}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {where}: {exc.reason or exc}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{where} closed the connection: {exc}"
    return f"{type(exc).__name__} with {where}: {exc}"


def _quietly_close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        try:
            smtp.close()
        except OSError:
            pass


@dataclass
class ProbeStep:
    """One step of a connection test: what was tried, what the server said (`detail`) and a
    `reason` code the page turns into a sentence with `params`: why it failed, or what to
    know about a step that worked (no encryption, certificate not verified)."""

    name: str
    ok: bool
    detail: str
    reason: str | None = None
    params: dict = field(default_factory=dict)


def _problem(exc: BaseException, settings: SmtpSettings) -> tuple[str, dict]:
    """What went wrong, as a problem code and its parameters (never a credential)."""
    where = f"{settings.host}:{settings.port}"
    timeouts = (socket.timeout, TimeoutError)
    if isinstance(exc, timeouts) or isinstance(exc.__context__, timeouts):
        # smtplib reports a read timeout as "Connection unexpectedly closed: timed out"
        return "timeout", {"where": where, "seconds": round(settings.timeout)}
    if isinstance(exc, ConnectionRefusedError):
        return "refused", {"where": where}
    if isinstance(exc, socket.gaierror):
        return "dns", {"host": settings.host}
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_untrusted", {"reason": exc.verify_message or str(exc)}
    if isinstance(exc, ssl.SSLError):
        return "tls_error", {"where": where, "reason": exc.reason or str(exc)}
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "closed", {"where": where}
    if isinstance(exc, smtplib.SMTPResponseException):
        return "unexpected_reply", {"code": exc.smtp_code, "reply": _text(exc.smtp_error)}
    return "unexpected", {"where": where, "error": f"{type(exc).__name__}: {exc}"}


def _failed(name: str, exc: BaseException, settings: SmtpSettings) -> ProbeStep:
    """A failed step from the exception that ended it."""
    reason, params = _problem(exc, settings)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f"TLS certificate not trusted: {exc.verify_message}"
    else:
        detail = _describe(exc, settings)
    return ProbeStep(name, False, detail, reason, params)


def probe(settings: SmtpSettings) -> list[ProbeStep]:
    """Connect, secure and authenticate step by step, recording each answer (no mail sent)."""
    steps: list[ProbeStep] = []
    s = settings
    smtp = None
    try:
        try:
            if s.security == "ssl":
                smtp = smtplib.SMTP_SSL(timeout=s.timeout, context=s.ssl_context(),
                                        local_hostname=socket.gethostname())
            else:
                smtp = smtplib.SMTP(timeout=s.timeout, local_hostname=socket.gethostname())
            # connect() does not set it: TLS needs it as server_hostname to check the cert
            smtp._host = s.host
            code, banner = smtp.connect(s.host, s.port)
        except (OSError, smtplib.SMTPException) as exc:
            steps.append(_failed("connect", exc, s))
            return steps
        if not 200 <= code < 400:
            steps.append(ProbeStep("connect", False, f"{code} {_text(banner)}", "greeting",
                                   {"code": code}))
            return steps
        steps.append(ProbeStep("connect", True, f"{code} {_text(banner)}"))
        try:
            code, reply = smtp.ehlo()
        except (OSError, smtplib.SMTPException) as exc:
            steps.append(_failed("ehlo", exc, s))
            return steps
        ok = 200 <= code < 300
        steps.append(ProbeStep("ehlo", ok, f"{code} {_text(reply).splitlines()[0]}",
                               None if ok else "unexpected_reply",
                               {} if ok else {"code": code, "reply": _text(reply)}))
        if not ok:
            return steps
        if s.security == "starttls":
            if not smtp.has_extn("starttls"):
                steps.append(ProbeStep("tls", False, "STARTTLS not offered", "no_starttls",
                                       {"where": f"{s.host}:{s.port}"}))
                return steps
            try:
                code, reply = smtp.starttls(context=s.ssl_context())
                smtp.ehlo()
                steps.append(ProbeStep("tls", True, f"{code} {_text(reply)}",
                                       None if s.verify else "tls_unverified"))
            except (OSError, smtplib.SMTPException) as exc:
                steps.append(_failed("tls", exc, s))
                return steps
        elif s.security == "ssl":
            steps.append(ProbeStep("tls", True, "implicit TLS, certificate verified"
                                   if s.verify else "implicit TLS, verification OFF",
                                   None if s.verify else "tls_unverified"))
        if s.auth != "none" and s.username:
            if not smtp.has_extn("auth"):
                steps.append(ProbeStep("auth", False, "AUTH not offered", "no_auth",
                                       {"security": s.security}))
                return steps
            try:
                SmtpTransport(s)._login(smtp)
                steps.append(ProbeStep("auth", True, "235 authentication succeeded",
                                       "plaintext" if s.security == "none" else None))
            except smtplib.SMTPResponseException as exc:
                steps.append(ProbeStep("auth", False, f"{exc.smtp_code} {_text(exc.smtp_error)}",
                                       "auth_refused", {"code": exc.smtp_code}))
                return steps
            except (OSError, smtplib.SMTPException) as exc:
                steps.append(_failed("auth", exc, s))
                return steps
        return steps
    finally:
        if smtp is not None:
            _quietly_close(smtp)
