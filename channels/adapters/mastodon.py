"""Mastodon: statuses, mention notifications, thread contexts, admin webhooks and stream bodies into
`InboundEvent`s; polling of mention notifications; replies.

What a body becomes (PLATFORMS.md section 5):

- Accepted shapes: a status, a list of statuses, a notification or a list of them (only `type == "mention"`;
  its `status` may be null, then there is nothing to record), or a context `{ancestors, descendants}`.
  A `/source` body (`{id, text, spoiler_text}`, no account) and boosts (`reblog` set) give no events.
- Identity: ids are per server, so the author's scope is OUR instance host (`config["instance"]`, e.g.
  `mastodon.social`), the external id is the account `id` as our instance gives it, and the handle is the
  full `acct`: `user@domain` for remote accounts, `user@<our instance>` for local ones (whose `acct` is
  bare). An empty `display_name` falls back to the username, as Mastodon itself shows it.
- Text: `content` is HTML; it becomes plain text with the standard library (`html.parser`): `<br>` is a
  newline, paragraphs are separated by a blank line (as Mastodon's own plain-text rendering does), entities
  are unescaped, `<script>` / `<style>` bodies and every tag are dropped, and finally any tag-shaped text
  left (`<x...>`, e.g. from `&lt;b&gt;` or a truncated tag) is removed, so no markup ever survives.
- Kind: `visibility == "direct"` -> `dm`; a status with `in_reply_to_id` -> `reply`; else `mention`. Our
  own top-level status (account id = the adapter's `external_id`) is `post`, direction `out`.
- Thread key: a pure parser cannot walk `in_reply_to_id` chains, so a lone status is keyed by its own `id`
  when it replies to nothing, else by `in_reply_to_id` (the parent: exact for direct replies to a root,
  a sub-thread for deeper ones). A context payload knows the chain: every status in it gets the first
  ancestor's id (or, with no ancestors, the status the first descendant answers: the context's own root).
- Edits: a status with `edited_at` gives the create (at `created_at`, with the latest text, the only one we
  have) AND an `edit` at `edited_at` with the same text. Both are deterministic, so re-ingesting the same
  body is a no-op (a create for a known id changes nothing, an edit no newer than the stored one neither),
  and a status first seen before its edit still gets its `edited_at` when re-polled.
- Deletes: the `DELETE /statuses/:id` response is the status with `text` instead of `content` -> `delete`,
  at the receive time (Mastodon gives no delete time).
- Admin webhooks `{"event", "created_at", "object"}`: `status.created` and `status.updated` give the status's
  events (an update always carries an `edit`: at `edited_at`, else at the webhook's `created_at`); account
  and report events are skipped. An admin webhook reports every status of the instance, so once
  `external_id` (our account id) is set only statuses by us, mentioning us or answering us are kept.
- A stored streaming body (Server-Sent Events): `update` and `status.update` carry a status (kept as for
  webhooks), `notification` a notification, `delete` a bare status id (a `delete` at the receive time);
  `conversation`, filter and announcement events are skipped.

Network:

- Base URL: `config["api_base_url"]` (a test server) or `https://<config["instance"]>`; an instance that is
  `localhost` or a loopback, private, link-local or otherwise non-public IP literal is refused.
- Polling: `GET /api/v1/notifications?types[]=mention&limit=<page_size>&min_id=<cursor>`. `min_id` pages
  forward from the cursor without gaps (`since_id` answers with the newest page and silently skips what lies
  between when more than a page arrived). While pages come back full, the `rel="prev"` link of the `Link`
  header (`min_id=<newest of the page>`) is followed, up to MAX_PAGES_PER_FETCH pages in one fetch, then
  `has_more`. The first poll (no cursor) takes the newest page only: no backfill of the account's history.
  The cursor is `{"min_id": <newest notification id returned>}`. A 429's `X-RateLimit-Reset` (ISO 8601) is
  the time to come back.
- Replies: `POST /api/v1/statuses` with `Idempotency-Key` = the reply's idempotency key. Mastodon keeps a key
  for about an hour and answers a repeat with the status it created the first time, so `find_sent` repeats
  the request. The reply starts with the recipient's mention (`@user` for local accounts, `@user@domain` for
  remote ones) unless the agent already wrote it; a direct message without a recipient handle is refused,
  because Mastodon delivers a direct status only to the accounts it mentions. Visibility: `direct` for a
  private reply; otherwise `config["reply_visibility"]`, by default `unlisted` (shown in the thread and to the
  customer, kept off public timelines and hashtags; inheriting the customer's visibility would need one more
  request per reply and would publish answers to public posts on the local and federated timelines).
  Longer text than the instance allows (`max_reply_length`: 500, or `config["max_characters"]` /
  `config["configuration"]["statuses"]["max_characters"]` from the instance's `/api/v2/instance`) is refused
  before sending, counted as Mastodon counts (a link is 23 characters, a remote mention only its `@user`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from typing import Any

import httpx

from .base import (
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
    decode_payload,
    hmac_digest,
)
from .timeparse import parse_iso8601, utc_now

PLATFORM = "mastodon"
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math"})
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"})
_TAG_SHAPED = re.compile(r"<[A-Za-z!/?][^<>]*(?:>|$)")

# Mention notifications asked for per request (Mastodon's default; it allows up to 80).
PAGE_SIZE = 40
# Pages one fetch follows through `Link: <...>; rel="prev"` before it hands back with `has_more`.
MAX_PAGES_PER_FETCH = 5
DEFAULT_MAX_CHARACTERS = 500
REPLY_VISIBILITIES = frozenset({"public", "unlisted", "private"})
WEBHOOK_STATUS_EVENTS = frozenset({"status.created", "status.updated"})
# Mastodon counts every link as 23 characters and a remote mention as its `@user` part only.
_URL_LENGTH = 23
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)
_REMOTE_MENTION = re.compile(r"(?<![/\w])@(\w+)@[\w.-]*\w", re.ASCII)
_SSE_FIELDS = ("event:", "data:", "id:", "retry:")


class _PlainText(HTMLParser):
    """Collects the text of an HTML fragment: line breaks for `<br>` and blocks, nothing of any tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag == "li":
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Mastodon `content` HTML as plain text: no tags, entities unescaped, `<br>`/paragraphs as newlines."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    text = _TAG_SHAPED.sub("", "".join(parser.parts))
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _instance_host(value: Any) -> str:
    """`mastodon.social` from `mastodon.social`, `https://mastodon.social/` or `localhost:3000`."""
    text = str(value or "").strip()
    if "//" in text:
        text = urllib.parse.urlsplit(text).netloc
    return text.strip("/").lower()


