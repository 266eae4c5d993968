"""Reading received reports: which recipients failed, how, and in whose words.

Pure (no Flask, no database), like bounces.fault, which it feeds: `parse(raw)` returns one
`Report` per recipient outcome it can read, each with the classifier's verdict.

What is read, in this order:
- abuse reports (RFC 5965 `message/feedback-report`), and provider feedback loops that send
  none (Microsoft JMRP, "Complaint about message from …", `Feedback-Type:` as text);
- Amazon SES notifications (JSON, as SNS sends them by mail);
- delivery status notifications (RFC 3464, `message/(global-)delivery-status`);
- the formats mail servers really send without a DSN part: Exim, qmail (and Yahoo, which
  writes alike), Sendmail, Postfix, Exchange / Office 365 NDRs, Gmail, in several
  languages; flufl.bounce is only the last resort, for the address;
- auto-replies (vacation, out of office): recorded, never a bounce.
"""
from __future__ import annotations

import email
import json
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message as EmailMessage
from email.parser import HeaderParser

from ...addresses import canonical
from . import fault

log = logging.getLogger(__name__)
# flufl.bounce logs a traceback for every detector that trips on junk; we log our own line.
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)

KINDS = ("hard", "soft", "failed", "delayed", "delivered", "auto_reply", "complaint",
         "unknown")

_SMTP_CODE_RE = re.compile(r"(?<![\d.])([245]\d\d)(?:[ -]|$)")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_IGNORED_LOCAL = re.compile(r"^(?:bounces?\+|mailer-daemon$|mailer_daemon$|postmaster$|"
                            r"mail-daemon$|double-bounce$|noreply-dmarc)", re.I)


@dataclass
class Report:
    """One recipient's outcome read from a report, with who is at fault."""

    kind: str
    recipient: str | None = None
    status: str | None = None
    action: str | None = None
    diagnostic: str | None = None
    source: str = "dsn"  # dsn | arf | fbl | ses | heuristic | autoreply | none
    fault_class: str | None = None
    fault_reason: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def smtp_code(self) -> int | None:
        """The basic SMTP reply code in the diagnostic (550…), when there is one."""
        match = _SMTP_CODE_RE.search(self.diagnostic or "")
        return int(match.group(1)) if match else None

    @property
    def verdict(self) -> fault.Verdict:
        """The classifier's verdict, as stored on this report."""
        return fault.Verdict(self.fault_class or fault.UNKNOWN,
                             self.fault_reason or "unclassified",
                             self.action == "failed" or self.kind in ("hard", "complaint"))


# -- small readers -----------------------------------------------------------------------
def _clean(value) -> str:
    """A header value on one line, without NULs (PostgreSQL refuses them in text)."""
    return " ".join(str(value or "").replace("\x00", "").split())


