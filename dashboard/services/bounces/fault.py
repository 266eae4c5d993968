"""Who is at fault? One verdict for every refusal, delivery report and complaint.

Pure and fast (no Flask, no database): the sweep asks it about the answer a server gave
at send time, the bounce intake about every recipient of a received report. The verdict
is a **class** (who is at fault, which decides the effect) and a **reason** (a stable code
shown to people through `fault_labels`, never stored translated).

How an answer is read, in this order (the first that speaks wins):

1. A DSN success (Action delivered/relayed/expanded, 2.x.x, 2xx) is a delivery.
2. The text. Providers say more in words than in codes, and their words override a
   generic code: "550 5.7.1 … blocked using Spamhaus" is a blocklist, not a refused
   recipient; "554 5.2.0 … SubmissionQuotaExceeded" is the sending account's quota, not a
   full mailbox. The text rules are grouped by who they blame, the groups tried from the
   most specific (our account, our sender identity, blocklists and reputation) to the
   most generic (content and policy), so a phrase about the recipient never hides one
   about us.
3. The enhanced status code (RFC 3463 and the IANA registry, with the subject and the
   detail read separately), then the basic reply code (RFC 5321).
4. Nothing recognisable: class `unknown`. An unexplained 5xx never suppresses anyone:
   suppressing a recipient wrongly is the worse error.

A refusal given before the recipient was named (at connect or MAIL FROM) can never be the
recipient's fault, whatever its words say.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

RECIPIENT_PERMANENT = "recipient_permanent"
RECIPIENT_TEMPORARY = "recipient_temporary"
SENDER_REPUTATION = "sender_reputation"
ACCOUNT_TRANSPORT = "account_transport"
TRANSIENT = "transient"
COMPLAINT = "complaint"
DELIVERED = "delivered_autoreply"
UNKNOWN = "unknown"
CLASSES = (RECIPIENT_PERMANENT, RECIPIENT_TEMPORARY, SENDER_REPUTATION, ACCOUNT_TRANSPORT,
           TRANSIENT, COMPLAINT, DELIVERED, UNKNOWN)
RECIPIENT_CLASSES = (RECIPIENT_PERMANENT, RECIPIENT_TEMPORARY)

# Every reason code, with the class it usually belongs to (a reason may move class with the
# reply code: "450 4.1.1 user unknown" is unknown_user, but only temporarily so).
REASONS = {
    "unknown_user": RECIPIENT_PERMANENT,
    "unknown_domain": RECIPIENT_PERMANENT,
    "no_mail_domain": RECIPIENT_PERMANENT,
    "address_moved": RECIPIENT_PERMANENT,
    "invalid_address": RECIPIENT_PERMANENT,
    "provider_suppressed": RECIPIENT_PERMANENT,
    "mailbox_full": RECIPIENT_TEMPORARY,
    "mailbox_disabled": RECIPIENT_TEMPORARY,
    "mailbox_unavailable": RECIPIENT_TEMPORARY,
    "recipient_rate_limited": RECIPIENT_TEMPORARY,
    "blocklist": SENDER_REPUTATION,
    "ip_reputation": SENDER_REPUTATION,
    "spam": SENDER_REPUTATION,
    "dmarc": SENDER_REPUTATION,
    "spf": SENDER_REPUTATION,
    "dkim": SENDER_REPUTATION,
    "unauthenticated": SENDER_REPUTATION,
    "ptr": SENDER_REPUTATION,
    "sender_rejected": SENDER_REPUTATION,
    "content": SENDER_REPUTATION,
    "virus": SENDER_REPUTATION,
    "message_too_big": SENDER_REPUTATION,
    "policy": SENDER_REPUTATION,
    "quota": ACCOUNT_TRANSPORT,
    "rate_limited": ACCOUNT_TRANSPORT,
    "send_as_denied": ACCOUNT_TRANSPORT,
    "relay_denied": ACCOUNT_TRANSPORT,
    "auth": ACCOUNT_TRANSPORT,
    "tls_required": ACCOUNT_TRANSPORT,
    "tls_failed": ACCOUNT_TRANSPORT,
    "account_disabled": ACCOUNT_TRANSPORT,
    "sender_not_verified": ACCOUNT_TRANSPORT,
    "greylisted": TRANSIENT,
    "server_busy": TRANSIENT,
    "too_many_connections": TRANSIENT,
    "timeout": TRANSIENT,
    "connection": TRANSIENT,
    "unreachable": TRANSIENT,
    "expired": TRANSIENT,
    "dns_temporary": TRANSIENT,
    "routing": TRANSIENT,
    "abuse": COMPLAINT,
    "fraud": COMPLAINT,
    "virus_report": COMPLAINT,
    "other_report": COMPLAINT,
    "delivered": DELIVERED,
    "relayed": DELIVERED,
    "expanded": DELIVERED,
    "auto_reply": DELIVERED,
    "unclassified": UNKNOWN,
}
# A message that failed for these transient reasons expired because the recipient's own
# server could not be reached: one soft bounce for the address (the seed's
# "mailserver non raggiungibile").
UNREACHABLE_REASONS = ("unreachable", "expired")
STAGES = ("connect", "mail", "rcpt", "data")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who is at fault, why, and whether the answer was final for the message."""

    fault_class: str
    reason: str
    permanent: bool = False  # a 5xx, a 5.x.x status or a DSN with Action: failed

    @property
    def suppresses(self) -> bool:
        """The recipient goes on the list at once (hard bounce or complaint)."""
        return self.fault_class in (RECIPIENT_PERMANENT, COMPLAINT)

    @property
    def soft(self) -> bool:
        """Counts toward the soft-bounce rule (3 in 7 days suppress for a while)."""
        if self.fault_class == RECIPIENT_TEMPORARY:
            return True
        return (self.fault_class == TRANSIENT and self.permanent
                and self.reason in UNREACHABLE_REASONS)

    @property
    def recipient_fault(self) -> bool:
        """The recipient's (or its mailbox's) doing: the only suppressions worth billing."""
        return self.fault_class in (RECIPIENT_PERMANENT, RECIPIENT_TEMPORARY, COMPLAINT)

    def as_dict(self) -> dict:
        """The verdict as stored in event data and shown by the API."""
        return {"fault_class": self.fault_class, "fault_reason": self.reason}


