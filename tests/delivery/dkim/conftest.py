"""DKIM fixtures: a real DNS server (dnslib on 127.0.0.1) whose zone a test edits as it goes
(publish the record of a key it just generated, remove it, publish a wrong one), dkimpy's
verification against that server, and a signing table read afresh around every test."""
from __future__ import annotations

import threading

import dns.resolver
import pytest
from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from dashboard.services.delivery import dkim_keys
from tests.english import *  # noqa: F403 - services and clients speak English here

from ...conftest import free_port

CUSTOMER_DOMAIN = "firmato.example"


class EditableZone(BaseResolver):
    """TXT records by name, each a list of strings (as DNS stores long values)."""

    def __init__(self):
        self.records: dict[str, list[list[str]]] = {}
        self.lock = threading.Lock()

    def set(self, name: str, *values: str | list[str]) -> None:
        """Publish TXT records at `name`: a list is the record's strings; a str is split in
        255-byte strings, as a DNS panel does with a long value."""
        with self.lock:
            self.records[name.lower().rstrip(".")] = [
                [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
                if isinstance(value, str) else list(value) for value in values]

    def remove(self, name: str) -> None:
        """Unpublish every record at `name`."""
        with self.lock:
            self.records.pop(name.lower().rstrip("."), None)

    def clear(self) -> None:
        with self.lock:
            self.records.clear()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        with self.lock:
            found = self.records.get(name)
        if found is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for strings in found:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=1,
                                    rdata=TXT([s.encode() for s in strings])))
        return reply


@pytest.fixture(scope="session")
def _zone_server():
    zone = EditableZone()
    port = free_port()
    server = DNSServer(zone, port=port, address="127.0.0.1",
                       logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send",
                                        prefix=False))
    server.start_thread()
    yield zone, f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def zone(app, _zone_server):
    """The editable zone, empty at the start of each test, with the app's DNS checks (and
    dkimpy's verification, see `verify`) pointed at it."""
    zone, address = _zone_server
    zone.clear()
    saved = {k: app.config.get(k) for k in ("POSTINO_DNS_NAMESERVERS", "POSTINO_DNS_TIMEOUT")}
    app.config.update(POSTINO_DNS_NAMESERVERS=address, POSTINO_DNS_TIMEOUT=2)
    zone.address = address
    yield zone
    app.config.update(saved)
    zone.clear()


@pytest.fixture(autouse=True)
def _fresh_signing_table(app):
    """Keys of one test never sign another test's mail (ids restart after each test)."""
    dkim_keys.invalidate()
    yield
    dkim_keys.invalidate()


def publish(zone: EditableZone, key) -> None:
    """Publish every record of `key` as the page shows it (its 255-byte strings)."""
    for record in dkim_keys.records(key):
        zone.set(record.name, record.strings)


def dnsfunc_for(zone: EditableZone):
    """dkimpy's dnsfunc, asking the real DNS server for the TXT record of a name."""
    host, port = zone.address.split(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 2

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        try:
            answer = resolver.resolve(name.decode().rstrip(".") + ".", "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return dnsfunc


@pytest.fixture
def verify(zone):
    """verify(data, index=0) -> True when the index-th DKIM-Signature of `data` verifies
    with dkimpy against the key the DNS server publishes."""
    import dkim

    dnsfunc = dnsfunc_for(zone)

    def _verify(data: bytes, index: int = 0) -> bool:
        try:
            return dkim.DKIM(data).verify(idx=index, dnsfunc=dnsfunc)
        except dkim.DKIMException:  # a body hash mismatch is raised, not returned
            return False

    return _verify