def _address(value) -> str | None:
    """The address in 'rfc822; user@example.com' (or any text holding one), lowercased."""
    if not value:
        return None
    text = _clean(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    match = _ADDRESS_RE.search(text)
    return match.group(0).strip(".").lower() if match else None


def _wanted(address: str) -> bool:
    """Not one of ours (the VERP sender) nor a mail system's own address."""
    return not _IGNORED_LOCAL.match(address.split("@", 1)[0])


def _diagnostic(value) -> str | None:
    text = _clean(value)
    if ";" in text and text.split(";", 1)[0].strip().lower() in ("smtp", "x-postfix",
                                                                  "x-unix", "x-local",
                                                                  "x-exchange", "x-notes"):
        text = text.split(";", 1)[1].strip()
    return text[:2000] or None


_STAGE_RES = (
    ("mail", re.compile(r"in reply to mail from|after mail from|mail from command", re.I)),
    ("data", re.compile(r"in reply to (?:end of )?data|after (?:end of )?data|"
                        r"data command", re.I)),
    ("rcpt", re.compile(r"in reply to rcpt to|after rcpt to|rcpt to command", re.I)),
)


def _remote_stage(diagnostic: str | None) -> str | None:
    """At which command the remote server refused, when the report says."""
    for stage, pattern in _STAGE_RES:
        if diagnostic and pattern.search(diagnostic):
            return stage
    return None


_OUR_SENDER_RE = re.compile(r"<bounces\+[^>\s]*>", re.I)


def verdict_for(status: str | None, action: str | None, diagnostic: str | None,
                context: str | None = None) -> fault.Verdict:
    """The classifier's verdict for one recipient of a report (not a send-time answer);
    `context` is the report's own text about that recipient (it may name the stage)."""
    verdict = fault.classify(None, status, diagnostic, action)
    if verdict.fault_class in fault.RECIPIENT_CLASSES and (
            _remote_stage(diagnostic) == "mail" or _remote_stage(context) == "mail"
            or _OUR_SENDER_RE.search(diagnostic or "")):
        # The remote server refused our envelope sender (at MAIL FROM, or naming it):
        # not about the recipient at all.
        return fault.Verdict(fault.SENDER_REPUTATION, "sender_rejected", verdict.permanent)
    return verdict


def kind_of(verdict: fault.Verdict, action: str | None) -> str:
    """The report's kind (what it does to the message and the list), from its verdict."""
    if verdict.fault_class == fault.COMPLAINT:
        return "complaint"
    if verdict.fault_class == fault.DELIVERED:
        return "auto_reply" if verdict.reason == "auto_reply" else "delivered"
    if action == "delayed" or not verdict.permanent:
        return "delayed"
    if verdict.fault_class == fault.RECIPIENT_PERMANENT:
        return "hard"
    if verdict.soft:
        return "soft"
    return "failed"


def _report(recipient: str | None, status: str | None, action: str | None,
            diagnostic: str | None, source: str, verdict: fault.Verdict | None = None,
            context: str | None = None, **extra) -> Report:
    verdict = verdict or verdict_for(status, action, diagnostic, context)
    status = status or fault.parse_status(diagnostic)
    return Report(kind_of(verdict, action), recipient, status, action, diagnostic, source,
                  verdict.fault_class, verdict.reason, dict(extra))


# -- the human-readable text -------------------------------------------------------------
_TAG_RE = re.compile(r"<(?:br|/p|/div|/tr|/li|p|div|tr|li)\b[^>]*>", re.I)
_ANY_TAG_RE = re.compile(r"<[^>]+>")
_ORIGINAL_RE = re.compile(
    r"^[\s\-=_*]*(?:this is a copy of the message|below this line is a copy|"
    r"original message(?! follows)? ?(?:headers)?|unsent message|returned message|"
    r"message header follows|undelivered message|headers of the original|"
    r"original message follows|copy of (?:the )?(?:original )?message|"
    r"messaggio originale|urspr[üu]ngliche nachricht|message d'origine|mensaje original|"
    r"intestazioni del messaggio originale|kopfzeilen der urspr[üu]nglichen nachricht|"
    r"en-t[êe]tes du message d'origine|encabezados del mensaje original)", re.I | re.M)


def _decode(part: EmailMessage) -> str:
    try:
        payload = part.get_payload(decode=True) or b""
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except (LookupError, AssertionError, TypeError, ValueError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("latin-1", "replace") if isinstance(payload, bytes) else ""


def _html_text(html: str) -> str:
    text = _TAG_RE.sub("\n", html)
    text = _ANY_TAG_RE.sub(" ", text)
    for entity, char in (("&nbsp;", " "), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"),
                         ("&#39;", "'"), ("&quot;", '"')):
        text = text.replace(entity, char)
    return text


def human_text(msg: EmailMessage) -> str:
    """What a person reads in the report: its text parts (HTML only when there is no
    plain text), never the returned original message, cut where a copy of it begins."""
    texts: list[str] = []

    def visit(part: EmailMessage) -> None:
        content_type = part.get_content_type()
        if part.is_multipart():
            children = part.get_payload() or []
            if content_type == "multipart/alternative":
                plain = [c for c in children if c.get_content_type() == "text/plain"]
                children = plain[:1] or children[:1]
            for child in children:
                if isinstance(child, EmailMessage):
                    visit(child)
            return
        if content_type == "text/plain":
            texts.append(_decode(part))
        elif content_type == "text/html":
            texts.append(_html_text(_decode(part)))

    visit(msg)
    text = "\n".join(texts).replace("\r\n", "\n").replace("\r", "\n")
    match = _ORIGINAL_RE.search(text)
    if match is not None and match.start() > 0:
        text = text[:match.start()]
    return text[:100_000]


# -- abuse reports and feedback loops ----------------------------------------------------
def _header_block(part: EmailMessage) -> EmailMessage | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload else None
    if isinstance(payload, str):
        return HeaderParser().parsestr(payload.lstrip())
    return None


def _original_recipient(msg: EmailMessage) -> str | None:
    """The To (or Microsoft's X-HmXmrOriginalRecipient) of the message a report carries."""
    for sub in msg.walk():
        if sub.get_content_type() in ("message/rfc822", "text/rfc822-headers"):
            original = _header_block(sub)
            if original is None:
                continue
            for name in ("X-HmXmrOriginalRecipient", "X-Original-To", "To"):
                found = _address(original.get(name))
                if found:
                    return found
    return None


def _parse_arf(msg: EmailMessage, part: EmailMessage) -> Report:
    """An RFC 5965 abuse report: the complaining recipient and the feedback type."""
    fields = _header_block(part)
    recipient = None
    feedback_type = None
    if fields is not None:
        feedback_type = _clean(fields.get("Feedback-Type")).lower() or None
        recipient = _address(fields.get("Original-Rcpt-To")) or _address(
            fields.get("Removal-Recipient"))
    recipient = recipient or _original_recipient(msg)
    return _report(recipient, None, None, f"feedback report: {feedback_type or 'abuse'}",
                   "arf", fault.complaint(feedback_type), feedback_type=feedback_type)


_FBL_SUBJECT_RE = re.compile(
    r"complaint about message from|abuse report|spam report|feedback loop|\bfbl\b|"
    r"email feedback report|scomp|this is an email abuse report|junk mail report|"
    r"user complaint|reported as spam|segnalazione (?:di )?(?:abuso|spam)|\[spamcop", re.I)
# subjects only a feedback loop writes: enough without naming the recipient (it is ours)
_FBL_CERTAIN_SUBJECT_RE = re.compile(r"complaint about message from|^\[spamcop", re.I)
_FEEDBACK_TYPE_RE = re.compile(r"^feedback-type:\s*([\w-]+)", re.I | re.M)
_ORIGINAL_RCPT_RE = re.compile(r"^(?:original-rcpt-to|x-hmxmroriginalrecipient|"
                               r"removal-recipient):\s*(.+)$", re.I | re.M)


def _feedback_loop(msg: EmailMessage, raw_text: str) -> Report | None:
    """A complaint sent without a message/feedback-report part (JMRP-style and others)."""
    subject = _clean(msg.get("Subject"))
    top_type = _clean(msg.get("Feedback-Type")).lower()
    in_text = _FEEDBACK_TYPE_RE.search(raw_text)
    jmrp = "x-hmxmroriginalrecipient" in raw_text.lower()
    if not (top_type or in_text or jmrp or _FBL_SUBJECT_RE.search(subject)):
        return None
    feedback_type = top_type or (in_text.group(1).lower() if in_text else None)
    rcpt = _ORIGINAL_RCPT_RE.search(raw_text)
    recipient = (_address(rcpt.group(1)) if rcpt else None) or _original_recipient(msg)
    if recipient is None and not (top_type or in_text or jmrp
                                  or _FBL_CERTAIN_SUBJECT_RE.search(subject)):
        return None  # a vague subject alone, without the message it is about, is not enough
    return _report(recipient, None, None, f"feedback loop: {subject or feedback_type}"[:2000],
                   "fbl", fault.complaint(feedback_type), feedback_type=feedback_type)


# -- Amazon SES notifications ------------------------------------------------------------
_SES_SUBTYPES = {
    "noemail": "unknown_user", "suppressed": "provider_suppressed",
    "onaccountsuppressionlist": "provider_suppressed", "mailboxfull": "mailbox_full",
    "messagetoolarge": "message_too_big", "contentrejected": "spam",
    "attachmentrejected": "content",
}


def _ses(text: str) -> list[Report] | None:
    """An SES bounce, complaint or delivery notification (possibly wrapped by SNS)."""
    start = text.find("{")
    if start < 0 or "notificationType" not in text and "eventType" not in text:
        return None
    try:
        data = json.loads(text[start:text.rfind("}") + 1])
        if isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])
    except (ValueError, TypeError, AttributeError):
        return None
    if not isinstance(data, dict):
        return None
    kind = (data.get("notificationType") or data.get("eventType") or "").lower()
    reports = []
    if kind == "bounce":
        bounce = data.get("bounce") or {}
        bounce_type = (bounce.get("bounceType") or "").lower()
        subtype = (bounce.get("bounceSubType") or "").lower()
        for entry in bounce.get("bouncedRecipients") or []:
            recipient = _address(entry.get("emailAddress"))
            action = (entry.get("action") or "failed").lower()
            status = entry.get("status")
            diagnostic = _diagnostic(entry.get("diagnosticCode")) or (
                f"SES {bounce.get('bounceType')} {bounce.get('bounceSubType')}")
            verdict = verdict_for(status, action, diagnostic)
            if verdict.fault_class == fault.UNKNOWN and subtype in _SES_SUBTYPES:
                reason = _SES_SUBTYPES[subtype]
                verdict = fault.Verdict(fault.REASONS[reason], reason, action == "failed")
            if bounce_type == "transient" and verdict.fault_class == fault.RECIPIENT_PERMANENT:
                verdict = fault.Verdict(fault.RECIPIENT_TEMPORARY, verdict.reason, True)
            reports.append(_report(recipient, status, action, diagnostic, "ses", verdict))
    elif kind == "complaint":
        complaint = data.get("complaint") or {}
        feedback_type = complaint.get("complaintFeedbackType")
        for entry in complaint.get("complainedRecipients") or []:
            reports.append(_report(_address(entry.get("emailAddress")), None, None,
                                   f"SES complaint: {feedback_type or 'abuse'}", "ses",
                                   fault.complaint(feedback_type)))
    elif kind == "delivery":
        delivery = data.get("delivery") or {}
        for recipient in delivery.get("recipients") or []:
            reports.append(_report(_address(recipient), "2.0.0", "delivered",
                                   _diagnostic(delivery.get("smtpResponse")), "ses"))
    return reports or None