# -- reading the codes -------------------------------------------------------------------
_STATUS_RE = re.compile(r"(?<![\d.])#?([245])\.(\d{1,3})\.(\d{1,3})(?![\d])")
_CODE_RE = re.compile(r"^\s*([245]\d\d)(?=[\s\-:#]|$)")
_ANY_CODE_RE = re.compile(r"(?<![\d.\w:/])([245]\d\d)(?=[ \-:]|$)")
# "550-5.7.1 " (the continuation prefix of multi-line replies), so phrases read whole
_CONTINUATION_RE = re.compile(r"(?:^|(?<=\s))[245]\d\d[- ](?:#?[245]\.\d{1,3}\.\d{1,3}\s)?")
_SPACE_RE = re.compile(r"\s+")


def parse_status(text: str | None) -> str | None:
    """The first enhanced status code (RFC 3463) in a text: '5.1.1' from '550 5.1.1 …'."""
    match = _STATUS_RE.search(text or "")
    return ".".join(match.groups()) if match else None


def parse_code(text: str | None) -> int | None:
    """The basic reply code a text starts with (or, failing that, the first one in it)."""
    if not text:
        return None
    match = _CODE_RE.match(text) or _ANY_CODE_RE.search(text[:300])
    return int(match.group(1)) if match else None


def _best_status(status: str | None, text: str) -> str | None:
    """The given status, or a more specific one of the same class found in the text
    (a DSN's 'Status: 5.0.0' with '550 5.1.1 …' in its Diagnostic-Code reads 5.1.1)."""
    found = parse_status(text)
    if status is None:
        return found
    if found and status.endswith(".0.0") and found != status:
        return found
    return status


# -- the text rules ----------------------------------------------------------------------
def _rules(*pairs: tuple[str, str]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(pattern), reason) for pattern, reason in pairs]


# Our sending account or transport (the customer's SMTP account, or our relay): never the
# recipient's doing, and the transport's circuit breaker counts it.
_ACCOUNT = _rules(
    (r"send ?as|sendasdenied|permissions? to send (?:as|on behalf)|not (?:allowed|authori[sz]ed)"
     r" to send (?:as|from|on behalf)|sender address rejected: not owned|not owned by "
     r"(?:the )?(?:authenticated )?user|does not match (?:the )?authenticated|"
     r"from address (?:does not|doesn't) match|unauthori[sz]ed sender for this account|"
     r"sender is not allowed to relay", "send_as_denied"),
    (r"submissionquotaexceeded|sending (?:quota|limit)|send(?:ing)? rate|"
     r"daily (?:user |smtp relay |message |recipient )?(?:sending |send )?(?:quota|limit)|"
     r"(?:message|recipient|relay|outbound|hourly|daily) (?:quota|limit) "
     r"(?:has been |was )?(?:exceeded|reached)|limit (?:exceeded|reached) for (?:user|sender|"
     r"this customer|customer)|relay limit exceeded|"
     r"daily message quota|too many messages (?:from|sent by) (?:this )?(?:sender|user|account)|"
     r"reached (?:your|the) daily limit|exceeded (?:your|the) (?:daily|hourly) (?:sending )?"
     r"(?:quota|limit)|maximum sending rate|throttling failure|email quota exceeded|"
     r"outgoing (?:mail|message) (?:quota|limit)|domain sending quota", "quota"),
    (r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)|"
     r"unable to relay|relay access|not permitted to relay|we do not relay|relaying (?:to|from)"
     r" .{0,40} (?:denied|not allowed|prohibited)|(?:not|isn'?t) in my list of allowed rcpthosts|"
     r"not (?:a )?local domain|tenantattribution|"
     r"relay not permitted|open relay", "relay_denied"),
    (r"must issue a starttls|starttls (?:is )?required|tls (?:is )?required|"
     r"encryption required|requires? (?:a )?(?:secure|encrypted|tls) connection|"
     r"must (?:use|negotiate) tls|only accepts? (?:tls|encrypted)", "tls_required"),
    (r"certificate|tls (?:error|handshake|negotiation failed)|ssl (?:error|handshake)|"
     r"wrong_version_number|starttls extension not supported", "tls_failed"),
    (r"authentication (?:is )?required|authentication (?:failed|unsuccessful|credentials "
     r"invalid)|must (?:first )?authenticate|not authenticated to send|client was not "
     r"authenticated|(?:username|user name) and password not accepted|invalid credentials|"
     r"incorrect (?:authentication|password)|bad (?:username|password)|application-specific "
     r"password|app password|too many (?:login|authentication) attempts|smtp auth|"
     r"authenticat\w* is disabled|basic authentication", "auth"),
    (r"email address is not verified|identities failed the check|sender (?:address )?"
     r"(?:is )?not verified|unverified sender|not a verified (?:sender|identity)",
     "sender_not_verified"),
    (r"(?:your|the sending|sender'?s?) account (?:has been |is )?(?:disabled|suspended|"
     r"blocked|locked|deactivated)|sending (?:has been )?(?:paused|disabled|suspended) for "
     r"(?:this|your) account|account (?:is )?(?:not )?(?:enabled|allowed) (?:for|to) send|"
     r"bad outbound sender|outbound spam|tenant (?:has been )?(?:blocked|exceeded)|"
     r"spam abuse detected|unregistered domain", "account_disabled"),
)

