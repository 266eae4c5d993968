"""DNS check for `custom_from`: will mail with the customer's From, sent by our relay, pass?

Looks up the From domain's SPF and DMARC records (dnspython, with a timeout), evaluates SPF
for our relay's IPs (ip4/ip6/a/mx/include/exists/redirect/all, the 10-lookup limit, loop
detection) and tells whether DMARC alignment can succeed when the envelope sender is on our
bounce domain, or through the customer's DKIM key we sign with (its record is checked
here too, see `evaluate_dkim`). A DNS failure is reported as such, never as a pass.

The result is a plain JSON-able dict (stored on the customer); the template turns its codes
into words in the user's language.
"""
from __future__ import annotations

import ipaddress
import socket
from datetime import UTC, datetime

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
from flask import current_app

from ...addresses import ascii_domain

LOOKUP_LIMIT = 10
MX_LIMIT = 10
VERDICTS = ("pass", "risk", "reject", "dns_error")
# Second-level public suffixes common among Italian and European customers; enough to find the
# organisational domain without shipping the whole Public Suffix List.
MULTI_LABEL_SUFFIXES = {
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "com.au", "net.au",
    "org.au", "co.nz", "co.za", "co.jp", "com.br", "com.mx", "com.ar", "com.tr", "co.in",
    "com.cn", "com.sg", "com.hk", "co.il", "com.pl", "gov.it", "edu.it",
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DnsFailure(Exception):
    """A lookup that could not be answered (timeout, SERVFAIL, no reachable nameserver)."""


class SpfError(Exception):
    """A permanent SPF error (RFC 7208 permerror): carries a reason code and a detail."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(code)
        self.code = code
        self.detail = detail


class Lookup:
    """A small caching DNS client on the configured nameservers, with a per-query timeout."""

    def __init__(self, nameservers: list[str] | None = None, timeout: float = 3.0):
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [_nameserver(item) for item in nameservers]
        else:
            try:
                self.resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                self.resolver = dns.resolver.Resolver(configure=False)
                self.resolver.nameservers = ["127.0.0.1"]
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout
        self.resolver.cache = None
        self._cache: dict[tuple[str, str], list] = {}
        self.queries = 0

    def query(self, name: str, rdtype: str) -> list:
        """Answers for (name, type); empty when the name or the type does not exist."""
        key = (name.lower().rstrip("."), rdtype)
        if key in self._cache:
            return self._cache[key]
        self.queries += 1
        try:
            # dnspython would encode an international name with IDNA 2003 (straße.example
            # would become strasse.example, another domain): A-labels as email-validator's
            ascii_name = ascii_domain(key[0])
        except ValueError as exc:
            raise DnsFailure(str(exc)) from None
        try:
            answer = self.resolver.resolve(ascii_name + ".", rdtype, search=False,
                                           raise_on_no_answer=False)
            records = list(answer) if answer.rrset is not None else []
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            records = []
        except dns.exception.Timeout:
            raise DnsFailure(f"no answer for {key[0]} {rdtype} within "
                             f"{self.resolver.lifetime:g}s") from None
        except dns.resolver.NoNameservers:
            raise DnsFailure(f"no nameserver could answer for {key[0]} {rdtype}") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsFailure(f"lookup of {key[0]} {rdtype} failed: {exc}") from None
        self._cache[key] = records
        return records

    def txt(self, name: str) -> list[str]:
        """TXT strings of a name, each record's chunks joined."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.query(name, "TXT")]

    def addresses(self, name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """A and AAAA addresses of a name."""
        found = [ipaddress.ip_address(r.address) for r in self.query(name, "A")]
        found += [ipaddress.ip_address(r.address) for r in self.query(name, "AAAA")]
        return found

    def mx(self, name: str) -> list[str]:
        """MX host names of a name, by preference."""
        records = sorted(self.query(name, "MX"), key=lambda r: r.preference)
        return [r.exchange.to_text().rstrip(".") for r in records]


def _nameserver(item: str):
    """'host' or 'host:port' (IPv6 as [addr]:port) → a dnspython nameserver."""
    item = item.strip()
    host, port = item, 53
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif item.count(":") == 1:
        host, _, raw_port = item.partition(":")
        port = int(raw_port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = socket.getaddrinfo(host, port, proto=socket.IPPROTO_UDP)[0][4][0]
    return dns.nameserver.Do53Nameserver(host, port)


def parse_networks(raw: str) -> list[Network]:
    """POSTINO_RELAY_IPS: comma-separated IPs or CIDRs."""
    networks = []
    for item in (raw or "").replace(";", ",").split(","):
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return networks


def organisational_domain(domain: str) -> str:
    """The registrable domain (example.co.uk, example.it) of a host name."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in MULTI_LABEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


# -- SPF (RFC 7208) -------------------------------------------------------------------------

class _SpfState:
    """Lookup budget and include chain, shared across one evaluation."""

    def __init__(self, lookup: Lookup):
        self.lookup = lookup
        self.lookups = 0
        self.chain: list[str] = []

    def count(self, term: str) -> None:
        self.lookups += 1
        if self.lookups > LOOKUP_LIMIT:
            raise SpfError("too_many_lookups", term)


def spf_record(lookup: Lookup, domain: str) -> str | None:
    """The domain's SPF record, None when there is none; two records are a permerror."""
    records = [t for t in lookup.txt(domain)
               if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if len(records) > 1:
        raise SpfError("multiple_records", domain)
    return records[0] if records else None


def _split_cidr(value: str) -> tuple[str, int | None, int | None]:
    """'domain/24//64' → ('domain', 24, 64)."""
    v4 = v6 = None
    if "//" in value:
        value, _, raw6 = value.partition("//")
        v6 = int(raw6)
    if "/" in value:
        value, _, raw4 = value.partition("/")
        v4 = int(raw4)
    return value, v4, v6


def _covers(address, prefix4: int | None, prefix6: int | None, net: Network) -> bool:
    """True when the relay network lies inside address/prefix."""
    if address.version != net.version:
        return False
    prefix = (prefix4 if address.version == 4 else prefix6)
    prefix = address.max_prefixlen if prefix is None else prefix
    mech = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return net.subnet_of(mech)


def _mechanism_matches(state: _SpfState, name: str, arg: str, domain: str, net: Network) -> bool:
    lookup = state.lookup
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        try:
            mech = ipaddress.ip_network(arg, strict=False)
        except ValueError:
            raise SpfError("bad_syntax", f"{name}:{arg}") from None
        if (name == "ip4") != (mech.version == 4):
            raise SpfError("bad_syntax", f"{name}:{arg}")
        return mech.version == net.version and net.subnet_of(mech)
    if name in ("a", "mx"):
        state.count(f"{name}:{arg or domain}")
        target, p4, p6 = _split_cidr(arg) if arg else (domain, None, None)
        target = target or domain
        if "%" in target:
            return False  # macros are not expanded: treated as no match
        hosts = [target] if name == "a" else lookup.mx(target)[:MX_LIMIT]
        for host in hosts:
            if any(_covers(ip, p4, p6, net) for ip in lookup.addresses(host)):
                return True
        return False
    if name == "exists":
        state.count(f"exists:{arg}")
        if not arg or "%" in arg:
            return False
        return bool(lookup.query(arg, "A"))
    if name == "ptr":
        state.count("ptr")
        return False  # discouraged by RFC 7208; our relay is never authorised this way
    if name == "include":
        state.count(f"include:{arg}")
        if not arg or "%" in arg:
            raise SpfError("bad_syntax", f"include:{arg}")
        result, _detail = _check_host(state, arg, net)
        if result == "pass":
            return True
        if result in ("fail", "softfail", "neutral"):
            return False
        if result == "none":
            raise SpfError("include_without_spf", arg)
        raise SpfError("include_error", arg)
    raise SpfError("bad_syntax", name)


def _check_host(state: _SpfState, domain: str, net: Network) -> tuple[str, str]:
    """Evaluate `domain`'s SPF for `net`: (result, the deciding term or reason)."""
    domain = domain.lower().rstrip(".")
    if domain in state.chain:
        raise SpfError("loop", " → ".join(state.chain + [domain]))
    state.chain.append(domain)
    try:
        record = spf_record(state.lookup, domain)
        if record is None:
            return "none", domain
        redirect = None
        for term in record.split()[1:]:
            lowered = term.lower()
            if "=" in lowered and ":" not in lowered.split("=", 1)[0]:
                key, _, value = term.partition("=")
                if key.lower() == "redirect":
                    redirect = value
                continue
            qualifier = "+"
            if lowered[0] in "+-~?":
                qualifier, term = lowered[0], term[1:]
            name, sep, arg = term.partition(":")
            if not sep and "/" in name:
                name, _, cidr = name.partition("/")
                arg = "/" + cidr
            name = name.lower()
            if _mechanism_matches(state, name, arg, domain, net):
                result = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}[qualifier]
                return result, f"{qualifier if qualifier != '+' else ''}{name}" + (
                    f":{arg}" if arg and not arg.startswith("/") else "")
        if redirect:
            state.count(f"redirect={redirect}")
            result, detail = _check_host(state, redirect, net)
            if result == "none":
                raise SpfError("include_without_spf", redirect)
            return result, f"redirect={redirect}: {detail}"
        return "neutral", "no mechanism matched"
    finally:
        state.chain.pop()


def evaluate_spf(lookup: Lookup, domain: str, networks: list[Network]) -> dict:
    """SPF of `domain` for every relay network; the worst result decides."""
    order = ["pass", "neutral", "none", "softfail", "fail", "permerror", "temperror"]
    outcome = {"record": None, "result": "none", "code": "no_record", "detail": "",
               "lookups": 0}
    try:
        outcome["record"] = spf_record(lookup, domain)
    except SpfError as exc:
        return {**outcome, "result": "permerror", "code": exc.code, "detail": exc.detail}
    if outcome["record"] is None:
        return outcome
    worst = None
    for net in networks or []:
        state = _SpfState(lookup)
        try:
            result, detail = _check_host(state, domain, net)
            code = "matched" if result != "neutral" or detail != "no mechanism matched" \
                else "no_match"
        except SpfError as exc:
            result, detail, code = "permerror", exc.detail, exc.code
        entry = {"result": result, "code": code, "detail": detail, "lookups": state.lookups,
                 "network": str(net)}
        if worst is None or order.index(result) > order.index(worst["result"]):
            worst = entry
    if worst is None:
        return {**outcome, "result": "neutral", "code": "no_relay_ips"}
    return {**outcome, **worst}


# -- DMARC (RFC 7489) -----------------------------------------------------------------------

def parse_dmarc(record: str) -> dict[str, str]:
    """Tags of a DMARC record, lowercased names."""
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    return tags


def evaluate_dmarc(lookup: Lookup, domain: str, bounce_domain: str) -> dict:
    """The DMARC policy in force for `domain` and whether SPF alignment can succeed."""
    org = organisational_domain(domain)
    out = {"record": None, "found_at": None, "policy": None, "aspf": "r",
           "alignment_possible": False, "org_domain": org}
    candidates = [domain] if org == domain else [domain, org]
    for name in candidates:
        records = [t for t in lookup.txt(f"_dmarc.{name}")
                   if t.replace(" ", "").lower().startswith("v=dmarc1")]
        if len(records) == 1:
            tags = parse_dmarc(records[0])
            policy = tags.get("p", "").lower()
            if name != domain and tags.get("sp"):
                policy = tags["sp"].lower()
            if policy not in ("none", "quarantine", "reject"):
                policy = "none"  # an invalid policy is applied as none (RFC 7489 §6.6.3)
            aspf = tags.get("aspf", "r").lower()
            out.update(record=records[0], found_at=f"_dmarc.{name}", policy=policy,
                       aspf="s" if aspf == "s" else "r")
            break
    bounce = bounce_domain.lower().rstrip(".")
    if out["aspf"] == "s":
        out["alignment_possible"] = bounce == domain
    else:
        out["alignment_possible"] = organisational_domain(bounce) == org
    return out


# -- DKIM (RFC 6376 §3.6) -------------------------------------------------------------------

def evaluate_dkim(lookup: Lookup, name: str, algorithm: str, public: str) -> dict:
    """The DKIM key record at `name` (<selector>._domainkey.<domain>) against our public key.

    status: match (exactly one key record, of our algorithm, with our p=), missing (no key
    record at the name), differs (a record that is not ours: another key, an empty p= that
    revokes it, another k=, or several records). Raises DnsFailure when DNS does not answer.
    """
    from dkim.util import InvalidTagValueList, parse_tag_value

    found = lookup.txt(name)
    records = []
    for text in found:
        try:
            tags = parse_tag_value(text.encode("utf-8", "replace"))
        except InvalidTagValueList:
            continue
        if tags.get(b"v", b"DKIM1") == b"DKIM1" and b"p" in tags:
            records.append((text, tags))
    out = {"name": name, "algorithm": algorithm, "record": None, "status": "missing",
           "detail": ""}
    if not records:
        if found:
            out["detail"] = "no_key_record"
        return out
    text, tags = records[0]
    out["record"] = text
    if len(records) > 1:
        return {**out, "status": "differs", "detail": "several_records"}
    key_type = tags.get(b"k", b"rsa").decode("ascii", "replace").lower()
    published = b"".join(tags[b"p"].split()).decode("ascii", "replace")
    if not published:
        return {**out, "status": "differs", "detail": "revoked"}
    if key_type != algorithm:
        return {**out, "status": "differs", "detail": "other_algorithm"}
    if published != public:
        return {**out, "status": "differs", "detail": "other_key"}
    return {**out, "status": "match"}


# -- the verdict ----------------------------------------------------------------------------

def verdict(spf: dict, dmarc: dict | None, dkim: dict | None = None) -> str:
    """pass / risk / reject from the SPF result and the DMARC policy (see module docstring);
    a verified DKIM key we sign with makes DMARC pass whatever SPF says."""
    if dkim and dkim.get("signing") and dkim.get("status") == "match":
        return "pass"
    aligned = bool(dmarc and dmarc["alignment_possible"])
    policy = dmarc["policy"] if dmarc else None
    if policy == "reject" and not aligned:
        return "reject"
    if policy == "quarantine" and not aligned:
        return "risk"
    if spf["result"] == "pass":
        return "pass"
    return "risk"


def check(domain: str, relay_ips: str | list[Network], bounce_domain: str,
          nameservers: list[str] | None = None, timeout: float = 3.0) -> dict:
    """Check one From domain; the result is JSON-able (verdict, spf, dmarc, errors)."""
    domain = (domain or "").strip().lower().rstrip(".")
    networks = parse_networks(relay_ips) if isinstance(relay_ips, str) else list(relay_ips)
    lookup = Lookup(nameservers, timeout)
    result: dict = {
        "domain": domain,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "relay_ips": [str(n) for n in networks],
        "bounce_domain": bounce_domain,
        "spf": None,
        "dmarc": None,
        "errors": [],
    }
    try:
        result["spf"] = evaluate_spf(lookup, domain, networks)
    except DnsFailure as exc:
        result["errors"].append(f"SPF: {exc}")
    try:
        result["dmarc"] = evaluate_dmarc(lookup, domain, bounce_domain)
    except DnsFailure as exc:
        result["errors"].append(f"DMARC: {exc}")
    if result["errors"] or result["spf"] is None:
        result["verdict"] = "dns_error"
    else:
        result["verdict"] = verdict(result["spf"], result["dmarc"])
    return result


def configured_nameservers() -> list[str]:
    """POSTINO_DNS_NAMESERVERS as a list (empty: the system resolver)."""
    raw = current_app.config.get("POSTINO_DNS_NAMESERVERS") or ""
    return [item.strip() for item in str(raw).split(",") if item.strip()]


def check_domain(domain: str) -> dict:
    """Check a From domain with the app's relay IPs, bounce domain, nameservers and timeout."""
    from . import verp

    cfg = current_app.config
    try:
        networks = parse_networks(cfg.get("POSTINO_RELAY_IPS") or "")
    except ValueError as exc:
        return {"domain": domain, "verdict": "dns_error", "spf": None, "dmarc": None,
                "relay_ips": [], "bounce_domain": verp.bounce_domain(),
                "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "errors": [f"POSTINO_RELAY_IPS is not a list of IPs/CIDRs: {exc}"]}
    try:
        nameservers = configured_nameservers()
        lookup_timeout = float(cfg.get("POSTINO_DNS_TIMEOUT") or 3)
        return check(domain, networks, verp.bounce_domain(), nameservers, lookup_timeout)
    except (ValueError, OSError) as exc:
        return {"domain": domain, "verdict": "dns_error", "spf": None, "dmarc": None,
                "relay_ips": [str(n) for n in networks], "bounce_domain": verp.bounce_domain(),
                "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "errors": [f"POSTINO_DNS_NAMESERVERS is not usable: {exc}"]}

