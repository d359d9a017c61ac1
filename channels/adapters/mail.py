"""E-mail: raw RFC 822 messages (IMAP pulls or inbound-MIME webhooks) into `InboundEvent`s; replies over SMTP.

What a message becomes (PLATFORMS.md section 7); parsing uses the standard library `email` package with
`policy.default` and never raises anything but `PayloadError`:

- One message -> one `dm`. External id: the `Message-ID` without angle brackets; a message without one gets
  `sha256:<hex digest of the raw bytes>` (the same bytes give the same id, so a re-poll is a no-op). An id
  longer than 255 characters is replaced by its `sha256:` digest, here and wherever it is referenced.
- Author: the first `From` address, lower-cased, is the external id and the handle; the display name is
  decoded (RFC 2047); scope is empty (an address is global). No `From`, or one without an address, is a
  PayloadError. A message from our own mailbox (`external_id`, compared case-insensitively) is `out`: the
  copy of a reply we sent, which carries the Message-ID `send` gave it and so matches the stored reply.
- Thread key: the first id of `References` (the root), else the first id of `In-Reply-To`; a message without
  either whose subject says it answers or forwards something (`Re:`, `AW:`, `Fwd:`, `WG:`, ...) is keyed by
  `subject:<subject without those prefixes, lower-cased>|<sender>` (a client that dropped the headers); any
  other message starts a conversation of its own: its own id. A fresh message is deliberately not keyed by its
  subject: our reply references its Message-ID, so the customer's answer (whose `References` starts with
  that id) lands in the same conversation, and two unrelated mails with the same subject stay apart.
- Reply-to: the first id of `In-Reply-To`, else the last of `References` (the parent, RFC 5322 3.6.4). Ids
  are read from the raw headers, folded or not, with or without proper `addr-spec` form (`<test-in-reply-to>`).
- Text: the `text/plain` body, else the HTML body as plain text (a linear scan of the markup: `<script>`,
  `<style>`, `<head>` and every tag dropped, entities unescaped, tag-shaped leftovers removed, HTML over
  MAX_HTML characters cut first, so hostile markup cannot stall a worker); control characters other than tab
  and newline are dropped. Charsets: the declared one, with errors replaced; a part declared ASCII /
  ISO-8859-1 / windows-1252 whose bytes are valid UTF-8 is read as UTF-8 (the common mislabel); an unknown
  charset falls back to `config["fallback_charset"]` or UTF-8. Raw 8-bit header bytes are read as UTF-8,
  else as `config["fallback_charset"]`, else with replacement characters.
- Attachments: metadata only (filename, content type, size in bytes, content id, disposition); a forwarded
  `message/rfc822` is one attachment. `raw` holds the decoded headers (`Reply-To` also on its own), the size,
  the MIME defects and `automated` (why the message looks machine-sent: `Auto-Submitted`, `X-Autoreply`,
  `Precedence: bulk`, delivery reports), never a body or attachment bytes.
- Time: `Date`; without a usable one, the newest `Received` date; else the receive time.
- Sender authentication: anyone can write any `From`. With `config["trusted_authserv_ids"]` naming the
  receiving mail server(s) (`mx.google.com`, `["mx.example.net"]`), the topmost `Authentication-Results`
  header (RFC 8601) of such a server decides `raw["sender_auth"]`: `pass` (DMARC pass, or DKIM or SPF pass
  for the `From` domain or a parent or child of it), `fail` (DMARC fail; or, without a DMARC result and
  without such a pass, DKIM or SPF fail) or `none`; `unchecked` when no server is configured. Headers of
  other servers are ignored: a sender can add them. A message whose sender failed is kept, but its author
  gets the scope `unverified`: a separate identity and customer, so a forged `From` never files a message
  into the real sender's history. An agent can still link the identity by hand.

Network:

- Polling (`fetch`) over IMAP with `imaplib`: `config["imap_host"]`, `imap_port`, `imap_security` (`ssl`,
  the default, `starttls`, or `none`, allowed only to a loopback host), `imap_mailbox` (default `INBOX`,
  opened read-only), `credentials["username"]` / `["password"]`, `config["timeout"]` seconds per socket
  operation. `UID SEARCH UID <last_uid+1>:*`, then `UID FETCH <uids> (UID BODY.PEEK[])` in batches (nothing
  is marked read). Cursor `{"uidvalidity", "last_uid"}`; a changed UIDVALIDITY re-reads the mailbox from
  the start (recorded as skipped and logged; known messages are matched by Message-ID). A message that cannot
  be parsed is recorded as skipped with its UID and reason. Connection failures and timeouts are
  TransientError; refused credentials, a missing mailbox, an untrusted certificate or a server without the
  STARTTLS asked for (the password never goes out in the clear) PermanentError.
- Replies (`send`) over SMTP with `smtplib`: `config["smtp_host"]`, `smtp_port`, `smtp_security` (`starttls`,
  the default, `ssl`, or `none` to a loopback host), the same credentials (or `smtp_username` /
  `smtp_password`). The reply goes from our mailbox to the recipient's address with `In-Reply-To` (the message
  answered) and `References` (thread root, then that message), a `Message-ID` derived from the reply's
  idempotency key and our domain (`config["message_id_domain"]`, else the mailbox's domain), and `Re: <subject>`
  from a subject-keyed thread or `config["reply_subject"]`. Failures before the message data went out are
  TransientError (4xx, connection) or PermanentError (5xx, refused login); a connection lost while the data is
  sent is OutcomeUnknown. `find_sent` can only prove a sent reply: it looks for the Message-ID in
  `config["sent_mailbox"]` over IMAP when that is set (servers that file submitted mail there), and otherwise,
  or when it is not found, raises OutcomeUnknown.
- Inbound-MIME webhooks (a provider posting the raw message): `X-Socialcrm-Signature: sha256=<hex HMAC-SHA256
  of the body>` with `webhook_secret["signing_key"]`.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime as dt
import email
import email.message
import email.utils
import hashlib
import imaplib
import ipaddress
import logging
import re
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from email import policy
from email.headerregistry import Address
from html import unescape
from typing import Any

from .base import (
    MAX_EXTERNAL_ID,
    Author,
    BaseAdapter,
    Direction,
    EventKind,
    FetchResult,
    InboundEvent,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    SendResult,
    TransientError,
    WebhookRequest,
    check_signature,
    hmac_digest,
)
from .timeparse import utc_now

PLATFORM = "email"
logger = logging.getLogger("channels.adapters")

# HTML longer than this is cut before it is parsed (the text is cut to MAX_TEXT by ingest anyway).
MAX_HTML = 1_000_000
# Header values longer than this are cut in `raw`; at most MAX_HEADERS headers are kept there.
MAX_HEADER_VALUE = 4_000
MAX_HEADERS = 200
IMAP_BATCH = 25
IMAP_MAX_MESSAGES = 200
DEFAULT_TIMEOUT = 30.0
SECURITY_MODES = ("ssl", "starttls", "none")

_ID_IN_BRACKETS = re.compile(r"<([^<>]*)>")
_PRINTABLE_ID = re.compile(r"^[\x21-\x3b\x3d\x3f-\x7e]+$")  # printable ASCII without space, "<" and ">"
_REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FOLD = re.compile(r"\r?\n[ \t]+")
_SINGLE_BYTE = frozenset({"us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1", "windows-1252",
                          "cp1252"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DOMAIN = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                     r"[A-Za-z0-9])?)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # all but tab, newline and carriage return

_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg",
                           "math", "textarea", "xmp"})
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "table", "tr", "h1", "h2", "h3", "h4", "h5",
                         "h6", "section", "article", "header", "footer", "hr", "center", "address", "dl", "dt", "dd"})
# A tag ends at the next ">" and never spans a "<": each match is bounded by the next "<", so scanning stays
# linear however the markup nests or breaks (html.parser is quadratic on runs like "<div <div <div ...").
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)([^<>]*)>")
_DECLARATION = re.compile(r"<[!?][^<>]*>")
_BROKEN_TAG = re.compile(r"<[A-Za-z!/?][^<>]*>?")
_LT_RUN = re.compile(r"<+")
_TAG_SHAPED = re.compile(r"<[A-Za-z!/?][^<>]*(?:>|$)")


def html_to_text(html: str) -> str:
    """An HTML mail body as plain text: tags and script / style / head content dropped, entities unescaped,
    whitespace collapsed outside `<pre>`, line breaks for `<br>` and blocks. Linear in the input size."""
    html = html[:MAX_HTML]
    parts: list[str] = []
    position, preformatted = 0, 0

    def text(chunk: str) -> None:
        if not chunk:
            return
        chunk = unescape(chunk)
        parts.append(chunk if preformatted else re.sub(r"\s+", " ", chunk))

    while position < len(html):
        opening = html.find("<", position)
        if opening < 0:
            text(html[position:])
            break
        text(html[position:opening])
        if html.startswith("<!--", opening):
            closing = html.find("-->", opening + 4)
            position = len(html) if closing < 0 else closing + 3
            continue
        match = _TAG.match(html, opening) or _DECLARATION.match(html, opening)
        if match is None:
            broken = _BROKEN_TAG.match(html, opening)
            if broken is None:  # "I <3 you": a "<" that starts no tag is text (a run of them in one step)
                run = _LT_RUN.match(html, opening).end()
                parts.append("<" * max(1, run - opening - 1))
                position = max(opening + 1, run - 1)
            else:
                position = broken.end()  # "<div <div", "<a<b": an unfinished tag, dropped up to the next "<"
            continue
        position = match.end()
        if match.re is _DECLARATION:
            continue
        closing_tag, name = match.group(1) == "/", match.group(2).lower()
        if name in _SKIPPED_TAGS and not closing_tag and not match.group(3).rstrip().endswith("/"):
            end = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(html, position)
            position = len(html) if end is None else end.end()
        elif name == "br" or (name == "li" and not closing_tag):
            parts.append("\n")
        elif name in ("td", "th") and not closing_tag:
            parts.append(" ")
        elif name in _BLOCK_TAGS:
            parts.append("\n\n")
        if name == "pre":
            preformatted = max(0, preformatted + (-1 if closing_tag else 1))
    result = _TAG_SHAPED.sub("", "".join(parts)).replace("\xa0", " ")
    result = re.sub(r"[ \t]*\n[ \t]*", "\n", result)
    return re.sub(r"\n{3,}", "\n\n", result).strip()


def _codec(label: str | None) -> str:
    """The Python codec name for a charset label, or "" when there is none by that name."""
    if not label:
        return ""
    try:
        return codecs.lookup(label.strip().strip('"').lower()).name
    except (LookupError, ValueError):
        return ""


def decode_text(data: bytes, charset: str | None, fallback: str = "") -> str:
    """Bytes of a text part or header: the declared charset (UTF-8 when a single-byte label hides UTF-8),
    else `fallback`, else UTF-8; undecodable bytes become U+FFFD. Never raises."""
    if data.isascii():
        return data.decode("ascii")
    label = (charset or "").strip().strip('"').lower()
    if not label or label in _SINGLE_BYTE:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            if label in ("", "us-ascii", "ascii"):
                label = ""  # 8-bit bytes cannot be ASCII: the declaration tells nothing
    name = _codec(label) or _codec(fallback) or "utf-8"
    try:
        return data.decode(name, "replace")
    except (LookupError, ValueError, TypeError):  # a codec that is not a text codec
        return data.decode("utf-8", "replace")


def normalise_subject(subject: str) -> str:
    """A subject without reply / forward prefixes (`Re:`, `AW:`, `Fwd:`, `WG:`, ...), spaces collapsed, lower-cased."""
    return " ".join(_REPLY_PREFIX.sub("", subject).split()).casefold()


def _id_key(value: str) -> str:
    """An id as it may be stored: itself, or its `sha256:` digest when it is longer than 255 characters."""
    if len(value) <= MAX_EXTERNAL_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def message_ids(value: str) -> list[str]:
    """The ids of a Message-ID / In-Reply-To / References value, brackets stripped, in order, without repeats.

    Ids in angle brackets are taken whatever their form; a value without brackets is split on whitespace and
    commas, keeping the tokens that contain an `@`.
    """
    value = _FOLD.sub(" ", value or "")
    found = ["".join(token.split()) for token in _ID_IN_BRACKETS.findall(value)]
    if not found:
        found = [token for token in re.split(r"[\s,]+", value) if "@" in token]
    ids: list[str] = []
    for token in found:
        key = _id_key(token)
        if token and key not in ids:
            ids.append(key)
    return ids


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmailAdapter(BaseAdapter):
    """One mailbox: `external_id` is its address (`support@example.com`); see the module docstring for config."""

    platform = PLATFORM
    pollable = True

    # -- parsing ------------------------------------------------------------------------------------------

    def parse(self, payload: Any) -> list[InboundEvent]:
        """A raw RFC 822 message (bytes, or str for a message already decoded) -> one event."""
        if isinstance(payload, bytearray | memoryview):
            payload = bytes(payload)
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "surrogateescape")
        if not isinstance(payload, bytes):
            raise PayloadError(f"e-mail payload must be the raw RFC 822 message as bytes, got {type(payload).__name__}")
        return [self.parse_message(payload)]

    def parse_message(self, data: bytes) -> InboundEvent:
        """One raw message as an event; PayloadError names what is missing."""
        if not data.strip():
            raise PayloadError("e-mail payload is empty")
        try:
            message = email.message_from_bytes(data, policy=policy.default)
        except Exception as exc:  # the parser is meant to record defects, not raise; never let one escape
            raise PayloadError(f"e-mail cannot be parsed: {type(exc).__name__}: {exc}") from None
        fallback = str(self.config.get("fallback_charset") or "")
        headers = _Headers(message, fallback)
        author = self._author(message, headers)
        own_ids = message_ids(headers.raw("Message-ID"))
        external_id = own_ids[0] if own_ids else "sha256:" + hashlib.sha256(data).hexdigest()
        references = message_ids(headers.raw("References"))
        in_reply_to = message_ids(headers.raw("In-Reply-To"))
        subject = headers.text("Subject")
        if references:
            thread_key = references[0]
        elif in_reply_to:
            thread_key = in_reply_to[0]
        elif _REPLY_PREFIX.match(subject) and normalise_subject(subject):
            thread_key = _id_key(f"subject:{normalise_subject(subject)}|{author.external_id}")
        else:
            thread_key = external_id
        body = _body_part(message)
        text = _part_text(body, fallback) if body is not None else ""
        outbound = bool(self.external_id) and author.external_id == self.external_id.strip().lower()
        sender_auth = sender_authentication(headers.raw_all("Authentication-Results"), author.external_id,
                                            self._trusted_authserv_ids())
        if sender_auth == "fail" and not outbound:
            author = dataclasses.replace(author, scope=UNVERIFIED_SCOPE)
        return InboundEvent(
            platform=PLATFORM,
            external_id=external_id,
            kind=EventKind.DIRECT_MESSAGE,
            occurred_at=_occurred_at(headers),
            author=author,
            text=text,
            thread_key=thread_key,
            reply_to_id=in_reply_to[0] if in_reply_to else (references[-1] if references else ""),
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=tuple(_attachments(message, body, fallback)),
            raw={
                "message_id": external_id,
                "subject": subject,
                "reply_to": headers.text("Reply-To"),
                "in_reply_to": in_reply_to,
                "references": references,
                "automated": _automated(message, headers, author.external_id),
                "sender_auth": sender_auth,
                "size": len(data),
                "defects": sorted({type(d).__name__ for part in message.walk() for d in part.defects}),
                "headers": headers.all(),
            },
        )

    @staticmethod
    def _author(message: email.message.EmailMessage, headers: _Headers) -> Author:
        if not headers.raw("From").strip():
            raise PayloadError("e-mail has no From header: the sender is unknown")
        try:
            addresses = list(getattr(message["From"], "addresses", ()))
        except Exception:  # a From the header parser cannot read
            addresses = []
        address = next((a for a in addresses if a.username and a.domain), None)
        if address is not None:
            addr_spec = f"{address.username}@{address.domain}"
            display_name = address.display_name
        else:
            name, addr_spec = email.utils.parseaddr(headers.text("From"))
            display_name = name
            if "@" not in addr_spec:
                raise PayloadError(f"e-mail From header has no address: {headers.text('From')[:80]!r}")
        addr_spec = _CONTROL.sub("", _unescape_8bit(addr_spec, headers.fallback)).strip().lower()
        display_name = _CONTROL.sub(" ", _unescape_8bit(display_name or "", headers.fallback)).strip()
        return Author(platform=PLATFORM, external_id=addr_spec, handle=addr_spec, display_name=display_name)

    def _trusted_authserv_ids(self) -> frozenset[str]:
        value = self.config.get("trusted_authserv_ids") or ()
        names = value.split(",") if isinstance(value, str) else value if isinstance(value, list | tuple) else ()
        return frozenset(str(name).strip().lower() for name in names if str(name).strip())

    # -- webhooks -----------------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Inbound-MIME webhooks: `X-Socialcrm-Signature: sha256=<hex HMAC-SHA256 of the raw body>`."""
        secret = self.secret("signing_key")
        check_signature(request.header("X-Socialcrm-Signature"), hmac_digest(secret, request.body), prefix="sha256=")

    # -- IMAP ---------------------------------------------------------------------------------------------

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """The messages after `cursor["last_uid"]` in the configured mailbox, at most IMAP_MAX_MESSAGES per call."""
        cursor = dict(cursor or {})
        mailbox = str(self.config.get("imap_mailbox") or "INBOX")
        batch = self._positive_int("imap_batch", IMAP_BATCH)
        limit = self._positive_int("imap_max_messages", IMAP_MAX_MESSAGES)
        last_uid = cursor.get("last_uid") or 0
        if not isinstance(last_uid, int) or isinstance(last_uid, bool) or last_uid < 0:
            raise PayloadError(f"e-mail cursor last_uid must be a non-negative integer, got {last_uid!r}")
        with self._imap() as imap:
            uidvalidity = _imap_call(self._select, imap, mailbox)
            if cursor.get("uidvalidity") not in (None, uidvalidity):
                self.skip(f"{mailbox} cursor", f"UIDVALIDITY changed from {cursor['uidvalidity']} to {uidvalidity}: "
                                               "reading the mailbox again from its first message")
                logger.warning("email %s: UIDVALIDITY of %s changed; re-reading it", self.external_id, mailbox)
                last_uid = 0
            uids = _imap_call(_search_after, imap, last_uid)
            todo = uids[:limit]
            events: list[InboundEvent] = []
            for start in range(0, len(todo), batch):
                for uid, data in _imap_call(_fetch_messages, imap, todo[start:start + batch]):
                    events.extend(self._imap_event(data, uid, uidvalidity, mailbox))
        return FetchResult(events=events, cursor={"uidvalidity": uidvalidity, "last_uid": max(todo, default=last_uid)},
                           has_more=len(uids) > len(todo))

    def _imap_event(self, data: bytes, uid: int, uidvalidity: int, mailbox: str) -> list[InboundEvent]:
        try:
            event = self.parse_message(data)
        except PayloadError as exc:
            self.skip(f"{mailbox} uid {uid}", str(exc))
            return []
        imap = {"mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid}
        return [dataclasses.replace(event, raw={**event.raw, "imap": imap})]

    @contextlib.contextmanager
    def _imap(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in IMAP connection, logged out afterwards; errors mapped to the adapter errors."""
        host = self._required("imap_host")
        security = self._security("imap_security", "ssl", host)
        port = self._port("imap_port", 993 if security == "ssl" else 143)
        timeout = self._timeout()
        username, password = self._login_pair("username", "password")
        try:
            if security == "ssl":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(host, port, ssl_context=self.ssl_context(), timeout=timeout)
            else:
                imap = imaplib.IMAP4(host, port, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"email: IMAP server {host} has an untrusted certificate: {exc}") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransientError(f"email: cannot connect to IMAP server {host}:{port}: {exc}") from None
        try:
            if security == "starttls" and "STARTTLS" not in imap.capabilities:
                raise PermanentError(f"email: IMAP server {host} does not offer STARTTLS")
            try:
                if security == "starttls":
                    imap.starttls(ssl_context=self.ssl_context())
            except ssl.SSLCertVerificationError as exc:
                raise PermanentError(f"email: IMAP server {host} has an untrusted certificate: {exc}") from None
            except (OSError, imaplib.IMAP4.error) as exc:
                raise TransientError(f"email: IMAP STARTTLS with {host} failed: {exc}") from None
            try:
                imap.login(username, password)
            except imaplib.IMAP4.abort as exc:
                raise TransientError(f"email: IMAP connection lost while logging in: {exc}") from None
            except imaplib.IMAP4.error as exc:
                if "UNAVAILABLE" in str(exc).upper():
                    raise TransientError(f"email: IMAP login temporarily unavailable: {exc}") from None
                raise PermanentError(f"email: IMAP login refused for {username!r}: {exc}") from None
            except UnicodeEncodeError:
                raise PermanentError("email: IMAP LOGIN takes ASCII user names and passwords only") from None
            except OSError as exc:
                raise TransientError(f"email: IMAP connection failed while logging in: {exc}") from None
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    @staticmethod
    def _select(imap: imaplib.IMAP4, mailbox: str) -> int:
        """Open `mailbox` read-only; its UIDVALIDITY."""
        status, data = imap.select(_quote(mailbox), readonly=True)
        if status != "OK":
            raise PermanentError(f"email: IMAP mailbox {mailbox!r} cannot be opened: {_said(data)}")
        _, values = imap.response("UIDVALIDITY")
        try:
            return int(values[0])
        except (TypeError, ValueError, IndexError):
            raise TransientError(f"email: IMAP server gave no UIDVALIDITY for {mailbox!r}") from None

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for IMAP and SMTP: the system's trusted certificates, host names checked."""
        return ssl.create_default_context()

    # -- SMTP ---------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Send the reply by SMTP; its Message-ID (without brackets) is the result's external id."""
        reply, to_address, message_id = self.build_reply(message)
        data = reply.as_bytes()
        with self._smtp() as smtp:
            code, answer = _smtp_step("MAIL FROM", lambda: smtp.mail(self._own_address()), (250,))
            code, answer = _smtp_step("RCPT TO", lambda: smtp.rcpt(to_address), (250, 251))
            try:
                code, answer = smtp.data(data)
            except smtplib.SMTPDataError as exc:  # DATA refused before the message went out
                raise _smtp_refusal("DATA", exc.smtp_code, exc.smtp_error) from None
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                raise OutcomeUnknown(f"email: connection lost while sending the message: {exc}") from None
            if code != 250:
                raise _smtp_refusal("end of DATA", code, answer)
        return SendResult(external_id=message_id, thread_key=message.thread_key or message_id, raw={
            "message_id": message_id, "to": to_address, "subject": str(reply.get("Subject", "")),
            "smtp_reply": f"{code} {answer.decode('utf-8', 'replace')}",
        })

    def find_sent(self, message: OutboundMessage) -> SendResult | None:
        """The reply, if its Message-ID is in `config["sent_mailbox"]`; otherwise OutcomeUnknown (SMTP keeps no
        record we can ask, and absence from a sent folder proves nothing)."""
        sent_mailbox = str(self.config.get("sent_mailbox") or "")
        message_id = self.message_id(message.idempotency_key)
        if not sent_mailbox:
            raise OutcomeUnknown("email: SMTP cannot tell whether the reply was sent (no sent_mailbox configured)")
        with self._imap() as imap:
            _imap_call(self._select, imap, sent_mailbox)
            found = _imap_call(_search_message_id, imap, message_id)
        if not found:
            raise OutcomeUnknown(f"email: reply <{message_id}> is not in {sent_mailbox!r}; it may still have been sent")
        return SendResult(external_id=message_id, thread_key=message.thread_key or message_id,
                          raw={"message_id": message_id, "found_in": sent_mailbox, "uid": found[0]})

    def message_id(self, idempotency_key: str) -> str:
        """The Message-ID (without brackets) of the reply with this idempotency key: the same key, the same id."""
        if not idempotency_key:
            raise PermanentError("email: a reply needs an idempotency key")
        digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
        return f"crm.{digest}@{self._domain()}"

    def build_reply(self, message: OutboundMessage) -> tuple[email.message.EmailMessage, str, str]:
        """The reply as a MIME message, the recipient's address and its Message-ID (without brackets)."""
        recipient = message.recipient
        to_address = _CONTROL.sub("", (recipient.external_id or recipient.handle) if recipient else "").strip()
        if "@" not in to_address:
            raise PermanentError("email: the reply has no recipient address")
        if not message.text.strip():
            raise PermanentError("email: the reply is empty")
        message_id = self.message_id(message.idempotency_key)
        reply = email.message.EmailMessage(policy=policy.SMTP)
        try:
            reply["From"] = Address(display_name=_CONTROL.sub(" ", str(self.config.get("from_name") or "")),
                                    addr_spec=self._own_address())
            reply["To"] = Address(display_name=_CONTROL.sub(" ", recipient.display_name if recipient else ""),
                                  addr_spec=to_address)
        except (ValueError, IndexError) as exc:
            raise PermanentError(f"email: an address of the reply is not valid: {exc}") from None
        subject = self._reply_subject(message)
        if subject:
            reply["Subject"] = subject
        reply["Date"] = email.utils.format_datetime(utc_now())
        reply["Message-ID"] = f"<{message_id}>"
        parent = message.reply_to_id if _PRINTABLE_ID.match(message.reply_to_id or "") else ""
        root = message.thread_key if _is_message_id(message.thread_key) else ""
        if parent:
            reply["In-Reply-To"] = f"<{parent}>"
        references = [i for i in dict.fromkeys((root, parent)) if i]
        if references:
            reply["References"] = " ".join(f"<{i}>" for i in references)
        reply.set_content(message.text, charset="utf-8", cte="quoted-printable")
        return reply, to_address, message_id

    def _reply_subject(self, message: OutboundMessage) -> str:
        """`Re: <subject>` from a subject-keyed thread, else from `config["reply_subject"]`, else ""."""
        subject = ""
        if message.thread_key.startswith("subject:"):
            subject = message.thread_key.removeprefix("subject:").rpartition("|")[0]
        subject = _CONTROL.sub(" ", subject or str(self.config.get("reply_subject") or "")).strip()
        if not subject:
            return ""
        return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"

    @contextlib.contextmanager
    def _smtp(self) -> Iterator[smtplib.SMTP]:
        """A connected, logged-in SMTP session, closed afterwards; errors before the data mapped as documented."""
        host = self._required("smtp_host")
        security = self._security("smtp_security", "starttls", host)
        port = self._port("smtp_port", 465 if security == "ssl" else 587)
        username = self.credentials.get("smtp_username") or self.credentials.get("username")
        password = self.credentials.get("smtp_password") or self.credentials.get("password")
        timeout = self._timeout()
        try:
            if security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, local_hostname=self._domain(), timeout=timeout,
                                                      context=self.ssl_context())
            else:
                smtp = smtplib.SMTP(host, port, local_hostname=self._domain(), timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"email: SMTP server {host} has an untrusted certificate: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            raise _smtp_refusal("greeting", exc.smtp_code, exc.smtp_error) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"email: cannot connect to SMTP server {host}:{port}: {exc}") from None
        try:
            try:
                smtp.ehlo()
                if security == "starttls":
                    smtp.starttls(context=self.ssl_context())
                    smtp.ehlo()
                if username and password:
                    smtp.login(str(username), str(password))
            except smtplib.SMTPAuthenticationError as exc:
                raise PermanentError(f"email: SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}") from None
            except smtplib.SMTPNotSupportedError as exc:
                raise PermanentError(f"email: SMTP server {host} does not offer {exc}") from None
            except ssl.SSLCertVerificationError as exc:
                raise PermanentError(f"email: SMTP server {host} has an untrusted certificate: {exc}") from None
            except smtplib.SMTPResponseException as exc:
                raise _smtp_refusal("session setup", exc.smtp_code, exc.smtp_error) from None
            except (OSError, smtplib.SMTPException) as exc:
                raise TransientError(f"email: SMTP session with {host} failed before sending: {exc}") from None
            yield smtp
        finally:
            with contextlib.suppress(Exception):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()

    # -- configuration ------------------------------------------------------------------------------------

    def _own_address(self) -> str:
        address = self.external_id.strip()
        if "@" not in address or _CONTROL.search(address):
            raise PermanentError("email: the channel account's external id must be its mailbox address")
        return address

    def _domain(self) -> str:
        domain = str(self.config.get("message_id_domain") or self._own_address().rpartition("@")[2]).strip().lower()
        if not _DOMAIN.match(domain):
            raise PermanentError(f"email: {domain!r} is not a domain name for Message-IDs")
        return domain

    def _required(self, key: str) -> str:
        value = self.config.get(key)
        if not isinstance(value, str) or not value.strip():
            raise PermanentError(f'email: config["{key}"] is missing')
        return value.strip()

    def _security(self, key: str, default: str, host: str) -> str:
        value = self.config.get(key) or default
        if value not in SECURITY_MODES:
            raise PermanentError(f"email: config {key} must be one of {', '.join(SECURITY_MODES)}, got {value!r}")
        if value == "none" and not _is_loopback(host):
            raise PermanentError(f"email: {key} 'none' (no TLS) is allowed only to a loopback host, not {host!r}")
        return value

    def _port(self, key: str, default: int) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise PermanentError(f"email: config {key} must be a port number, got {value!r}")
        return value

    def _positive_int(self, key: str, default: int) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PermanentError(f"email: config {key} must be a positive integer, got {value!r}")
        return value

    def _timeout(self) -> float:
        value = self.config.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
            raise PermanentError(f"email: config timeout must be a number of seconds up to 300, got {value!r}")
        return float(value)

    def _login_pair(self, user_key: str, password_key: str) -> tuple[str, str]:
        username, password = self.credentials.get(user_key), self.credentials.get(password_key)
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            raise PermanentError(f'email: credentials["{user_key}"] and ["{password_key}"] are required')
        return username, password


class _Headers:
    """Header values of one message as text, read from the raw headers so no header parser can raise."""

    def __init__(self, message: email.message.EmailMessage, fallback: str) -> None:
        self.message = message
        self.fallback = fallback
        self.items = list(message.raw_items())

    def raw(self, name: str) -> str:
        """The first raw value of header `name` (8-bit bytes decoded), unfolded; "" when absent."""
        lower = name.lower()
        value = next((v for k, v in self.items if k.lower() == lower), None)
        return self._decode_raw(value) if value is not None else ""

    def raw_all(self, name: str) -> list[str]:
        """Every raw value of header `name`, top to bottom, as `raw` reads them."""
        lower = name.lower()
        return [self._decode_raw(v) for k, v in self.items if k.lower() == lower]

    def text(self, name: str) -> str:
        """The first value of header `name` with RFC 2047 encoded words decoded; "" when absent."""
        lower = name.lower()
        value = next((v for k, v in self.items if k.lower() == lower), None)
        if value is None:
            return ""
        if _has_8bit(value):
            return _CONTROL.sub(" ", self._decode_raw(value)).strip()
        try:
            parsed = str(self.message.policy.header_fetch_parse(name, value))
            return _CONTROL.sub(" ", _unescape_8bit(parsed, self.fallback)).strip()
        except Exception:  # a value the header parser cannot read: show it as it came
            return _FOLD.sub(" ", value).strip()

    def all(self) -> list[list[str]]:
        """Every header as [name, text], cut to MAX_HEADERS headers of MAX_HEADER_VALUE characters."""
        return [[name, self._decode_raw(value)[:MAX_HEADER_VALUE]] for name, value in self.items[:MAX_HEADERS]]

    def _decode_raw(self, value: str) -> str:
        return _FOLD.sub(" ", _unescape_8bit(value, self.fallback))


def _has_8bit(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _unescape_8bit(value: str, fallback: str = "") -> str:
    """A parsed value with the raw 8-bit bytes the parser kept as surrogates decoded (UTF-8, else `fallback`,
    else replacement characters), so that it can be stored and encoded."""
    if not _has_8bit(value):
        return value
    return decode_text(value.encode("utf-8", "surrogateescape"), None, fallback)


def _is_message_id(value: str) -> bool:
    """Whether a stored id is a real Message-ID (and not a `sha256:` or `subject:` key) fit for a header."""
    return bool(value) and "@" in value and not value.startswith(("sha256:", "subject:")) \
        and bool(_PRINTABLE_ID.match(value))


def _body_part(message: email.message.EmailMessage) -> email.message.EmailMessage | None:
    """The text/plain body, else the text/html one; None for a message with neither."""
    try:
        return message.get_body(preferencelist=("plain", "html"))
    except Exception:  # a MIME structure get_body cannot walk
        return None


def _part_text(part: email.message.EmailMessage, fallback: str) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = _TEXT_CONTROL.sub("", decode_text(data, _safe(part.get_content_charset), fallback))
    if part.get_content_type() == "text/html":
        return html_to_text(text)
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _attachments(message: email.message.EmailMessage, body: email.message.Message | None,
                 fallback: str) -> Iterator[dict[str, Any]]:
    """Metadata of every attached part: filename, content type, size, content id, disposition."""
    stack: list[email.message.Message] = [message]
    while stack:
        part = stack.pop(0)
        content_type = part.get_content_type()
        if part is body:
            continue
        if part.get_content_maintype() == "multipart":
            payload = part.get_payload()
            stack[:0] = payload if isinstance(payload, list) else []
            continue
        filename = _safe(part.get_filename) or ""
        disposition = _unescape_8bit(_safe(part.get_content_disposition) or "")
        content_ids = message_ids(_unescape_8bit(str(_safe(part.get, "Content-ID", "") or "")))
        content_id = content_ids[0] if content_ids else ""
        if part.get_content_maintype() == "text" and not filename and disposition != "attachment" \
                and content_type in ("text/plain", "text/html"):
            continue  # the other alternative of the body, not an attachment
        if content_type == "message/rfc822":
            inner = part.get_payload()
            size = len(inner[0].as_bytes()) if isinstance(inner, list) and inner and _can_render(inner[0]) else None
        else:
            data = part.get_payload(decode=True)
            size = len(data) if isinstance(data, bytes) else None
        found: dict[str, Any] = {"content_type": _unescape_8bit(content_type), "size": size}
        if filename:
            found["filename"] = _CONTROL.sub("", _unescape_8bit(filename, fallback))[:255]
        if content_id:
            found["content_id"] = content_id
        if disposition:
            found["disposition"] = disposition
        yield found


def _safe(getter: Any, *args: Any) -> Any:
    """`getter(*args)`, or None when a header the parser cannot read makes it raise."""
    try:
        return getter(*args)
    except Exception:  # a header parameter the parser cannot read
        return None


def _can_render(message: email.message.Message) -> bool:
    try:
        message.as_bytes()
    except Exception:  # an embedded message that cannot be serialised again: its size stays unknown
        return False
    return True


def _occurred_at(headers: _Headers) -> dt.datetime:
    """`Date`, else the newest `Received` date, else now; always aware, in UTC."""
    when = _parse_date(headers.raw("Date"))
    if when is not None:
        return when
    received = [_parse_date(value.rpartition(";")[2]) for name, value in headers.items if name.lower() == "received"]
    dates = [d for d in received if d is not None]
    return max(dates) if dates else utc_now()


def _parse_date(value: str) -> dt.datetime | None:
    value = _FOLD.sub(" ", value or "").strip()
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": the zone is unknown; read it as UTC
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


def _automated(message: email.message.EmailMessage, headers: _Headers, sender: str) -> str:
    """Why the message looks machine-sent (it must not reopen a conversation or get an auto-reply), or ""."""
    auto_submitted = headers.raw("Auto-Submitted").strip().lower()
    if auto_submitted and not auto_submitted.startswith("no"):
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress"):
        if headers.raw(name).strip():
            return f"{name}: {headers.raw(name).strip()}"
    precedence = headers.raw("Precedence").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    if message.get_content_type() == "multipart/report":
        return "delivery or disposition report"
    if sender.partition("@")[0] in ("mailer-daemon", "postmaster"):
        return f"sent by {sender}"
    return ""


def _quote(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string."""
    if any(ch in mailbox for ch in "\r\n\x00"):
        raise PermanentError(f"email: mailbox name {mailbox!r} is not valid")
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: Any) -> str:
    """What an IMAP server answered, as text."""
    if isinstance(data, list) and data:
        data = data[0]
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _imap_call(function: Any, imap: imaplib.IMAP4, *args: Any) -> Any:
    """Run one IMAP step; a lost connection, a timeout or a refused command is TransientError."""
    try:
        return function(imap, *args)
    except imaplib.IMAP4.abort as exc:
        raise TransientError(f"email: IMAP connection lost: {exc}") from None
    except imaplib.IMAP4.error as exc:
        raise TransientError(f"email: IMAP command failed: {exc}") from None
    except OSError as exc:
        raise TransientError(f"email: IMAP connection failed: {exc}") from None


def _search_after(imap: imaplib.IMAP4, last_uid: int) -> list[int]:
    """The UIDs above `last_uid`, ascending (`n:*` also names the last message when none is above n)."""
    status, data = imap.uid("SEARCH", f"UID {last_uid + 1}:*")
    if status != "OK":
        raise TransientError(f"email: IMAP UID SEARCH failed: {_said(data)}")
    found = {int(token) for line in data if isinstance(line, bytes) for token in line.split() if token.isdigit()}
    return sorted(uid for uid in found if uid > last_uid)


def _search_message_id(imap: imaplib.IMAP4, message_id: str) -> list[int]:
    status, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"<{message_id}>"')
    if status != "OK":
        raise TransientError(f"email: IMAP UID SEARCH failed: {_said(data)}")
    return sorted({int(token) for line in data if isinstance(line, bytes) for token in line.split() if token.isdigit()})


def _fetch_messages(imap: imaplib.IMAP4, uids: list[int]) -> list[tuple[int, bytes]]:
    """(uid, raw message) for the given UIDs, in UID order; expunged ones are simply missing."""
    status, data = imap.uid("FETCH", ",".join(str(uid) for uid in uids), "(UID BODY.PEEK[])")
    if status != "OK":
        raise TransientError(f"email: IMAP UID FETCH failed: {_said(data)}")
    found: dict[int, bytes] = {}
    for index, item in enumerate(data):
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        match = re.search(rb"UID (\d+)", item[0])
        if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
            match = re.search(rb"UID (\d+)", data[index + 1])  # UID sent after the literal
        if match is not None and isinstance(item[1], bytes):
            found[int(match.group(1))] = item[1]
    return sorted(found.items())


def _smtp_step(what: str, call: Any, accepted: tuple[int, ...]) -> tuple[int, bytes]:
    """One SMTP command before the message data: nothing has been sent yet, so failures are safe to retry."""
    try:
        code, answer = call()
    except smtplib.SMTPResponseException as exc:
        raise _smtp_refusal(what, exc.smtp_code, exc.smtp_error) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(f"email: SMTP {what} failed before sending: {exc}") from None
    if code not in accepted:
        raise _smtp_refusal(what, code, answer)
    return code, answer


def _smtp_refusal(what: str, code: int, answer: bytes | str) -> TransientError | PermanentError:
    """An SMTP refusal: 4xx is worth retrying, 5xx is final."""
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    if 400 <= code < 500:
        return TransientError(f"email: SMTP {what} refused for now: {code} {text}")
    return PermanentError(f"email: SMTP {what} refused: {code} {text}")


# -- sender authentication --------------------------------------------------------------------------------

UNVERIFIED_SCOPE = "unverified"
_COMMENT = re.compile(r"\([^()]*\)")


def _results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """An Authentication-Results value -> (authserv-id, [(method, result, {property: value})])."""
    for _ in range(5):  # comments nest rarely, and never deeply in practice
        value = _COMMENT.sub(" ", value)
    authserv, *statements = value.split(";")
    found = []
    for statement in statements:
        words = statement.split()
        if not words or "=" not in words[0]:
            continue
        method, _, result = words[0].partition("=")
        properties = {}
        for word in words[1:]:
            key, eq, prop = word.partition("=")
            if eq:
                properties[key.lower()] = prop.strip('"').lower()
        found.append((method.lower(), result.lower(), properties))
    return (authserv.split() or [""])[0].lower(), found


def _aligned(domain: str, from_domain: str) -> bool:
    domain = domain.rpartition("@")[2].strip(".").lower()
    return bool(domain) and (domain == from_domain or from_domain.endswith("." + domain)
                             or domain.endswith("." + from_domain))


def sender_authentication(values: list[str], from_address: str, trusted: frozenset[str]) -> str:
    """`pass`, `fail` or `none` by the topmost Authentication-Results of a trusted server, `unchecked` when no
    server is trusted (the module docstring says what counts)."""
    if not trusted:
        return "unchecked"
    from_domain = from_address.rpartition("@")[2].lower()
    for value in values:
        authserv, results = _results(value)
        if authserv not in trusted:
            continue
        verdicts = {method: result for method, result, _ in reversed(results)}
        if verdicts.get("dmarc") in ("pass", "fail"):
            return verdicts["dmarc"]
        for method, result, props in results:
            identity = (props.get("header.d") or props.get("header.i", "")) if method == "dkim" else (
                props.get("smtp.mailfrom") or props.get("smtp.mail", "")) if method == "spf" else ""
            if result == "pass" and identity and _aligned(identity, from_domain):
                return "pass"
        return "fail" if "fail" in (verdicts.get("dkim"), verdicts.get("spf")) else "none"
    return "none"