# Authentication of our mail by the receiving site (DMARC, SPF, DKIM): read before the
# account rules, so "SPF authentication failed" is about our sender, not a login.
_AUTH_CHECKS = _rules(
    (r"dmarc", "dmarc"),
    (r"\bspf\b|sender policy framework|not (?:a )?permitted sender|not designated as "
     r"permitted|designates .{0,60} as permitted", "spf"),
    (r"\bdkim\b|domainkeys", "dkim"),
)

# Our identity as a sender (authentication, DNS, reverse DNS, the envelope sender).
_SENDER_IDENTITY = _rules(
    (r"unauthenticated|not authenticated|does not have authentication|fails? to pass "
     r"authentication|authentication (?:checks|results)|sender is unauthenticated|"
     r"requires all senders to authenticate|\barc\b (?:validation|fail)", "unauthenticated"),
    (r"reverse dns|reverse (?:lookup|record)|\bptr\b|\brdns\b|cannot find your (?:reverse )?"
     r"hostname|client host rejected: cannot find|hostname (?:does not|doesn't) resolve|"
     r"no (?:reverse|ptr)|reverse name|forward-confirmed|fcrdns|helo command rejected|"
     r"(?:invalid|bad) (?:helo|ehlo)|helo/ehlo|(?:helo|ehlo) (?:name|host ?name|argument)|"
     r"generic (?:dns )?hostname|dynamic (?:ip|dns|address|pool)|dialup|residential",
     "ptr"),
    (r"sender address rejected|sender (?:domain|address) (?:must exist|not found|does not "
     r"exist|unknown|invalid)|sender verif\w* failed|verification failed for <|"
     r"sender (?:is )?(?:invalid|unknown|rejected|denied)|bad sender|envelope sender|"
     r"envelope[- ]from|return[- ]path|sender domain|domain you are sending from|"
     r"your (?:sending )?domain (?:\S+ )?(?:does not|doesn't) exist|"
     r"domain of sender address|mail from "
     r"(?:address|domain)|invalid sender|sender address has null mx|sender denied|"
     r"sender (?:\S+ )?(?:does not|doesn't) exist|from (?:address|domain) (?:\S+ )?"
     r"(?:does not|doesn't) exist",
     "sender_rejected"),
)

# Lists and reputation: our sending IP or domain.
_BLOCKLIST = _rules(
    (r"spamhaus|spamcop|barracuda|sorbs|\bsurbl\b|\buribl\b|spameatingmonkey|psbl|"
     r"invaluement|mailspike|\bubl\b|\bivm\b|0spam|abuseat|\bcbl\b|"
     r"block ?list|black ?list|deny ?list|\bdnsbls?\b|\brbls?\b|\bdnsrbl\b|"
     r"blocked using|(?<!not )listed (?:at|in|on|by)|is listed|are listed|banned sending ip|"
     r"banned sender|\[bl\d+\]|s3150|s3140|part of their network is on our block list|"
     r"ip (?:address )?(?:is |has been )?(?:blocked|banned)|blocked ip|"
     r"client host .{0,60}blocked|(?:host|ip) (?:\S+ )?is blocked", "blocklist"),
    (r"unusual rate of unsolicited|from your ip|originating from your ip|ip reputation|"
     r"reputation|\[tss\d+\]|temporarily deferred due to (?:unexpected volume|user complaints)|"
     r"permanently deferred|messages from \S+ (?:temporarily|permanently) deferred|"
     r"deferred due to (?:user )?complaints|too many complaints|complaint rate|"
     r"excessive (?:unknown|invalid) recipients|sending ip|your ip|rate limited due to ip|"
     r"\b4\.7\.650\b|\bts0\d\b|\bdyn:t1\b|\bhvu:b1\b|\brp-00\d\b|\bsc-00\d\b|\bdy-001\b|"
     r"\bol-00\d\b|\bou-00\d\b|\bsrv-00\d\b|\bha-00\d\b", "ip_reputation"),
)

