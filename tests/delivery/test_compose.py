"""The sending path writes MIME bytes directly: they must read back like `compose.build`'s."""
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.models import Message, MessageAttachment, utcnow
from dashboard.services.delivery import compose, pixel

TEXT = ("Gentile cliente, l'ordine è chiuso.\n.a line starting with a dot\n"
        + "una riga molto lunga " * 20 + "\n\ttab and trailing space \nfine\n")
HTML = "<html><body><p>Ordine <b>chiuso</b> — è così</p>\r\n<p>=3D not encoded</p></body></html>"


def _message(**fields) -> Message:
    values = dict(public_id="abc123", event="document_sent", reference="ORD-1 «è»",
                  recipient="buyer@example.com", subject="Ordine ORD-1 chiuso — è " * 6,
                  from_header='"Postino, Notifiche è" <notification@postino.example.com>',
                  message_id_header="<abc123@bounces.postino.example.com>",
                  text_body=TEXT, html_body=HTML, created_at=utcnow())
    values.update(fields)
    return Message(**values)


def _read(raw: bytes):
    return message_from_bytes(raw, policy=policy.default)


@pytest.mark.parametrize("files", [[], [("listino prezzi è.pdf", "application/pdf", b"%PDF" * 300),
                                        ('a "quoted" name.txt', "text/plain", b"hello\n")]])
def test_direct_bytes_read_back_like_the_email_package_builds_them(files):
    """Headers decode to the same values, both parts and every file come back identical."""
    message = _message()
    attachments = [MessageAttachment(filename=f, content_type=t, content=c, size=len(c))
                   for f, t, c in files]
    raw = compose.build_bytes(message, attachments)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    fast = _read(raw)
    slow = _read(compose.build(message, attachments).as_bytes(policy=policy.SMTP))
    for header in ("From", "To", "Subject", "Message-ID", "Date", "X-Postino-Reference",
                   "X-Postino-Event", "Auto-Submitted"):
        assert str(fast[header]) == str(slow[header]), header
    for kind in ("plain", "html"):
        got = fast.get_body(preferencelist=(kind,)).get_content()
        want = slow.get_body(preferencelist=(kind,)).get_content()
        assert got.replace("\r\n", "\n") == want.replace("\r\n", "\n"), kind
    got = [(a.get_filename(), a.get_content_type(), a.get_content()) for a in
           fast.iter_attachments()]
    want = [(a.get_filename(), a.get_content_type(), a.get_content()) for a in
            slow.iter_attachments()]
    assert got == want == [(f, t, c if t != "text/plain" else c.decode()) for f, t, c in files]


def test_a_text_only_message_is_a_single_part():
    """Without HTML or files the message is plain text/plain, nothing wrapped around it."""
    fast = _read(compose.build_bytes(_message(html_body=None), []))
    assert fast.get_content_type() == "text/plain"
    assert fast.get_content().replace("\r\n", "\n") == TEXT


def test_a_line_break_smuggled_into_a_header_is_refused():
    """Values reaching headers are checked here too: CR/LF never makes a new header."""
    with pytest.raises(ValueError):
        compose.build_bytes(_message(subject="hi\r\nBcc: victim@example.com"), [])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab= \t\r\n.è<>/"), max_size=300),
       st.text(alphabet=st.sampled_from("ab= \t\r\n.è<>/"), max_size=120),
       st.sampled_from(["</body>", "</BODY >", ""]))
def test_the_pixel_path_encodes_exactly_like_the_whole_html(before, after, body_end):
    """The sending path encodes the two halves around the pixel once per body: the bytes
    must be those of encoding the whole HTML with the pixel in it."""
    html = before + body_end + after
    tag = '<img src="https://postino.example.com/o/abc.def.gif" width="1" height="1" alt="">'
    halves = pixel.split_at_body_end(html)
    if not body_end and "</body>" not in html.lower():
        assert halves is None
        return
    head, tail = halves
    assert head.endswith("\n") and tail.lower().startswith("</body")
    whole = head + tag + "\n" + tail
    encoded = compose._html_halves(html)
    assert encoded[0] + compose._qp(tag) + encoded[1] == compose._qp(whole)