def _is_internal_host(host: str) -> bool:
    """True for `localhost` and for IP literals that are not public (loopback, private, link-local, ...)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global


def _id_order(value: str) -> tuple[int, str]:
    """Sort key for Mastodon ids (decimal strings of any length): by length, then by digits."""
    return len(value), value


def status_length(text: str) -> int:
    """The length Mastodon counts for a status: links as 23 characters, remote mentions as `@user`."""
    return len(_REMOTE_MENTION.sub(r"@\1", _URL.sub("x" * _URL_LENGTH, text)))


def _max_characters(config: Mapping[str, Any]) -> int:
    """The instance's status length limit from config (flat or as `/api/v2/instance` gives it), else 500."""
    value = config.get("max_characters")
    configuration = config.get("configuration")
    if value is None and isinstance(configuration, Mapping) and isinstance(configuration.get("statuses"), Mapping):
        value = configuration["statuses"].get("max_characters")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_MAX_CHARACTERS


def _sse_events(text: str) -> Iterator[tuple[str, str]]:
    """(event name, data) for each event of a Server-Sent-Events body; comments and empty events are dropped."""
    name, data = "", []
    for line in [*text.splitlines(), ""]:
        if not line:
            if data:
                yield name or "message", "\n".join(data)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)


def _looks_like_sse(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return first.startswith(":") or first.startswith(_SSE_FIELDS)


class MastodonAdapter(BaseAdapter):
    """A Mastodon account: `config["instance"]` is our instance host, `external_id` our account id there.

    `credentials["access_token"]` is the account's OAuth token (polling and replies); `webhook_secret["secret"]`
    the admin webhook's signing secret.
    """

    platform = PLATFORM
    pollable = True
    max_reply_length = DEFAULT_MAX_CHARACTERS
    # Mastodon keeps an Idempotency-Key for about an hour; after that a repeat could post twice.
    find_sent_within = dt.timedelta(minutes=55)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_reply_length = _max_characters(self.config)

    @property
    def instance(self) -> str:
        host = _instance_host(self.config.get("instance"))
        if not host:
            raise PayloadError('MastodonAdapter needs config["instance"] (our instance host, e.g. "mastodon.social")')
        return host

    # -- parsing ------------------------------------------------------------------------------------------

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn a status, notification, list of either, context, admin webhook or stream body into events."""
        if isinstance(payload, bytes | bytearray | memoryview):
            payload = bytes(payload)
            text = payload.decode("utf-8", "replace")
        else:
            text = payload if isinstance(payload, str) else ""
        if text and _looks_like_sse(text):
            return self._stream(text, self.instance)
        body = decode_payload(payload, "Mastodon")
        instance = self.instance
        if isinstance(body, dict) and "event" in body and "object" in body:
            return self._webhook(body, instance)
        if isinstance(body, dict) and ("ancestors" in body or "descendants" in body):
            return self._context(body, instance)
        if isinstance(body, dict):
            return self._item(body, "payload", instance)
        if isinstance(body, list):
            return [event for i, item in enumerate(body) for event in self._item(item, f"item[{i}]", instance)]
        raise PayloadError(f"Mastodon payload must be a JSON object or list, got {type(body).__name__}")

    def _webhook(self, body: dict[str, Any], instance: str) -> list[InboundEvent]:
        event = body.get("event")
        where = f"webhook {event!r}"
        if not isinstance(event, str) or event not in WEBHOOK_STATUS_EVENTS:
            self.skip(where, "not a status event (account and report events are not interactions)")
            return []
        status = body.get("object")
        if not isinstance(status, dict):
            raise PayloadError(f"Mastodon {where} object is not a status")
        if not self._concerns_us(status):
            self.skip(f"{where} status {status.get('id')}", "neither by, mentioning nor answering this account")
            return []
        events = self._status(status, f"{where}.object", instance)
        if event == "status.updated" and events and all(e.kind != EventKind.EDIT for e in events) \
                and events[0].kind != EventKind.DELETE:
            events.append(dataclasses.replace(events[0], kind=EventKind.EDIT,
                                              occurred_at=parse_iso8601(body.get("created_at"))))
        return events

    def _stream(self, text: str, instance: str) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for index, (name, data) in enumerate(_sse_events(text)):
            where = f"stream[{index}] {name!r}"
            if name in ("update", "status.update"):
                status = _json_data(data, where)
                if not self._concerns_us(status):
                    self.skip(f"{where} status {status.get('id')}", "neither by, mentioning nor answering this account")
                    continue
                events.extend(self._status(status, where, instance))
            elif name == "notification":
                events.extend(self._item(_json_data(data, where), where, instance))
            elif name == "delete":
                status_id = data.strip()
                if not status_id or not status_id.isdigit():
                    raise PayloadError(f"Mastodon {where} data is not a status id: {data[:40]!r}")
                events.append(InboundEvent(platform=PLATFORM, external_id=status_id, kind=EventKind.DELETE,
                                           occurred_at=utc_now(), raw={"event": "delete", "id": status_id}))
            else:
                self.skip(where, "not a status, a mention or a delete")
        return events

    def _concerns_us(self, status: dict[str, Any]) -> bool:
        """Whether a status reported for the whole instance is ours, mentions us or answers us."""
        if not self.external_id:
            return True
        account = status.get("account") if isinstance(status.get("account"), dict) else {}
        mentions = status.get("mentions") if isinstance(status.get("mentions"), list) else []
        mentioned = {str(m.get("id")) for m in mentions if isinstance(m, dict)}
        return self.external_id in {str(account.get("id")), str(status.get("in_reply_to_account_id")), *mentioned}

    def _context(self, body: dict[str, Any], instance: str) -> list[InboundEvent]:
        ancestors, descendants = body.get("ancestors") or [], body.get("descendants") or []
        if not isinstance(ancestors, list) or not isinstance(descendants, list):
            raise PayloadError("Mastodon context `ancestors` and `descendants` must be lists")
        root = ""
        if ancestors:
            if not isinstance(ancestors[0], dict) or not ancestors[0].get("id"):
                raise PayloadError("Mastodon context ancestors[0] has no id")
            root = str(ancestors[0]["id"])
        elif descendants and isinstance(descendants[0], dict) and descendants[0].get("in_reply_to_id"):
            root = str(descendants[0]["in_reply_to_id"])
        events: list[InboundEvent] = []
        for name, statuses in (("ancestors", ancestors), ("descendants", descendants)):
            for i, status in enumerate(statuses):
                events.extend(self._status(status, f"{name}[{i}]", instance, root=root))
        return events

    def _item(self, item: Any, where: str, instance: str) -> list[InboundEvent]:
        if not isinstance(item, dict):
            raise PayloadError(f"Mastodon {where} is not an object")
        if "type" in item and "account" in item and "content" not in item and "text" not in item:
            if item["type"] != "mention":
                self.skip(f"{where} notification {item.get('id')}", f"type {item['type']!r} is not a mention")
                return []
            status = item.get("status")
            if status is None:
                self.skip(f"{where} notification {item.get('id')}", "its status was deleted or is not visible")
                return []
            return self._status(status, f"{where}.status", instance)
        if "id" in item and ("content" in item or "text" in item):
            if "account" not in item and "content" not in item:
                self.skip(f"{where} {item.get('id')}", "a status source (GET /statuses/:id/source), not an event")
                return []
            return self._status(item, where, instance)
        raise PayloadError(f"Mastodon {where} is neither a status (id + content) nor a notification (type + account)")

    def _status(self, status: Any, where: str, instance: str, *, root: str = "") -> list[InboundEvent]:
        if not isinstance(status, dict):
            raise PayloadError(f"Mastodon {where} is not an object")
        if not status.get("id"):
            raise PayloadError(f"Mastodon {where} has no id")
        if status.get("reblog"):
            self.skip(f"{where} {status['id']}", "a boost of someone else's status")
            return []
        status_id = str(status["id"])
        if not status.get("created_at"):
            raise PayloadError(f"Mastodon {where} has no created_at")
        author = self._author(status.get("account"), where, instance)
        parent = str(status.get("in_reply_to_id") or "")
        outbound = bool(self.external_id and author.external_id == self.external_id)
        if status.get("visibility") == "direct":
            kind = EventKind.DIRECT_MESSAGE
        elif parent:
            kind = EventKind.REPLY
        elif outbound:
            kind = EventKind.POST
        else:
            kind = EventKind.MENTION
        common = {
            "platform": PLATFORM,
            "external_id": status_id,
            "author": author,
            "thread_key": root or parent or status_id,
            "reply_to_id": parent,
            "direction": Direction.OUTBOUND if outbound else Direction.INBOUND,
            "raw": status,
        }
        if "content" not in status:  # DELETE /statuses/:id answers with `text` (the source) instead
            return [InboundEvent(kind=EventKind.DELETE, occurred_at=utc_now(), **common)]
        content = status.get("content") or ""
        if not isinstance(content, str):
            raise PayloadError(f"Mastodon {where}.content is not a string")
        fields = {**common, "text": html_to_text(content), "attachments": _attachments(status, where)}
        events = [InboundEvent(kind=kind, occurred_at=parse_iso8601(status["created_at"]), **fields)]
        if status.get("edited_at"):
            events.append(InboundEvent(kind=EventKind.EDIT, occurred_at=parse_iso8601(status["edited_at"]), **fields))
        return events

    @staticmethod
    def _author(account: Any, where: str, instance: str) -> Author:
        if not isinstance(account, dict) or not account.get("id"):
            raise PayloadError(f"Mastodon {where}.account is missing or has no id")
        acct = str(account.get("acct") or account.get("username") or "")
        if acct and "@" not in acct:
            acct = f"{acct}@{instance}"
        return Author(
            platform=PLATFORM,
            external_id=str(account["id"]),
            scope=instance,
            handle=acct,
            display_name=str(account.get("display_name") or account.get("username") or ""),
            avatar_url=str(account.get("avatar") or ""),
            profile_url=str(account.get("url") or ""),
            raw=account,
        )

    # -- network ------------------------------------------------------------------------------------------

    def instance_url(self) -> str:
        """`https://<instance>`; PermanentError for a missing, non-https or non-public instance."""
        value = str(self.config.get("instance") or "").strip()
        if not value:
            raise PermanentError('mastodon: config["instance"] is missing')
        parts = urllib.parse.urlsplit(value if "//" in value else f"https://{value}")
        if parts.scheme != "https":
            raise PermanentError(f"mastodon: instance {value!r} must be reached over https")
        if not parts.hostname or "@" in parts.netloc or _is_internal_host(parts.hostname):
            raise PermanentError(f"mastodon: instance {value!r} is not a public host name")
        return f"https://{parts.netloc.lower()}"

    def http(self) -> httpx.Client:
        """The base client, aimed at our instance unless `config["api_base_url"]` overrides it."""
        base = "" if self.config.get("api_base_url") else self.instance_url()
        client = super().http()
        if base:
            client.base_url = base
        return client

    def _auth(self) -> dict[str, str]:
        token = self.credentials.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentError('mastodon: credentials["access_token"] is missing')
        return {"Authorization": f"Bearer {token}"}

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """Mastodon's `X-RateLimit-Reset` (ISO 8601), else `Retry-After`, else a minute from now."""
        value = response.headers.get("x-ratelimit-reset", "")
        if value:
            try:
                return parse_iso8601(value)
            except PayloadError:
                pass
        return super().rate_limit_reset(response)

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """New mention notifications after `cursor["min_id"]`, following `rel="prev"` links while pages are full."""
        cursor = dict(cursor or {})
        start = str(cursor.get("min_id") or cursor.get("since_id") or "")
        if start and not start.isdigit():
            raise PayloadError(f"mastodon cursor min_id must be a notification id, got {start!r}")
        limit = self._page_size()
        headers = self._auth()
        events: list[InboundEvent] = []
        newest, min_id, pages, has_more = start, start, 0, False
        with self.http() as client:
            while True:
                params: dict[str, Any] = {"types[]": "mention", "limit": limit}
                if min_id:
                    params["min_id"] = min_id
                response = self.request(client, "GET", "/api/v1/notifications", params=params, headers=headers)
                items = _json_body(response, "GET /api/v1/notifications")
                if not isinstance(items, list):
                    raise PayloadError("Mastodon GET /api/v1/notifications did not answer with a list")
                events.extend(self.parse(items))
                ids = [str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")]
                newest = max([newest, *ids], key=_id_order) if ids else newest
                pages += 1
                following = _link_param(response, "prev", "min_id")
                if not (start and len(items) >= limit and following and _id_order(following) > _id_order(min_id)):
                    break
                min_id = following
                if pages >= MAX_PAGES_PER_FETCH:
                    has_more = True
                    break
        return FetchResult(events=events, cursor={"min_id": newest} if newest else cursor, has_more=has_more)

    def _page_size(self) -> int:
        value = self.config.get("page_size", PAGE_SIZE)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 80:
            raise PermanentError(f"mastodon: config page_size must be an integer from 1 to 80, got {value!r}")
        return value

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Admin webhooks: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` with `webhook_secret["secret"]`."""
        secret = self.secret("secret")
        check_signature(request.header("X-Hub-Signature"), hmac_digest(secret, request.body), prefix="sha256=")

    def send(self, message: OutboundMessage) -> SendResult:
        """Post the reply as a status, with the reply's idempotency key as `Idempotency-Key`."""
        if not message.idempotency_key:
            raise PermanentError("mastodon: a reply needs an idempotency key")
        body: dict[str, Any] = {"status": self._status_text(message), "visibility": self._visibility(message)}
        if message.reply_to_id:
            body["in_reply_to_id"] = message.reply_to_id
        headers = {**self._auth(), "Idempotency-Key": message.idempotency_key}
        with self.http() as client:
            response = self.request(client, "POST", "/api/v1/statuses", sending=True, json=body, headers=headers)
        try:
            status = response.json()
        except ValueError:
            raise OutcomeUnknown("mastodon: the status was accepted but its answer is not JSON") from None
        if not isinstance(status, dict) or not status.get("id"):
            raise OutcomeUnknown("mastodon: the status was accepted but its answer has no id")
        status_id = str(status["id"])
        return SendResult(external_id=status_id, raw=status, thread_key=message.thread_key or status_id)

    def find_sent(self, message: OutboundMessage) -> SendResult | None:
        """Repeat the post with the same `Idempotency-Key`: Mastodon answers with the status the first attempt
        created, or posts it now if that attempt never arrived; either way the reply is then posted once.

        Mastodon keeps keys for about an hour: a reply whose first attempt is older than that must not reach
        this method (the caller decides on such replies with an agent).
        """
        return self.send(message)

    def _status_text(self, message: OutboundMessage) -> str:
        text = message.text.strip()
        if not text:
            raise PermanentError("mastodon: the reply is empty")
        mention = self._mention(message)
        if mention and not re.match(re.escape(mention) + r"(?![\w@.-])", text, re.IGNORECASE):
            text = f"{mention} {text}"
        if not mention and message.private:
            raise PermanentError("mastodon: a direct message needs the recipient's handle (Mastodon delivers a "
                                 "direct status only to the accounts it mentions)")
        length = status_length(text)
        if self.max_reply_length is not None and length > self.max_reply_length:
            raise PermanentError(f"mastodon: the reply counts {length} characters; the instance allows "
                                 f"{self.max_reply_length}")
        return text

    def _mention(self, message: OutboundMessage) -> str:
        """`@user` for a local recipient, `@user@domain` for a remote one, "" without a recipient handle."""
        recipient = message.recipient
        if recipient is None or (self.external_id and recipient.external_id == self.external_id):
            return ""
        handle = recipient.handle.strip().lstrip("@")
        if not handle:
            return ""
        user, _, domain = handle.partition("@")
        if not domain or domain.lower() == _instance_host(self.config.get("instance")):
            return f"@{user}"
        return f"@{user}@{domain}"

    def _visibility(self, message: OutboundMessage) -> str:
        if message.private:
            return "direct"
        visibility = self.config.get("reply_visibility") or "unlisted"
        if visibility not in REPLY_VISIBILITIES:
            raise PermanentError(f"mastodon: config reply_visibility {visibility!r} is not one of "
                                 f"{', '.join(sorted(REPLY_VISIBILITIES))}")
        return visibility


def _json_body(response: httpx.Response, what: str) -> Any:
    """A response's JSON; a 2xx that is not JSON (a proxy's error page) is worth retrying."""
    try:
        return response.json()
    except ValueError:
        raise TransientError(f"mastodon: {what} answered {response.status_code} without JSON") from None


def _json_data(data: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise PayloadError(f"Mastodon {where} data is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"Mastodon {where} data is not an object")
    return value


def _link_param(response: httpx.Response, rel: str, name: str) -> str:
    """One query parameter of the `Link` header's `rel` URL (`min_id` of `rel="prev"`), or ""."""
    link = response.links.get(rel) or {}
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(link.get("url", "")).query).get(name) or [""]
    return values[0] if values[0].isdigit() else ""


def _attachments(status: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """`media_attachments` summarised: id, type, url, preview_url, remote_url, description."""
    media = status.get("media_attachments") or []
    if not isinstance(media, list):
        raise PayloadError(f"Mastodon {where}.media_attachments must be a list")
    found = []
    for item in media:
        if not isinstance(item, dict):
            raise PayloadError(f"Mastodon {where}.media_attachments holds a non-object")
        summary = {"type": str(item.get("type") or ""), "id": str(item.get("id") or "")}
        for key in ("url", "preview_url", "remote_url", "description"):
            if item.get(key):
                summary[key] = item[key]
        found.append(summary)
    return tuple(found)