# The recipient's own mailbox, temporarily (counts toward the soft-bounce rule).
_RECIPIENT_TEMPORARY = _rules(
    (r"receiving (?:e-?mail|mail|messages?) (?:at a rate|too quickly|too fast)|"
     r"receiving mail at a rate|mailbox receiving rate|recipient(?:'s)? (?:rate|per-hour|"
     r"hourly)|per-hour message receive limit|receive limit|messages to \S+ deferred due to "
     r"excessive volume|too many (?:messages|mails|emails) (?:for|to) (?:this )?(?:recipient|"
     r"user|mailbox|address)|user is receiving mail too quickly|recipient .{0,20}rate limit|"
     r"exceeded .{0,20}receiv\w* (?:rate|limit)", "recipient_rate_limited"),
    (r"mailbox (?:is )?(?:full|over ?quota)|mailbox (?:has )?exceeded|over ?quota|"
     r"quota (?:is )?(?:exceeded|full)|exceeded (?:the |its |his |her |their )?(?:storage|"
     r"quota|mailbox|disk)|storage (?:quota|allocation|limit|space)|mailbox size limit|"
     r"out of (?:storage|space)|insufficient (?:storage|space|quota|disk space)(?! system)|"
     r"not enough (?:storage|space|quota)|mail ?box (?:would )?exceed|user(?:'s)? (?:quota|"
     r"mailbox) (?:has been |was )?(?:exceeded|full)|disk quota|inbox is (?:out of storage|"
     r"full)|is over (?:the )?(?:allowed )?quota|mailfolder is over|account is full|"
     r"(?:casella|mailbox|buca) .{0,40}piena|spazio (?:\S+ )?esaurito|"
     r"quota superata|postfach (?:\S+ )?voll|speicher(?:platz)? (?:\S+ )?(?:voll|erschöpft|"
     r"überschritten)|kontingent|bo[iî]te (?:aux lettres |de r[ée]ception |mail )?"
     r"(?:est )?pleine|quota (?:d[ée]pass[ée]|atteint)|espace (?:disque )?insuffisant|"
     r"buz[oó]n (?:\S+ )?(?:lleno|completo)|cuota (?:excedida|superada)|caixa (?:postal |de "
     r"correio )?(?:\S+ )?(?:cheia|lotada)|cota excedida|brievenbus (?:is )?vol|"
     r"skrzynka (?:\S+ )?(?:pełna|przepełniona)|mailbox vol", "mailbox_full"),
    (r"(?:mailbox|account|user|address|recipient|e-?mail account)(?: that you tried to reach)?"
     r" (?:is |has been )?(?:currently )?(?:disabled|inactive|suspended|deactivated|locked|"
     r"frozen|closed temporarily|not active)|inactive (?:e-?mail )?(?:address|account|"
     r"user|mailbox)|disabled (?:e-?mail )?(?:address|account|user|mailbox|recipient)|"
     r"account (?:has been )?(?:disabled|suspended) or discontinued|mailbox (?:is )?"
     r"(?:currently )?(?:disabled|locked|frozen)|recipient (?:is )?(?:inactive|suspended)|"
     r"(?:casella|account|utente) (?:\S+ )?(?:disabilitat|sospes|bloccat)\w*|"
     r"(?:postfach|konto) (?:\S+ )?(?:deaktiviert|gesperrt)|due to inactivity|"
     r"(?:compte|bo[iî]te) (?:\S+ )?"
     r"(?:d[ée]sactiv|suspendu|bloqu)\w*|(?:cuenta|buz[oó]n) (?:\S+ )?(?:desactivad|"
     r"suspendid|bloquead)\w*", "mailbox_disabled"),
)