# -- delivery status notifications -------------------------------------------------------
def _parse_dsn(part: EmailMessage) -> list[tuple[str | None, str | None, str | None,
                                                   str | None, str | None]]:
    """Per-recipient groups of a message/delivery-status part:
    (final recipient, original recipient, action, status, diagnostic)."""
    payload = part.get_payload()
    if isinstance(payload, str):  # not parsed into blocks: do it here
        blocks, chunk = [], []
        for line in payload.replace("\r\n", "\n").split("\n"):
            if line.strip():
                chunk.append(line)
            elif chunk:
                blocks.append(HeaderParser().parsestr("\n".join(chunk)))
                chunk = []
        if chunk:
            blocks.append(HeaderParser().parsestr("\n".join(chunk)))
    else:
        blocks = [b for b in (payload or []) if isinstance(b, EmailMessage)]
    groups = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        final = _address(block.get("Final-Recipient"))
        original = _address(block.get("Original-Recipient"))
        action = _clean(block.get("Action")).lower().split(" ")[0] or None
        if final is None and original is None and action is None:
            continue
        diagnostic = _diagnostic(block.get("Diagnostic-Code"))
        status = fault.parse_status(_clean(block.get("Status")))
        groups.append((final or original, original, action, status, diagnostic))
    return groups


