"""The DNS check of an international From domain looks up its IDNA 2008 A-labels (issue 14),
against a real DNS server (dnslib): straße.example is xn--strae-oqa.example, not the
strasse.example that dnspython's default IDNA 2003 encoding would ask about."""
import textwrap

import pytest
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from dashboard.services.delivery import dns_check

from ...conftest import free_port
from .conftest import RELAY_IP

ZONE = textwrap.dedent(f"""
    xn--strae-oqa.example.         60 IN TXT "v=spf1 ip4:{RELAY_IP} -all"
    _dmarc.xn--strae-oqa.example.  60 IN TXT "v=DMARC1; p=none"
    strasse.example.               60 IN TXT "v=spf1 -all"
    _dmarc.strasse.example.        60 IN TXT "v=DMARC1; p=reject"
""")


@pytest.fixture(scope="module")
def idn_dns_server():
    """dnslib serving ZONE over UDP on 127.0.0.1."""
    port = free_port()
    server = DNSServer(ZoneResolver(ZONE), port=port, address="127.0.0.1")
    server.start_thread()
    yield f"127.0.0.1:{port}"
    server.stop()


def test_an_international_from_domain_is_checked_under_its_own_a_labels(idn_dns_server):
    """SPF and DMARC of straße.example are those published for xn--strae-oqa.example."""
    result = dns_check.check("straße.example", RELAY_IP, "bounces.postino.example.com",
                             [idn_dns_server], timeout=2)
    assert result["spf"]["result"] == "pass", result
    assert result["dmarc"]["policy"] == "none"
    assert result["verdict"] == "pass"