# The recipient's address itself: gone for good (suppress at once).
_RECIPIENT_PERMANENT = _rules(
    (r"suppressed sending to this address|on the (?:account-level )?suppression list|"
     r"recent history of bouncing|onaccountsuppressionlist", "provider_suppressed"),
    (r"has moved|address (?:has )?(?:been )?(?:moved|changed)|mailbox has moved|"
     r"user not local|try <|forward-path|new (?:e-?mail )?address is", "address_moved"),
    (r"null mx|does not accept (?:any )?(?:e-?)?mail|accepts no (?:e-?)?mail|"
     r"domain .{0,40}(?:does not|doesn't) (?:receive|accept) (?:e-?)?mail", "no_mail_domain"),
    (r"host or domain name not found|domain (?:name )?(?:not found|does not exist|doesn't "
     r"exist|unknown|is not valid|not valid)|no such domain|unknown domain|unrouteable mail "
     r"domain|unroutable (?:mail )?domain|no mx (?:or a )?record|no mx or a records|"
     r"mx (?:record )?(?:lookup )?(?:not found|failed permanently)|nxdomain|non-?existent "
     r"domain|nonexistentdomain|dns.nonexistentdomain|domain has no (?:mx|mail)|"
     r"name service error .{0,40}host not found|invalid domain|bad destination system|"
     r"\bhost (?:unknown|not found)\b|mx records point to non-existent hosts|"
     r"(?:dominio|domain|domaine) (?:\S+ )?(?:inesistente|sconosciuto|inexistant|inconnu|"
     r"inexistente|desconocido|unbekannt|existiert nicht)|no existe el dominio",
     "unknown_domain"),
    (r"user(?:name)? (?:is )?unknown|unknown (?:user|recipient|mailbox|address|local[- ]part|"
     r"local user)|no such (?:user|mailbox|recipient|address|account|local user|person)|"
     r"(?:user|mailbox|recipient|address|account|addressee|e-?mail address|destination|"
     r"person|alias) (?:\S+ )?(?:does not|doesn't|do not|did not) exist|"
     r"(?:does not|doesn't) (?:exist|have an? (?:\S+ )?account)|not exist|nonexist|"
     r"non-existent (?:user|mailbox|address|account|recipient)|"
     r"(?:user|mailbox|recipient|address|account) (?:was )?not found|not found by smtp "
     r"address lookup|recipientnotfound|exrecipnotfound|resolver\.adr|"
     r"invalid (?:recipient|mailbox|user|address|destination)|(?:address|mailbox) "
     r"(?:is )?unknown|recipient (?:address )?"
     r"(?:is )?(?:invalid|unknown)|recipient (?:address )?rejected: (?:user unknown|"
     r"undeliverable address|access denied\. as\(2018)|addressee unknown|no mailbox here|"
     r"no mailbox (?:by|with) that name|"
     r"not (?:a )?valid (?:mailbox|recipient|user|address)|unrouteable address|"
     r"unroutable address|no longer (?:accepts? mail|exists|valid|in use|active|available|"
     r"with|employed|works)|is no longer (?:a )?valid|(?:account|mailbox|address|user) "
     r"(?:has been )?(?:deleted|removed|closed|terminated|expired|discontinued)|"
     r"undeliverable address|(?:address|mailbox|recipient|user|account|e-?mail) .{0,30}"
     r"(?:couldn'?t|could not|cannot|can'?t) be found|(?:address|mailbox|recipient|user|"
     r"account) (?:\S+ )?isn'?t a valid|"
     r"not listed in (?:the )?(?:domino )?directory|no account by that name|"
     r"bad destination mailbox|unknown or illegal alias|invalid address|"
     r"doesn'?t have a \S+ account|does not have an account|"
     r"utente (?:\S+ )?(?:sconosciuto|inesistente|non (?:trovato|esiste|valido))|"
     r"indirizzo (?:\S+ )?(?:inesistente|"
     r"sconosciuto|non valido|non esiste)|casella (?:\S+ )?(?:inesistente|non esiste)|"
     r"destinatario (?:\S+ )?(?:sconosciuto|inesistente|non valido|desconocido|"
     r"inexistente|no existe)|non esiste|"
     r"(?:benutzer|empf[äa]nger|adresse|postfach|mailbox|nutzer|user) (?:\S+ )?"
     r"(?:unbekannt|existiert nicht|nicht gefunden|ung[üu]ltig)|unbekannte[rn]? "
     r"(?:benutzer|empf[äa]nger|adresse)|gibt es nicht|"
     r"utilisateur (?:\S+ )?(?:inconnu|inexistant)|adresse (?:\S+ )?(?:inconnue|"
     r"inexistante|invalide)|destinataire (?:\S+ )?(?:inconnu|inexistant|invalide)|"
     r"n'existe pas|bo[iî]te .{0,20}(?:inexistante|inconnue)|"
     r"usuario (?:\S+ )?(?:desconocido|inexistente|no existe)|(?:la )?direcci[oó]n "
     r"(?:\S+ )?(?:no existe|desconocida|inexistente|no v[aá]lida)|buz[oó]n (?:\S+ )?"
     r"(?:no existe|inexistente|desconocido)|no existe|"
     r"usu[aá]rio (?:\S+ )?(?:desconhecido|inexistente|n[ãa]o existe)|endere[çc]o (?:\S+ )?"
     r"(?:desconhecido|inexistente|inv[aá]lido|n[ãa]o existe)|n[ãa]o existe|"
     r"onbekende (?:gebruiker|ontvanger)|bestaat niet|"
     r"nie istnieje|nieznany (?:u[żz]ytkownik|odbiorca)|"
     r"неизвестн\w* (?:пользовател|адрес|получател)\w*|не существует", "unknown_user"),
    (r"bad (?:destination |recipient )?(?:mailbox )?address syntax|address syntax|syntax error in "
     r"(?:the )?(?:recipient|address|parameters scanning \"to\")|malformed (?:address|"
     r"recipient)|illegal (?:address|recipient)|invalid (?:address )?format",
     "invalid_address"),
)

