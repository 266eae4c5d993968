"""Real SMTP servers for the tests (aiosmtpd on 127.0.0.1): sink, STARTTLS+AUTH, implicit TLS,
and a fault server whose answers are scripted per recipient."""
from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .conftest import free_port


@dataclass
class Received:
    """One message as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]
    rcpt_options: list[str]
    authenticated_as: str | None

    @property
    def message(self):
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class Sink:
    """A running server and what it received."""

    host: str
    port: int
    controller: Controller
    handler: object
    received: list[Received] = field(default_factory=list)

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` messages arrived."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


class RecordingHandler:
    """Accepts everything and records it; `faults` scripts answers per recipient.

    faults maps a recipient address to one of: "451" / "550" (at RCPT), "552" (at DATA),
    "drop" (close the connection mid-DATA), "stall" (never answer DATA), or any reply as a
    server gives it: "rcpt:550 5.7.1 …" at RCPT, "data:554 5.2.0 …" after DATA; a sender
    mapped to "mail:<reply>" is refused at MAIL.
    """

    def __init__(self, sink_list: list[Received], faults: dict[str, str] | None = None):
        self.received = sink_list
        self.faults = faults if faults is not None else {}
        self.pipelining = False  # advertise PIPELINING (RFC 2920)
        # per RCPT: was the client's DATA already waiting behind it (a pipelined group)?
        self.data_behind_rcpt: list[bool] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        extra = (["250-DSN"] if getattr(self, "dsn", False) else []) + (
            ["250-PIPELINING"] if self.pipelining else [])
        return responses[:-1] + extra + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        fault = self.faults.get(address.lower())
        if fault and fault.startswith("mail:"):
            return fault[5:]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.data_behind_rcpt.append(b"DATA\r\n" in bytes(server._reader._buffer).upper())
        fault = self.faults.get(address.lower())
        if fault and fault.startswith("rcpt:"):
            return fault[5:]
        if fault == "451":
            return "451 4.3.0 Try again later"
        if fault == "550":
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        faults = {self.faults.get(r.lower()) for r in envelope.rcpt_tos}
        scripted = sorted(f[5:] for f in faults if f and f.startswith("data:"))
        if scripted:
            return scripted[0]
        if "552" in faults:
            return "552 5.3.4 Message too big"
        if "drop" in faults:
            server.transport.close()
            return None
        if "stall" in faults:
            await asyncio.sleep(60)
        login = getattr(session, "login_data", None)
        user = getattr(session, "auth_data", None)
        self.received.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
            or envelope.content, list(envelope.mail_options), list(envelope.rcpt_options),
            _login_name(user) or _login_name(login),
        ))
        return "250 2.0.0 Ok: queued as TEST"


def _login_name(data) -> str | None:
    if isinstance(data, LoginPassword):
        return data.login.decode()
    return None


class Authenticator:
    """Accepts one username/password pair (failed AUTH must not be 'handled', or smtplib hangs)."""

    def __init__(self, username: str, password: str):
        self.username, self.password = username, password

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            if (auth_data.login.decode() == self.username
                    and auth_data.password.decode() == self.password):
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


class DsnSMTP(SMTP):
    """An aiosmtpd SMTP that accepts the DSN parameters (RET, ENVID, NOTIFY, ORCPT)."""

    def _getparams(self, params):
        result = super()._getparams(params)
        if result is not None:
            for name in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(name, None)
        return result


class DsnController(Controller):
    """A Controller whose server advertises and accepts DSN."""

    def factory(self):
        return DsnSMTP(self.handler, **self.SMTP_kwargs)


def start_server(*, faults: dict[str, str] | None = None, tls_context: ssl.SSLContext | None = None,
                 starttls_context: ssl.SSLContext | None = None,
                 auth: tuple[str, str] | None = None, dsn: bool = False,
                 smtputf8: bool = False, pipelining: bool = False) -> Sink:
    """Start an aiosmtpd server on a free port of 127.0.0.1 (`smtputf8`: offering SMTPUTF8,
    RFC 6531, as aiosmtpd does only when asked; `pipelining`: advertising PIPELINING, which
    aiosmtpd never does, though it reads pipelined commands in order as RFC 2920 asks)."""
    received: list[Received] = []
    handler = RecordingHandler(received, faults)
    handler.pipelining = pipelining
    port = free_port()
    kwargs: dict = {"hostname": "127.0.0.1", "port": port, "ready_timeout": 10}
    server_kwargs: dict = {"data_size_limit": 20 * 1024 * 1024, "enable_SMTPUTF8": smtputf8}
    if auth:
        server_kwargs["authenticator"] = Authenticator(*auth)
        server_kwargs["auth_require_tls"] = tls_context is None
    if starttls_context is not None:
        server_kwargs["tls_context"] = starttls_context
        server_kwargs["require_starttls"] = True
    if tls_context is not None:
        kwargs["ssl_context"] = tls_context
        server_kwargs["auth_require_tls"] = False
    controller_class = Controller
    if dsn:
        handler.dsn = True
        controller_class = DsnController
    controller = controller_class(handler, **kwargs, **server_kwargs)
    controller.start()
    return Sink("127.0.0.1", port, controller, handler, received)
