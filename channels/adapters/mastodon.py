"""Mastodon REST: statuses, mention notifications and thread contexts into `InboundEvent`s.

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
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser
from typing import Any

from .base import Author, BaseAdapter, Direction, EventKind, InboundEvent, PayloadError, decode_payload
from .timeparse import parse_iso8601, utc_now

PLATFORM = "mastodon"
_SKIPPED_TAGS = frozenset({"script", "style", "template", "noscript", "iframe", "object", "svg", "math"})
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"})
_TAG_SHAPED = re.compile(r"<[A-Za-z!/?][^<>]*(?:>|$)")


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


class MastodonAdapter(BaseAdapter):
    """A Mastodon account: `config["instance"]` is our instance host, `external_id` our account id there."""

    platform = PLATFORM

    @property
    def instance(self) -> str:
        host = _instance_host(self.config.get("instance"))
        if not host:
            raise PayloadError('MastodonAdapter needs config["instance"] (our instance host, e.g. "mastodon.social")')
        return host

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn a status, notification, list of either, or a context into events."""
        body = decode_payload(payload, "Mastodon")
        instance = self.instance
        if isinstance(body, dict) and ("ancestors" in body or "descendants" in body):
            return self._context(body, instance)
        if isinstance(body, dict):
            return self._item(body, "payload", instance)
        if isinstance(body, list):
            return [event for i, item in enumerate(body) for event in self._item(item, f"item[{i}]", instance)]
        raise PayloadError(f"Mastodon payload must be a JSON object or list, got {type(body).__name__}")

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
                return []  # favourite, reblog, follow, poll, update, ...: not a message to us
            status = item.get("status")
            if status is None:
                return []  # the mentioning status was deleted or is not visible to us
            return self._status(status, f"{where}.status", instance)
        if "id" in item and ("content" in item or "text" in item):
            if "account" not in item and "content" not in item:
                return []  # GET /statuses/:id/source: the editable source, not an event
            return self._status(item, where, instance)
        raise PayloadError(f"Mastodon {where} is neither a status (id + content) nor a notification (type + account)")

    def _status(self, status: Any, where: str, instance: str, *, root: str = "") -> list[InboundEvent]:
        if not isinstance(status, dict):
            raise PayloadError(f"Mastodon {where} is not an object")
        if not status.get("id"):
            raise PayloadError(f"Mastodon {where} has no id")
        if status.get("reblog"):
            return []  # a boost wraps someone else's status; it is not a message
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
