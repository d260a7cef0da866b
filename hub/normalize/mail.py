"""E-mail to a ``LeadDraft``: one parser for every mail source (Mailgun, SendGrid, Postmark,
raw ``message/rfc822`` bodies, IMAP). Pure, no I/O, never raises on a message's content.

Public API (kept stable; other sources import it):

* ``parse_message(raw: bytes) -> MailParts``: an RFC 5322 message as bytes (MIME,
  RFC 2047 headers, quoted-printable/base64 bodies in any charset Python knows).
  ``ParseError`` only when the bytes hold no header fields at all.
* ``draft_from_parts(parts, *, default_region="RU") -> LeadDraft``: for what a provider
  already parsed (fill a ``MailParts`` with its fields).
* ``draft_from_message(raw, *, default_region="RU") -> LeadDraft``: both at once.
* ``event_from_parts(parts, *, default_region="RU") -> ParsedEvent``: the event a source
  returns: ``event_id`` is the Message-ID; auto-replies and bounces are non-lead events.
* ``non_lead_reason(parts) -> str | None``: why a message is automatic, not a person.
* ``clean_message_id(value) -> str | None``: ``<abc@host>`` → ``abc@host``.

What the draft holds (``channel="email"``):

* ``name``: the sender's display name, RFC 2047-decoded; from ``Reply-To`` when ``From``
  is a no-reply robot (site notifications) and Reply-To names a person.
* ``emails``: the Reply-To address, the From address (unless a robot's), then addresses
  written in the text; our own recipient addresses are never taken as the lead's.
* ``phones``: numbers written in the reply and its signature (not in the quoted part,
  which is usually our own letter with our own phone).
* ``message``: the reply text: the provider's "stripped" text where given, else the
  text/plain part, else the HTML part as text, with the quote and signature cut off;
  the subject when there is no text.
* ``page_url``: the first link in the text or HTML carrying ``utm_*`` or a click id; the
  core reads the tags from its query.
* ``fields``: ``subject``, ``message_id``, ``recipient`` (the first To address) and
  ``mailbox_hash`` (``sales+yandex@`` → ``yandex``; Postmark's ``MailboxHash``), which
  routes can match as ``fields.mailbox_hash``.

Reply and signature heuristics (simple on purpose; what is cut is still searched for
phones when it is the signature): the reply ends at the first ``>``-quoted line (and
the attribution line right above it), at a line ending in ``wrote:`` / ``написал(а):`` /
``пишет:`` (Gmail may wrap it over two lines), at ``-----Original Message-----`` /
``Исходное сообщение`` separators, or at an Outlook ``From:``/``От:`` block followed by
``Sent:``/``Отправлено:``; a forwarded letter (``---------- Forwarded message``)
is kept whole, since it is the content. HTML ``<blockquote>`` is left out. The
signature starts at a ``-- `` (or ``--``) line or a mobile sign-off (``Sent from my
iPhone``, ``Отправлено из мобильной Почты Mail.ru``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.errors import CharsetError, HeaderParseError
from email.header import Header, decode_header, make_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

from hub.bodies import decode_text
from hub.connectors import LeadDraft, ParsedEvent
from hub.errors import ParseError
from hub.normalize.emails import find_emails, normalize_email
from hub.normalize.phones import find_phones
from hub.normalize.utm import classify

__all__ = [
    "MailParts", "clean_message_id", "decode_header_text", "draft_from_message", "draft_from_parts",
    "event_from_parts", "html_to_text", "non_lead_reason", "parse_address", "parse_message",
    "split_reply",
]

#: Only this much of a body is searched for phones, emails and links: a lead writes a few
#: lines; megabytes of text would only cost time.
SEARCH_LIMIT = 20_000

_ROBOT_LOCAL = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?|notifications?)([+\-.].*)?$",
    re.IGNORECASE,
)
_NAME_ADDR = re.compile(r"^([^<>]*)<([^<>,\s]+@[^<>,\s]+)>$")
_URL = re.compile(r"https?://[^\s<>\"'()\[\]]+", re.IGNORECASE)
_ATTRIBUTION = re.compile(
    r"(\bwrote|написал\(а\)|написала|написал|пишет|schrieb|a écrit)\s*:\s*$", re.IGNORECASE
)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Am|Le|В|\d{1,2}[./]\d{1,2}[./]\d{2,4})\b", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(Original Message|Исходное сообщение|Oorspronkelijk bericht)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^(-{3,}\s*(Forwarded message|Пересылаемое сообщение|Пересланное сообщение)\s*-{3,}|"
    r"Begin forwarded message:|-{3,}\s*Forwarded by .*)$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|От|Від)\s*:", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(r"^\s*\*?(Sent|Date|Отправлено|Дата)\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^(--\s?|Sent from my .*|Sent from (Mail|Outlook) for .*|Get Outlook for .*|"
    r"Отправлено (с|из|со) .*|Sent with .*)$",
    re.IGNORECASE,
)


@dataclass
class MailParts:
    """A message as a provider or ``parse_message`` gives it; every value as written.

    ``sender`` and ``reply_to`` are header values (``"Иван <ivan@x.ru>"``, RFC 2047 encoded
    words allowed); ``to`` lists recipient header values or bare addresses.
    """

    sender: str | None = None
    reply_to: str | None = None
    to: list[str] = field(default_factory=list)
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    stripped_text: str | None = None  # the provider's reply-only text (quote already removed)
    stripped_signature: str | None = None  # the provider's cut-off signature, if it gives one
    headers: list[tuple[str, str]] = field(default_factory=list)
    message_id: str | None = None
    mailbox_hash: str | None = None
    content_type: str | None = None  # of the whole message: multipart/report means a bounce

    def raw_header(self, name: str) -> str | None:
        """The first header of that name (case-insensitive) as written; None if absent."""
        low = name.lower()
        return next((value for key, value in self.headers if key.lower() == low), None)

    def header(self, name: str) -> str | None:
        """The first header of that name, RFC 2047-decoded; None if absent."""
        value = self.raw_header(name)
        return None if value is None else decode_header_text(value)


# ---------------------------------------------------------------- raw messages


def parse_message(raw: bytes) -> MailParts:
    """Read an RFC 5322 message; ``ParseError`` if it has no header fields at all."""
    if not raw.strip():
        raise ParseError("empty message")
    msg = message_from_bytes(raw, policy=compat32)
    headers = [(k, _header_str(v)) for k, v in msg.items()]
    if not headers:
        raise ParseError("not an RFC 822 message: no header fields")
    parts = MailParts(headers=headers, content_type=msg.get_content_type())
    parts.sender = parts.raw_header("From") or parts.raw_header("Sender")
    parts.reply_to = parts.raw_header("Reply-To")
    parts.to = [v for k, v in headers if k.lower() in ("to", "delivered-to", "x-original-to")]
    parts.subject = parts.header("Subject")
    parts.message_id = clean_message_id(parts.header("Message-ID"))
    parts.text, parts.html = _bodies(msg)
    return parts


def clean_message_id(value: str | None) -> str | None:
    """``<abc@host>`` → ``abc@host``; None when empty."""
    if not value:
        return None
    text = value.strip().strip("<>").strip()
    return text or None


def _header_str(value: object) -> str:
    """A header value as text; 8-bit bytes (non-RFC 2047 UTF-8 headers) decoded as UTF-8."""
    if isinstance(value, Header):
        chunks = []
        try:
            decoded = decode_header(value)
        except (LookupError, UnicodeError, HeaderParseError, CharsetError, ValueError):
            return str(value)
        for chunk, charset in decoded:
            if isinstance(chunk, bytes):
                chunks.append(decode_text(chunk, None if charset == "unknown-8bit" else charset))
            else:
                chunks.append(chunk)
        return "".join(chunks)
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):  # surrogate-escaped raw bytes
        return decode_text(text.encode("ascii", "surrogateescape"), None)
    return text


def _bodies(msg: Message) -> tuple[str | None, str | None]:
    """The first inline text/plain and text/html parts (not attachments, not attached mails)."""
    text: str | None = None
    html: str | None = None
    stack = [msg]
    while stack:
        part = stack.pop(0)
        if part.is_multipart():
            if part.get_content_type() != "message/rfc822" or part is msg:
                payload = part.get_payload()
                stack[:0] = [p for p in payload if isinstance(p, Message)] if isinstance(
                    payload, list) else []
            continue
        if (part.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html") or (text and html):
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        content = decode_text(data, part.get_content_charset())
        if ctype == "text/plain" and text is None:
            text = content
        elif ctype == "text/html" and html is None:
            html = content
    return text, html


def decode_header_text(value: str | None) -> str:
    """RFC 2047 encoded words decoded (``=?koi8-r?B?...?=``); unknown charsets left as written."""
    if not value:
        return ""
    try:
        text = str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, HeaderParseError, CharsetError, ValueError):
        text = value
    return " ".join(text.split())


def parse_address(value: str | None) -> tuple[str | None, str | None]:
    """(display name, address) of the first mailbox in a header value; decoded, either may be None."""
    if not value:
        return None, None
    single = _NAME_ADDR.match(" ".join(value.split()))
    if single:  # "Петров, Иван <x@y>" as providers pass it decoded: one mailbox, not two
        name = decode_header_text(single[1]).strip().strip('"').strip() or None
        return name, normalize_email(single[2])
    try:
        pairs = getaddresses([value])
    except (ValueError, TypeError, IndexError):
        pairs = []
    for raw_name, raw_addr in pairs:
        name = decode_header_text(raw_name).strip().strip('"').strip() or None
        address = normalize_email(raw_addr) if raw_addr else None
        if name or address:
            return name, address
    decoded = decode_header_text(value)
    found = find_emails(decoded)
    return None, (found[0] if found else None)


# ---------------------------------------------------------------- text


class _TextExtractor(HTMLParser):
    """HTML as readable text, with links; ``<blockquote>`` (quoted replies) left out."""

    _BLOCK = frozenset(("p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "section", "article", "header", "footer", "hr"))
    _SKIP = frozenset(("script", "style", "head", "title", "blockquote"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.links: list[str] = []
        self._skip: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self._skip or tag in self._SKIP:
            if tag not in ("br", "hr", "img", "meta", "link", "input"):
                self._skip.append(tag)
            return
        if tag in self._BLOCK:
            self.chunks.append("\n")
        elif tag in ("td", "th"):
            self.chunks.append(" ")
        if tag == "a" and (href := values.get("href")):
            self.links.append(href)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            return
        if tag in self._BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            edge_l = " " if data[:1].isspace() else ""
            edge_r = " " if data[-1:].isspace() else ""
            self.chunks.append(f"{edge_l}{' '.join(data.split())}{edge_r}" if data.strip() else " ")


def html_to_text(html: str) -> tuple[str, list[str]]:
    """(text, links) of an HTML body, quoted blocks left out; never raises."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser is lenient; belt and braces
        pass
    lines = [" ".join(line.split()) for line in "".join(parser.chunks).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, parser.links


def split_reply(text: str) -> tuple[str, str]:
    """(reply, signature) of a plain-text body; the quoted part is dropped (module docstring)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _quote_start(lines)
    lines = lines[:cut]
    signature: list[str] = []
    for i, line in enumerate(lines):
        if i > 0 and _SIGNATURE.match(line.strip()):
            lines, signature = lines[:i], lines[i:]
            break
    reply = "\n".join(lines).strip()
    reply = re.sub(r"[\n\s_\-]+$", "", reply) if reply.strip("_- \n") else ""
    return reply, "\n".join(signature).strip()


def _quote_start(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        stripped = line.strip()
        if _FORWARD.match(stripped):  # a forwarded letter is the content, not a quote
            return len(lines)
        if stripped.startswith(">"):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            return j if j >= 0 and lines[j].rstrip().endswith(":") else i
        if _SEPARATOR.match(stripped):
            return i
        if _ATTRIBUTION.search(stripped):
            prev = lines[i - 1].strip() if i > 0 else ""
            if prev and _ATTRIBUTION_START.match(prev) and not _ATTRIBUTION_START.match(stripped):
                return i - 1
            return i
        if _OUTLOOK_FROM.match(stripped) and any(
            _OUTLOOK_SENT.match(nxt) for nxt in lines[i + 1:i + 5]
        ):
            return i
    return len(lines)


def first_tagged_link(urls: list[str]) -> str | None:
    """The first URL whose query carries ``utm_*`` or a known click id."""
    for url in urls:
        url = url.rstrip(".,;:!?")
        try:
            query = urlsplit(url).query
        except ValueError:
            continue
        if any(classify(name) for name, _ in parse_qsl(query)):
            return url
    return None


# ---------------------------------------------------------------- drafts


def non_lead_reason(parts: MailParts) -> str | None:
    """Why a message is not from a person (auto-reply, bounce), or None.

    Signs used (RFC 3834 and common practice): ``Auto-Submitted`` other than ``no``,
    ``X-Autoreply``/``X-Autorespond``, ``Precedence: auto_reply|junk``, a
    ``multipart/report`` body or ``X-Failed-Recipients`` (delivery reports), and a sender
    named ``mailer-daemon`` or ``postmaster``. Mailing-list headers are not used: a team
    address behind Google Groups adds them to real leads.
    """
    auto = (parts.header("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"auto-submitted: {auto.split(';')[0]}"
    if parts.header("X-Autoreply") or parts.header("X-Autorespond"):
        return "auto-reply"
    if (parts.header("Precedence") or "").strip().lower() in ("auto_reply", "junk"):
        return "auto-reply (precedence)"
    if (parts.content_type or "").lower() == "multipart/report" or parts.header(
            "X-Failed-Recipients"):
        return "delivery report (bounce)"
    _, address = parse_address(parts.sender)
    local = (address or "").split("@")[0]
    if local in ("mailer-daemon", "postmaster"):
        return f"delivery report from {local}"
    return None


def draft_from_parts(parts: MailParts, *, default_region: str = "RU") -> LeadDraft:
    """The lead a message stands for (module docstring); pure, never raises."""
    draft = LeadDraft(channel="email")
    from_name, from_addr = parse_address(parts.sender)
    reply_name, reply_addr = parse_address(parts.reply_to)
    robot = bool(from_addr and _ROBOT_LOCAL.match(from_addr.split("@")[0]))
    draft.name = (reply_name if robot and reply_name else from_name) or reply_name
    ours = [a for value in parts.to for a in _addresses(value)]
    for address in (reply_addr, None if robot else from_addr):
        if address and address not in draft.emails and address not in ours:
            draft.emails.append(address)

    links: list[str] = []
    if parts.stripped_text and parts.stripped_text.strip():
        reply, signature = split_reply(parts.stripped_text)
        signature = "\n".join(s for s in (signature, parts.stripped_signature or "") if s)
    else:
        body = parts.text or ""
        if not body.strip() and parts.html:
            body, links = html_to_text(parts.html)
        reply, signature = split_reply(body)
    if parts.html and not links:
        links = html_to_text(parts.html[:SEARCH_LIMIT * 5])[1]
    searched = f"{reply}\n{signature}"[:SEARCH_LIMIT]
    draft.phones = find_phones(searched, default_region)
    for address in find_emails(searched):
        if address not in draft.emails and address not in ours:
            draft.emails.append(address)
    draft.page_url = first_tagged_link(_URL.findall(searched) + links)

    subject = decode_header_text(parts.subject) or None
    draft.message = reply or subject
    recipient = ours[0] if ours else None
    tag = parts.mailbox_hash or _plus_tag(parts.to)
    for key, value in (("subject", subject), ("message_id", clean_message_id(parts.message_id)),
                       ("recipient", recipient), ("mailbox_hash", tag)):
        if value:
            draft.fields[key] = value
    return draft


def draft_from_message(raw: bytes, *, default_region: str = "RU") -> LeadDraft:
    """``draft_from_parts(parse_message(raw))``; ``ParseError`` only for non-messages."""
    return draft_from_parts(parse_message(raw), default_region=default_region)


def event_from_parts(parts: MailParts, *, default_region: str = "RU") -> ParsedEvent:
    """A lead, or a non-lead event for auto-replies and bounces; the Message-ID is the event id."""
    event_id = clean_message_id(parts.message_id)
    reason = non_lead_reason(parts)
    if reason:
        return ParsedEvent(event_id=event_id, lead=None, reason=reason)
    return ParsedEvent(event_id=event_id, lead=draft_from_parts(parts, default_region=default_region))


def _addresses(value: str) -> list[str]:
    try:
        pairs = getaddresses([decode_header_text(value)])
    except (ValueError, TypeError, IndexError):
        return []
    return [a for _, raw in pairs if raw and (a := normalize_email(raw))]


def _plus_tag(values: list[str]) -> str | None:
    """``sales+yandex@x.ru`` → ``yandex``: the first recipient with a plus tag."""
    for value in values:
        for address in _addresses(value):
            local = address.split("@")[0]
            if "+" in local and (tag := local.split("+", 1)[1]):
                return tag
    return None