# Content and size of our message (not about the recipient).
_CONTENT = _rules(
    (r"virus|malware|infected|trojan|\bworm\b|phishing|malicious", "virus"),
    (r"spam|unsolicited|junk|bulk mail|suspicious|content (?:rejected|filter|policy)|"
     r"message content|rejected (?:due to|because of) (?:its )?content|\bcs0\d\b|\bhm0\d\b|"
     r"looks like spam|classified as|high probability|filtered (?:as|by)|"
     r"url(?:s)? .{0,30}(?:blocked|listed)|shortener", "spam"),
    (r"(?:for|due to) (?:local )?policy reasons|not accepted for policy", "policy"),
    (r"message (?:size|length) exceeds|message (?:is )?too (?:big|large)|size (?:limit|"
     r"exceeds)|exceeds (?:the )?(?:maximum )?(?:message )?size|too large|message size|"
     r"maximum (?:message )?size|messagesize|file too large", "message_too_big"),
)

# Passing trouble on the way (retried as usual).
_TRANSIENT = _rules(
    (r"gr[ae]y ?list|gr[ae]ylisted|gr[ae]ylisting|try again in \d|come back later|"
     r"please retry", "greylisted"),
    (r"too many (?:connections|concurrent|simultaneous|sessions|smtp sessions|errors|"
     r"messages per (?:connection|session))|connection (?:rate|limit|count)|"
     r"max(?:imum)? (?:number of )?connections|rate limit exceeded|connection refused by "
     r"policy", "too_many_connections"),
    (r"connection timed out|timed out|(?<!retry )timeout|no answer from host|connection refused|"
     r"connection reset|network is unreachable|host unreachable|no route to host|"
     r"could not connect|unable to connect|can'?t connect|failed to connect|lost "
     r"connection|connection (?:dropped|closed|lost|died)|host (?:\S+ )?(?:is )?(?:down|"
     r"unreachable|not responding)|server (?:is )?not responding|unreachable|not reachable",
     "unreachable"),
    (r"retry timeout exceeded|delivery time expired|message expired|expired (?:after|in "
     r"queue)|been in the queue too long|too long in (?:the )?queue|queue lifetime|"
     r"maximum (?:queue )?time|undelivered for (?:more than )?\d+ (?:days|hours)|"
     r"could not be delivered within|retry time not reached|has been failing for a long "
     r"time", "expired"),
    (r"temporary (?:dns|lookup) failure|dns (?:lookup )?(?:error|failure|timeout|"
     r"servfail)|dns resolv\w* (?:error|failure)|servfail|temporary failure in name "
     r"resolution|lookup failure",
     "dns_temporary"),
    (r"loops? back|routing loop|mail loop|loop detected|too many hops|hop count",
     "routing"),
)

# Generic words: they speak only when the status code does not (a specific code beats them,
# "550 5.1.1 … access denied" is an unknown user, "550 5.7.1 … mailbox unavailable" policy).
_WEAK_RECIPIENT = _rules(
    (r"mailbox (?:is )?(?:currently )?unavailable|mailbox not available", "unknown_user"),
)
_WEAK = _rules(
    (r"header|rfc ?5322|rfc ?2822|rfc ?822|message-id|8-?bit|\bmime\b|line (?:too )?long|"
     r"bare (?:lf|cr)|malformed|invalid characters|encoding|charset|date field|"
     r"not (?:rfc|standard) compliant", "content"),
    (r"polic(?:y|ies)|not (?:accepted|allowed)|rejected by (?:the )?(?:recipient|"
     r"administrator|organi[sz]ation)|access denied|not authori[sz]ed|prohibited|refused|"
     r"blocked|administrative(?:ly)? (?:prohibited|denied)|restricted|not permitted|"
     r"only accepts? mail from|does not accept mail from|sender (?:is )?not (?:allowed|"
     r"permitted)|message rejected|rejected message|\bscor(?:e|ing)\b|filter", "policy"),
    (r"try again|temporar(?:y|ily)|service (?:temporarily )?(?:not )?(?:available|"
     r"unavailable)|server (?:is )?busy|system (?:is )?busy|resources? (?:temporarily )?"
     r"unavailable|local error|internal (?:server )?error|system (?:error|failure)|"
     r"insufficient system storage|server error|overloaded|queue (?:is )?full|closing "
     r"(?:transmission )?channel|shutting down", "server_busy"),
)

# Tried in this order: the first group with a hit decides.
_GROUPS: tuple[list, ...] = (
    _AUTH_CHECKS, _ACCOUNT, _SENDER_IDENTITY, _BLOCKLIST, _RECIPIENT_TEMPORARY,
    _RECIPIENT_PERMANENT, _CONTENT, _TRANSIENT,
)


