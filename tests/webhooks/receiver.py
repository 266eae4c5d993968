"""A real HTTPS webhook receiver on 127.0.0.1 for the tests: its certificate is issued by a
throwaway CA (trustme, built on cryptography) that Postino trusts through
POSTINO_WEBHOOK_CA_FILE. It records every request and answers as the test scripts it."""
from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme


@dataclass
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The running server: `answers` is consumed one per request (an int status, "sleep:S"
    to answer 200 after S seconds, "hold" to wait for `release`); 200 when empty."""

    server: ThreadingHTTPServer
    ca_file: str
    received: list[Received] = field(default_factory=list)
    answers: list = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/postino"

    def events(self) -> list[dict]:
        """Bodies received, in order."""
        with self.lock:
            return [r.json for r in self.received]

    def wait_for(self, count: int, timeout: float = 10) -> list[dict]:
        """Wait until `count` requests arrived; returns the bodies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                break
            time.sleep(0.02)
        return self.events()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def start(tmp_path) -> Receiver:
    """Start a receiver with a fresh CA; its CA file is written under tmp_path."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "webhook-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
        disable_nagle_algorithm = True  # headers and body leave at once, as real servers do

        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            receiver: Receiver = state["receiver"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(Received(self.path, dict(self.headers), body))
                answer = receiver.answers.pop(0) if receiver.answers else 200
            if answer == "hold":
                receiver.holding.set()
                receiver.release.wait(30)
                answer = 200
            elif isinstance(answer, str) and answer.startswith("sleep:"):
                time.sleep(float(answer.split(":", 1)[1]))
                answer = 200
            try:
                text = b"ok" if answer < 300 else b"receiver says no"
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
            except OSError:  # the client went away (timed out, killed)
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server, str(ca_file))
    state["receiver"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver
