"""Fixtures for sending modes: TLS certificates from trustme, authenticated SMTP servers,
and a real DNS server (dnslib) serving a test zone on 127.0.0.1."""
from __future__ import annotations

import socket
import textwrap
import threading

import pytest
import trustme
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from ...conftest import free_port
from ...smtp_servers import start_server

SMTP_USER = "notifiche@cliente.example"
SMTP_PASSWORD = "s3cret-Pa55word!"

# The relay IP the checks authorise or not; our bounce domain in the tests is
# bounces.postino.example.com (tests/conftest.py).
RELAY_IP = "192.0.2.25"
ZONE = textwrap.dedent(f"""
    ; pass via include, no DMARC policy that could refuse
    pass.example.              60 IN TXT "v=spf1 include:_spf.relay.example -all"
    _spf.relay.example.        60 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all"
    _dmarc.pass.example.       60 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@pass.example"
    ; -all fail with p=reject
    reject.example.            60 IN TXT "v=spf1 ip4:198.51.100.7 -all"
    _dmarc.reject.example.     60 IN TXT "v=DMARC1; p=reject"
    ; ~all softfail with p=quarantine
    soft.example.              60 IN TXT "v=spf1 mx ~all"
    soft.example.              60 IN MX  10 mail.soft.example.
    mail.soft.example.         60 IN A   203.0.113.9
    _dmarc.soft.example.       60 IN TXT "v=DMARC1; p=quarantine; aspf=r"
    ; no SPF at all, DMARC none
    nospf.example.             60 IN A   203.0.113.10
    _dmarc.nospf.example.      60 IN TXT "v=DMARC1; p=none"
    ; SPF pass through a and redirect, no DMARC record
    nodmarc.example.           60 IN TXT "v=spf1 redirect=_spf.nodmarc.example"
    _spf.nodmarc.example.      60 IN TXT "v=spf1 a:relay.nodmarc.example -all"
    relay.nodmarc.example.     60 IN A   {RELAY_IP}
    ; an include loop
    loop.example.              60 IN TXT "v=spf1 include:loop2.example -all"
    loop2.example.             60 IN TXT "v=spf1 include:loop.example -all"
    ; more than 10 lookups
    many.example.              60 IN TXT "v=spf1 include:l1.many.example include:l2.many.example include:l3.many.example include:l4.many.example include:l5.many.example include:l6.many.example -all"
    l1.many.example.           60 IN TXT "v=spf1 a mx -all"
    l2.many.example.           60 IN TXT "v=spf1 a mx -all"
    l3.many.example.           60 IN TXT "v=spf1 a mx -all"
    l4.many.example.           60 IN TXT "v=spf1 a mx -all"
    l5.many.example.           60 IN TXT "v=spf1 a mx -all"
    l6.many.example.           60 IN TXT "v=spf1 ip4:{RELAY_IP} -all"
    ; a subdomain of our own organisation: relaxed alignment can succeed
    postino.example.com.    60 IN TXT "v=spf1 ip4:{RELAY_IP} -all"
    _dmarc.postino.example.com. 60 IN TXT "v=DMARC1; p=reject"
""")


@pytest.fixture(scope="session")
def ca():
    """A private certificate authority made by the test."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca):
    """A certificate for 127.0.0.1 and localhost, signed by the test CA."""
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture(scope="session")
def ca_pem(ca) -> str:
    """The test CA as the PEM an admin would paste."""
    return ca.cert_pem.bytes().decode()


def _server_context(server_cert):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


@pytest.fixture
def starttls_server(server_cert):
    """A customer's server on STARTTLS with AUTH (one username and password)."""
    sink = start_server(starttls_context=_server_context(server_cert),
                        auth=(SMTP_USER, SMTP_PASSWORD))
    yield sink
    sink.stop()


@pytest.fixture
def implicit_tls_server(server_cert):
    """A customer's server on implicit TLS (port 465 style) with AUTH."""
    sink = start_server(tls_context=_server_context(server_cert), auth=(SMTP_USER, SMTP_PASSWORD))
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def dns_server():
    """dnslib serving ZONE over UDP on 127.0.0.1 (host:port for POSTINO_DNS_NAMESERVERS)."""
    port = free_port()
    server = DNSServer(ZoneResolver(ZONE), port=port, address="127.0.0.1")
    server.start_thread()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def silent_dns_server():
    """A UDP socket that receives queries and never answers (a DNS timeout)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.fixture
def dns_config(app, dns_server):
    """Point the app's DNS checks at the test zone, with our relay at RELAY_IP."""
    saved = {k: app.config.get(k) for k in
             ("POSTINO_DNS_NAMESERVERS", "POSTINO_RELAY_IPS", "POSTINO_DNS_TIMEOUT")}
    app.config.update(POSTINO_DNS_NAMESERVERS=dns_server, POSTINO_RELAY_IPS=RELAY_IP,
                      POSTINO_DNS_TIMEOUT=2)
    yield dns_server
    app.config.update(saved)


@pytest.fixture
def silent_server():
    """A port that accepts connections and never says a word (a hung or firewalled server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()