# -- the enhanced status codes (RFC 3463, IANA registry) --------------------------------
# (subject, detail) -> reason; the class comes from REASONS and the code's own class.
_STATUS_REASONS = {
    (1, 1): "unknown_user", (1, 2): "unknown_domain", (1, 3): "invalid_address",
    (1, 4): "invalid_address", (1, 6): "address_moved", (1, 7): "sender_rejected",
    (1, 8): "sender_rejected", (1, 10): "no_mail_domain", (1, 11): "sender_rejected",
    (2, 0): "mailbox_unavailable", (2, 1): "mailbox_disabled", (2, 2): "mailbox_full",
    (2, 3): "message_too_big", (2, 121): "recipient_rate_limited",
    (2, 122): "recipient_rate_limited",
    (3, 0): "server_busy", (3, 1): "server_busy", (3, 2): "server_busy",
    (3, 4): "message_too_big",
    (4, 0): "server_busy", (4, 1): "unreachable", (4, 2): "unreachable",
    (4, 3): "dns_temporary", (4, 4): "unknown_domain", (4, 5): "server_busy",
    (4, 6): "routing", (4, 7): "expired", (4, 14): "routing", (4, 300): "expired",
    (4, 316): "unreachable",
    (6, 0): "content", (6, 1): "content", (6, 2): "content", (6, 3): "content",
    (6, 4): "content", (6, 5): "content", (6, 6): "content", (6, 7): "content",
    (6, 8): "content", (6, 9): "content", (6, 10): "content", (6, 11): "content",
    (7, 0): "policy", (7, 1): "policy", (7, 2): "policy", (7, 3): "tls_required",
    (7, 4): "tls_failed", (7, 5): "content", (7, 6): "tls_failed", (7, 7): "content",
    (7, 8): "auth", (7, 9): "auth", (7, 10): "tls_required", (7, 11): "tls_required",
    (7, 12): "auth", (7, 13): "account_disabled", (7, 14): "auth", (7, 15): "policy",
    (7, 16): "message_too_big", (7, 17): "address_moved", (7, 18): "address_moved",
    (7, 19): "server_busy", (7, 20): "dkim", (7, 21): "dkim", (7, 22): "dkim",
    (7, 23): "spf", (7, 24): "spf", (7, 25): "ptr", (7, 26): "unauthenticated",
    (7, 27): "sender_rejected", (7, 28): "ip_reputation", (7, 29): "unauthenticated",
    (7, 30): "tls_required",
    # Microsoft Exchange Online's own details
    (7, 57): "auth", (7, 139): "auth", (7, 60): "send_as_denied", (7, 64): "relay_denied",
    (7, 124): "policy", (7, 133): "policy", (7, 134): "policy", (7, 135): "policy",
    (7, 136): "policy", (7, 509): "dmarc", (7, 510): "policy", (7, 511): "blocklist",
    (7, 750): "account_disabled",
}


def _status_reason(status: str) -> str | None:
    klass, subject, detail = (int(part) for part in status.split("."))
    reason = _STATUS_REASONS.get((subject, detail))
    if reason is not None:
        return reason
    if subject == 7 and 500 <= detail <= 699:
        # Exchange Online: 5.7.5xx access denied to a banned or abusive sending IP/tenant
        return "blocklist" if detail >= 600 else "account_disabled"
    if subject == 7 and 700 <= detail <= 799:
        return "account_disabled"
    if subject == 6:
        return "content"
    if subject == 5:  # protocol: our client's conversation (or a server quirk)
        return None
    return None


_CODE_REASONS = {
    421: "server_busy", 450: "server_busy", 451: "server_busy", 452: "server_busy",
    454: "server_busy", 530: "auth", 534: "auth", 535: "auth", 538: "tls_required",
    571: "policy",
}


def _klass(reason: str, temporary: bool) -> str:
    """The class of a reason, moved to 'temporary' for recipient reasons given as 4xx."""
    fault_class = REASONS.get(reason, UNKNOWN)
    if temporary and fault_class == RECIPIENT_PERMANENT:
        return RECIPIENT_TEMPORARY
    return fault_class


def _clean(text: str) -> str:
    text = _CONTINUATION_RE.sub(" ", text.lower())
    return _SPACE_RE.sub(" ", text).strip()


# -- speed: a literal prefilter per group ---------------------------------------------------
# A group's rules are tried only when the text holds one of the literal strings every match
# of one of them must contain (`in` is far cheaper than trying ~50 alternatives at every
# position of the text). The literals are read from the patterns themselves.
_MIN_LITERAL = 3