# -- the formats without a DSN part -------------------------------------------------------
_DELAY_RE = re.compile(
    r"has not yet been delivered|have not yet been delivered|not been delivered yet|"
    r"delivery (?:is )?delayed|delayed mail|still being retried|will (?:continue to )?retry|"
    r"will be retried|will try again|transient non-fatal|still undelivered|"
    r"temporary problem delivering|delivery incomplete|message delayed|warning: could not "
    r"send|gmail will retry|no action is required on your part|"
    r"consegna incompleta|ritardata|riprover[àa]|verz[öo]gert|wird erneut|retard[ée]e?|"
    r"nouvel essai|retrasad[oa]|se reintentar[áa]|atrasad[oa]", re.I)
_DELAY_SUBJECT_RE = re.compile(
    r"delay|delayed|warning|still being retried|not yet delivered|ritard|verz[öo]ger|"
    r"retard|retras|atras", re.I)
# subjects mail servers give their bounces, in the languages the staff's users write in
_FAILED_SUBJECT_RE = re.compile(
    r"undeliver|returned mail|mail delivery failed|delivery (?:status notification|failure|"
    r"has failed)|failure notice|non recapitabile|mancato recapito|errore di consegna|"
    r"notifica (?:sullo )?stato (?:della )?consegna|non remis|[ée]chec de (?:la )?remise|"
    r"unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|no se puede entregar|"
    r"no entregado|error de entrega|n[ãa]o entregue|falha na entrega|onbestelbaar|"
    r"could not be delivered|mail system error", re.I)