def _needed(items) -> list[str] | None:
    """Literals of which at least one occurs in any match of a parsed (sub)pattern, or None
    when that cannot be told (then the group is always tried)."""
    from re import _constants as c

    options: list[list[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if len(run) >= _MIN_LITERAL:
            options.append(["".join(run)])
        run.clear()

    for op, av in items:
        if op is c.LITERAL:
            run.append(chr(av))
            continue
        close_run()
        found = None
        if op is c.SUBPATTERN:
            found = _needed(av[-1])
        elif op is c.BRANCH:
            alternatives = [_needed(branch) for branch in av[1]]
            if all(alternatives):
                found = [literal for alt in alternatives for literal in alt]
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and av[0] >= 1:
            found = _needed(av[2])
        if found:
            options.append(found)
    close_run()
    if not options:
        return None
    # the most selective option: long literals, few of them
    return max(options, key=lambda literals: (min(map(len, literals)), -len(literals)))


def _prefilter(rules: list) -> tuple[str, ...] | None:
    from re import _parser

    literals: list[str] = []
    for pattern, _reason in rules:
        needed = _needed(_parser.parse(pattern.pattern).data)
        if needed is None:
            return None
        literals.extend(needed)
    kept: list[str] = []  # a literal holding a shorter kept one adds nothing: drop it
    for literal in sorted(set(literals), key=len):
        if not any(shorter in literal for shorter in kept):
            kept.append(literal)
    return tuple(kept)


_PREFILTERS = {id(rules): _prefilter(rules) for rules in (*_GROUPS, _WEAK_RECIPIENT, _WEAK)}


def _may_match(text: str, literals: tuple[str, ...] | None) -> bool:
    if literals is None:
        return True
    for literal in literals:
        if literal in text:
            return True
    return False


def _match(text: str, groups) -> str | None:
    """The reason the first matching rule names (groups, then rules, in precedence order)."""
    for rules in groups:
        if not _may_match(text, _PREFILTERS[id(rules)]):
            continue
        for pattern, reason in rules:
            if pattern.search(text):
                return reason
    return None


def classify(code: int | None = None, status: str | None = None, text: str | None = None,
             action: str | None = None, stage: str | None = None) -> Verdict:
    """Who is at fault for one answer: the basic code, the enhanced status, the DSN Action,
    the diagnostic text and, for send-time answers, the SMTP stage it was given at."""
    raw = (text or "")[:4000]
    action = (action or "").strip().lower() or None
    status = _best_status(parse_status(status) if status else None, raw)
    replied = code is not None
    if code is None:
        code = parse_code(raw)
    code_class = str(code)[0] if code else None
    status_class = status[0] if status else None
    if action in ("delivered", "relayed", "expanded"):
        return Verdict(DELIVERED, action, False)
    if action is None and (status_class == "2" or (status_class is None and code_class == "2")):
        return Verdict(DELIVERED, "delivered", False)
    permanent = action == "failed" or (action != "delayed" and (
        code_class == "5" or (code_class is None and status_class == "5")))
    # a 4xx reply, a 4.x.x status or a delay: what it says is not final for the recipient
    temporary = action == "delayed" or code_class == "4" or (
        code_class is None and status_class == "4")
    text = _clean(raw) if raw else ""
    reason = _match(text, _GROUPS) if text else None
    if reason is None and text and status is not None and status.endswith(".7.0"):
        reason = _match(text, (_WEAK,))  # "other security status": the words say more
    if reason is None and status is not None and status_class in "45":
        reason = _status_reason(status)
        if reason == "unknown_domain" and status_class == "4":
            reason = "dns_temporary"  # 4.4.4: the routing information may come back
    if reason is None and text:
        reason = _match(text, (_WEAK_RECIPIENT, _WEAK))
    if reason is None and code is not None:
        reason = _CODE_REASONS.get(code)
    if reason is None:
        if temporary and not permanent:
            reason = "server_busy"
        elif permanent or temporary:
            reason = "unclassified"
        else:
            return Verdict(UNKNOWN, "unclassified", False)
    fault_class = _klass(reason, temporary)
    if stage in STAGES and not replied and reason == "unreachable":
        # No reply at all at send time: our own connection to the transport failed.
        reason = "timeout" if "time" in text else "connection"
    if stage in ("connect", "mail") and (
            fault_class in RECIPIENT_CLASSES or reason == "sender_rejected"
            or (stage == "mail" and (fault_class == UNKNOWN or reason == "policy"))):
        # Refused before any recipient was named: never the recipient's doing. Our own
        # submission server refusing our envelope sender is the account's setting.
        return Verdict(ACCOUNT_TRANSPORT, "sender_rejected", permanent)
    return Verdict(fault_class, reason, permanent)


def complaint(feedback_type: str | None) -> Verdict:
    """A feedback report (ARF, RFC 5965, or a provider's own loop): a complaint, except the
    two kinds that are not one: 'not-spam' (a user rescuing the message) and 'auth-failure'
    (RFC 6591: a DMARC/SPF/DKIM failure report, about our sender, never the recipient)."""
    kind = (feedback_type or "abuse").strip().lower()
    if kind == "not-spam":
        return Verdict(DELIVERED, "delivered", False)
    if kind in ("auth-failure", "dkim", "dmarc"):
        return Verdict(SENDER_REPUTATION, "unauthenticated", True)
    reason = {"fraud": "fraud", "virus": "virus_report", "other": "other_report"}.get(
        kind, "abuse")
    return Verdict(COMPLAINT, reason, True)


def auto_reply() -> Verdict:
    """A vacation message or another auto-reply that reached the bounce address."""
    return Verdict(DELIVERED, "auto_reply", False)