def _lines_after(text: str, start: int) -> list[str]:
    return text[start:].split("\n")


_ANGLE_HEAD_RE = re.compile(
    r"^\s{0,2}<([^<>\s]+@[^<>\s]+)>(?: \(expanded from <[^>]*>\))?:\s*(.*)$")
_EXIM_MARKER_RE = re.compile(
    r"(?:following address(?:\(es\)|es)? (?:failed|ha(?:s|ve) not yet been delivered)|"
    r"address(?:\(es\)|es)? to which the message has not yet been delivered (?:is|are))"
    r"[^\n]*\n", re.I)
_EXIM_ADDRESS_RE = re.compile(r"^\s{1,3}<?([^<>\s]+@[^<>\s]+?)>?(?:\s*$|\s+\()")
_SENDMAIL_MARKER_RE = re.compile(r"-+ ?the following addresses had (?:permanent fatal|"
                                 r"transient non-fatal) errors ?-+\n", re.I)
_BARE_ADDRESS_RE = re.compile(r"^<?([^<>\s]+@[^<>\s]+?)>?$")
_TRANSCRIPT_CODE_RE = re.compile(r"^\s*[45]\d\d ")
_FINAL_WORDS_RE = re.compile(r"permanent|fatal|failed|failure", re.I)


def _angle_blocks(text: str) -> list[tuple[str, str]]:
    """Postfix ('<addr>: host … said: …'), qmail and Yahoo ('<addr>:' then lines):
    each failed address with the lines that explain it, up to a blank line."""
    found = []
    lines = text.split("\n")
    i = 0
    head = _ANGLE_HEAD_RE
    while i < len(lines):
        match = head.match(lines[i])
        if not match:
            i += 1
            continue
        address, rest = match.group(1), [match.group(2)]
        i += 1
        while i < len(lines) and lines[i].strip() and not head.match(lines[i]):
            rest.append(lines[i].strip())
            i += 1
        found.append((address, " ".join(part for part in rest if part)))
    return found


def _exim(text: str) -> list[tuple[str, str]]:
    """Exim: 'The following address(es) failed:' then '  addr' and indented detail."""
    marker = _EXIM_MARKER_RE.search(text)
    if marker is None:
        return []
    found: list[tuple[str, list[str]]] = []
    for line in _lines_after(text, marker.end()):
        if not line.strip():
            continue
        address = _EXIM_ADDRESS_RE.match(line)
        if address and not line.startswith("    "):
            found.append((address.group(1), []))
        elif line.startswith((" ", "\t")) and found:
            found[-1][1].append(line.strip())
        elif found:
            break
    return [(address, " ".join(detail)) for address, detail in found]


def _sendmail(text: str) -> list[tuple[str, str]]:
    """Sendmail: '----- The following addresses had permanent fatal errors -----'."""
    marker = _SENDMAIL_MARKER_RE.search(text)
    if marker is None:
        return []
    found: list[tuple[str, list[str]]] = []
    for line in _lines_after(text, marker.end()):
        stripped = line.strip()
        if stripped.startswith("-----"):
            break
        if not stripped:
            if found:
                break
            continue
        address = _BARE_ADDRESS_RE.match(stripped)
        if address:
            found.append((address.group(1), []))
        elif found:
            found[-1][1].append(stripped.strip("()").removeprefix("reason: "))
    results = []
    for address, detail in found:
        reason = " ".join(detail)
        if not _SMTP_CODE_RE.search(reason):
            # the transcript's answer: '<<< 550 5.1.1 <addr>... User unknown'
            for line in text[marker.end():].split("\n"):
                if address.lower() in line.lower() and _SMTP_CODE_RE.search(line) and (
                        line.lstrip().startswith("<<<") or _TRANSCRIPT_CODE_RE.match(line)):
                    reason = (reason + " " + line.strip().lstrip("<").strip()).strip()
                    break
        results.append((address, reason))
    return results


_RESPONSE_RE = re.compile(
    r"(?:the response (?:from the remote server )?was|remote server returned|"
    r"la risposta (?:del server remoto )?(?:è|e') stata|die antwort (?:des remoteservers |"
    r"des remote-servers )?lautete|la r[ée]ponse (?:du serveur distant )?(?:[ée]tait|a [ée]t[ée])"
    r"|la respuesta (?:del servidor remoto )?fue|a resposta (?:do servidor remoto )?foi|"
    r"het antwoord (?:van de externe server )?was|remote host said|"
    r"technical details of (?:permanent|temporary) failure)\s*:?", re.I)


def _gmail_like(text: str) -> list[tuple[str, str]]:
    """Gmail and similar: the address in the explanation, then 'The response was:' and
    the remote server's words on the following lines."""
    marker = _RESPONSE_RE.search(text)
    if marker is None:
        return []
    before = [a for a in _ADDRESS_RE.findall(text[:marker.start()]) if _wanted(a)]
    if not before:
        return []
    after = text[marker.end():].lstrip(" :\t'\"\n")
    words = []
    for line in after.split("\n"):
        if not line.strip():
            if words:
                break
            continue
        words.append(line.strip())
        if len(words) >= 6:
            break
    return [(before[-1] if len(set(before)) > 1 else before[0], " ".join(words).strip("'"))]


_EXCHANGE_RE = re.compile(
    r"delivery has failed to these recipients|could not be reached|couldn'?t be delivered|"
    r"il recapito a questi destinatari|die zustellung an folgende empf[äa]nger|"
    r"la remise aux destinataires|no se pudo entregar|não foi possível entregar|"
    r"diagnostic information for administrators|informazioni di diagnostica|"
    r"diagnoseinformationen|informations de diagnostic|informaci[oó]n de diagn[oó]stico",
    re.I)
_EXCHANGE_CODE_RE = re.compile(r"(?:remote server returned '([^'\n]+)'|#(\d{3} [245]\.\d+\.\d+"
                               r"[^#\n]*)##?|<[^<>\s]+ #([245]\.\d+\.\d+)>|"
                               r"#([245]\.\d+\.\d+)\b)", re.I)


def _exchange(text: str) -> list[tuple[str, str]]:
    """Exchange / Office 365 NDRs: the recipient line, the explanation, and the remote
    server's answer ('Remote Server returned …', '#550 5.1.1 …##', '<host #5.1.1>')."""
    if not _EXCHANGE_RE.search(text):
        return []
    results: dict[str, str] = {}
    lines = text.split("\n")
    current = None
    explanation: dict[str, list[str]] = {}
    for line in lines:
        addresses = [a for a in _ADDRESS_RE.findall(line) if _wanted(a)]
        code = _EXCHANGE_CODE_RE.search(line)
        if addresses and not code and len(line.strip()) < 200:
            current = addresses[0].lower()
            explanation.setdefault(current, [])
            continue
        if current is None:
            continue
        if code:
            answer = next(g for g in code.groups() if g)
            results[current] = (answer + " " + " ".join(explanation[current][:3])).strip()
        elif line.strip() and len(explanation[current]) < 6:
            explanation[current].append(line.strip())
    for address, words in explanation.items():
        if address not in results and words:
            results[address] = " ".join(words[:4])
    return list(results.items())


_FAILED_TO_RE = re.compile(
    r"(?:failed to deliver to|could not (?:be )?deliver(?:ed)? (?:your message )?to|"
    r"was not delivered to|wasn'?t delivered to|undeliverable to|did not reach|"
    r"delivery to the following recipients? failed|following recipients? (?:did not receive|"
    r"could not be reached|failed)|non (?:è stato )?recapitato a|nicht zugestellt an|"
    r"n'a pas (?:pu )?[êe]tre (?:remis|distribu[ée])|no se (?:ha )?(?:podido )?entregar a)",
    re.I)


def _phrase_addresses(text: str) -> list[tuple[str, str]]:
    """Any other server: the address that follows 'failed to deliver to', 'was not
    delivered to', 'the following recipients did not receive'… (same line or next two)."""
    found = []
    for marker in _FAILED_TO_RE.finditer(text):
        window = text[marker.end():marker.end() + 300].split("\n")[:3]
        for address in _ADDRESS_RE.findall("\n".join(window)):
            if _wanted(address) and address.lower() not in (a for a, _d in found):
                found.append((address.lower(), _diagnostic_near(text, address.lower()) or ""))
    return found


def _heuristics(msg: EmailMessage, text: str, fallback: bool = True
                ) -> list[tuple[str, str]]:
    """Failed addresses and their explanations from a bounce's text (the formats mail
    servers write; then, with `fallback`, X-Failed-Recipients and flufl.bounce)."""
    for extract in (_exim, _sendmail, _angle_blocks, _exchange, _gmail_like):
        found = [(a.lower(), d) for a, d in extract(text) if _wanted(a)]
        if found:
            return found
    if not fallback:
        return []
    found = _phrase_addresses(text)
    if found:
        return found
    addresses = [_address(a) for a in msg.get_all("X-Failed-Recipients", [])
                 for a in str(a).split(",")]
    addresses = [a for a in addresses if a and _wanted(a)]
    if not addresses:
        addresses = _flufl_addresses(msg)
    return [(address, _diagnostic_near(text, address) or "") for address in addresses]


def _flufl_addresses(msg: EmailMessage) -> list[str]:
    """flufl.bounce as the last resort, for the address only (its verdicts are not used)."""
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
    except Exception:  # flufl raises IndexError and friends on junk: never fatal
        log.info("flufl.bounce could not read a report", exc_info=True)
        return []
    found = []
    for raw in sorted(set(permanent or ()) | set(temporary or ())):
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        address = _address(text)
        if address and _wanted(address):
            found.append(address)
    return found


def _diagnostic_near(text: str, address: str) -> str | None:
    """The line (and the next) with a reply or status code near the address, best guess."""
    lines = [line.strip() for line in text.split("\n")]
    codes = [i for i, line in enumerate(lines)
             if fault.parse_status(line) or _SMTP_CODE_RE.search(line)]
    near = [i for i in codes
            if any(address in lines[j].lower() for j in range(max(0, i - 3), i + 1))]
    picked = (near or codes)[:1]
    if picked:
        i = picked[0]
        return _clean(" ".join(lines[i:i + 2]))[:2000] or None
    # no code at all (Lotus Domino, CommuniGate…): the words that follow the address, or,
    # when it ends the text (GroupWise), the paragraph before it
    for i, line in enumerate(lines):
        if address and address in line.lower():
            following = [text for text in lines[i + 1:i + 8] if text][:5]
            if not following:
                following = [text for text in lines[max(0, i - 6):i] if text][-5:]
            return _clean(" ".join([line, *following]))[:2000] or None
    return None


# -- auto-replies ------------------------------------------------------------------------
_AUTOREPLY_SUBJECT_RE = re.compile(
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response|"
    r"antwort|respon\w*)|^auto:|vacation|on holiday|away from|risposta automatica|"
    r"fuori (?:ufficio|sede)|assente|abwesenheit|automatische antwort|urlaub|"
    r"r[ée]ponse automatique|absence|absent|respuesta autom[áa]tica|fuera de la oficina|"
    r"resposta autom[áa]tica|fora do escrit[óo]rio|automatisch antwoord|afwezig", re.I)
_BOUNCE_FROM_RE = re.compile(r"mailer[-_]?daemon|postmaster|mail delivery|"
                             r"delivery (?:status|subsystem)|mail administrator", re.I)
_BOUNCE_TEXT_RE = re.compile(
    r"could not be delivered|couldn'?t be delivered|was not delivered|wasn'?t delivered|"
    r"undeliverable|delivery (?:has )?failed|permanent (?:fatal )?error|"
    r"following address(?:es|\(es\))? failed|qmail-send|mail system at host|"
    r"unable to deliver|delivery to the following recipient|remote server returned|"
    r"diagnostic-code|action: failed", re.I)


def _is_auto_reply(msg: EmailMessage) -> bool:
    auto = _clean(msg.get("Auto-Submitted")).lower()
    precedence = _clean(msg.get("Precedence") or msg.get("X-Precedence")).lower()
    return (auto.startswith("auto-replied") or bool(msg.get("X-Autoreply"))
            or bool(msg.get("X-Autorespond")) or bool(msg.get("X-Autoresponder"))
            or precedence == "auto_reply"
            or bool(_AUTOREPLY_SUBJECT_RE.search(_clean(msg.get("Subject")))))


def _looks_like_bounce(msg: EmailMessage, text: str) -> bool:
    return (bool(msg.get("X-Failed-Recipients"))
            or bool(_BOUNCE_FROM_RE.search(_clean(msg.get("From"))))
            or bool(_FAILED_SUBJECT_RE.search(_clean(msg.get("Subject"))))
            or bool(_BOUNCE_TEXT_RE.search(text[:20_000])))


# -- entry point -------------------------------------------------------------------------
def parse(raw: bytes | str) -> list[Report]:
    """Every recipient outcome a report states; [] when it is not a report we can read."""
    try:
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=policy.compat32)
        reports = _parse(msg, raw.decode("utf-8", "replace"))
        for report in reports:  # an A-label domain is the same address as its U-label form
            if report.recipient:
                report.recipient = canonical(report.recipient)
            if report.extra.get("original_recipient"):
                report.extra["original_recipient"] = canonical(report.extra["original_recipient"])
        return reports
    except Exception:  # junk must never break intake
        log.info("unreadable report", exc_info=True)
        return []


def _parse(msg: EmailMessage, raw_text: str) -> list[Report]:
    dsn_groups = []
    for part in msg.walk():
        content_type = part.get_content_type()
        if content_type == "message/feedback-report":
            return [_parse_arf(msg, part)]
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            dsn_groups.extend(_parse_dsn(part))
    text = human_text(msg)
    ses = _ses(text) if not dsn_groups else None
    if ses:
        return ses
    if not dsn_groups:
        complaint = _feedback_loop(msg, raw_text)
        if complaint is not None:
            return [complaint]
    if dsn_groups:
        return _dsn_reports(dsn_groups, msg, text)
    if _is_auto_reply(msg) and not _looks_like_bounce(msg, text):
        sender = _address(msg.get("From"))
        return [_report(sender, None, None, _clean(msg.get("Subject"))[:2000] or None,
                        "autoreply", fault.auto_reply())]
    return _heuristic_reports(msg, text)


def _dsn_reports(groups, msg: EmailMessage, text: str) -> list[Report]:
    """One report per DSN recipient; a missing Diagnostic-Code is looked for in the text."""
    explained: dict | None = None

    def context_for(recipient: str | None) -> str | None:
        """The text part's words about this recipient (read once, only when needed)."""
        nonlocal explained
        if explained is None:
            explained = dict(_heuristics(msg, text, fallback=False)) if text.strip() else {}
        return explained.get(recipient or "") or (
            next(iter(explained.values())) if len(explained) == 1 else None)

    reports = []
    for recipient, original, action, status, diagnostic in groups:
        context = None
        if action not in ("delivered", "relayed", "expanded"):
            if not diagnostic:
                context = context_for(recipient)
                diagnostic = _diagnostic(context)
            elif fault.classify(None, status, diagnostic, action).fault_class in \
                    fault.RECIPIENT_CLASSES:
                context = context_for(recipient)  # it may say the refusal was at MAIL FROM
        reports.append(_report(recipient, status, action, diagnostic, "dsn", context=context,
                               original_recipient=original))
    return reports


def _heuristic_reports(msg: EmailMessage, text: str) -> list[Report]:
    """A bounce in a non-standard format: failed (or delayed) recipients and their reason.
    Only a message that looks like a bounce is read so (a person's reply quoting one, or
    naming an address, is not a report)."""
    if not _looks_like_bounce(msg, text):
        return []
    found = _heuristics(msg, text)
    if not found:
        # A bounce naming no address we can read: its verdict is about the message's own
        # recipient (the VERP address says which message it was).
        found = [(None, _diagnostic_near(text, "") or "")]
    if not found:
        return []
    subject = _clean(msg.get("Subject"))
    delayed = bool(_DELAY_RE.search(text[:5000])) or (
        bool(_DELAY_SUBJECT_RE.search(subject))
        and not _FINAL_WORDS_RE.search(subject + text[:3000]))
    action = "delayed" if delayed else "failed"
    seen: dict[str | None, Report] = {}
    for address, diagnostic in found:
        if address in seen:
            continue
        diagnostic = _diagnostic(diagnostic)
        seen[address] = _report(address, None, action, diagnostic, "heuristic")
    return list(seen.values())
