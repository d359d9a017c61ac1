"""The demo channel: replays real recorded payloads (channels/recorded/) one page per poll, through the real parsers.

Every page is a file someone else recorded from the live platform (see channels/recorded/README.md), parsed
by that platform's own adapter, in this fixed order: X v2 (mentions, a reply thread, a DM), a Facebook page
(a visitor post, comment add / edit / remove, a Messenger message and its edit), Telegram private chats
(text, photo, voice, an edit), and a Mastodon thread plus a mention notification, an edited status and a
delete. One demo channel account carries all of them, so the demo namespaces every id that ingest keys on
(`external_id`, `thread_key`, `reply_to_id`) as `"<platform>:<value>"`; the authors stay the real platform's
(`author.platform` is `x`, `facebook`, ...), so the identities are real ones. `event.platform` also stays
the real platform.

The cursor is `{"position": n}`: the index of the next page. Past the last page a poll returns nothing.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from .base import BaseAdapter, FetchResult, InboundEvent, PayloadError
from .facebook import FacebookAdapter
from .mastodon import MastodonAdapter
from .telegram import TelegramAdapter
from .x import XAdapter

RECORDED_DIR = pathlib.Path(__file__).resolve().parent.parent / "recorded"
_ADAPTERS: dict[str, type[BaseAdapter]] = {
    "x": XAdapter, "facebook": FacebookAdapter, "telegram": TelegramAdapter, "mastodon": MastodonAdapter,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One replayed page: a recorded file (and, for an `.exchanges.json`, which response) and how to parse it."""

    platform: str
    path: str
    exchange: int | None = None
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def body(self) -> Any:
        """The recorded response body, exactly as the platform sent it."""
        data = json.loads((RECORDED_DIR / self.path).read_bytes())
        if self.exchange is not None:
            data = data["exchanges"][self.exchange]["response_body"]
        return data


MASTODON_SOCIAL = {"instance": "mastodon.social"}
MASTODON_LOCAL = {"instance": "localhost:3000"}  # the Mastodon 4.6 server the Mastodon.py suite recorded against

PAGES: tuple[Page, ...] = (
    Page("x", "python-twitter/x_api_v2/users_mentions_with_created_at.json"),
    Page("x", "python-twitter/x_api_v2/search_recent_reply_thread_with_includes.json"),
    Page("x", "python-twitter/x_api_v2/dm_events_by_conversation.json"),
    Page("facebook", "restfb/facebook_page_feed/feed-post-add-25.json"),
    Page("facebook", "restfb/facebook_page_feed/feed-comment-add-211.json"),
    Page("facebook", "restfb/facebook_page_feed/feed-comment-edited-25.json"),
    Page("facebook", "restfb/facebook_page_feed/feed-comment-remove-25.json"),
    Page("facebook", "restfb/messenger/messaging-message-basic.json"),
    Page("facebook", "restfb/messenger/messaging-message-edits.json"),
    Page("telegram", "nutgram/telegram_bot_api/text.json"),
    Page("telegram", "nutgram/telegram_bot_api/message.json"),
    Page("telegram", "nutgram/telegram_bot_api/photo.json"),
    Page("telegram", "nutgram/telegram_bot_api/voice.json"),
    Page("telegram", "nutgram/telegram_bot_api/edited_message.json"),
    Page("mastodon", "mastodon-py/mastodon_social/status_context.json", config=MASTODON_SOCIAL),
    # GET /notifications?types[]=mention, then (after the edit page) the DELETE of the mentioning status.
    Page("mastodon", "mastodon-py/local_instance/notifications_mentions_only.exchanges.json", 1, MASTODON_LOCAL),
    Page("mastodon", "mastodon-py/local_instance/status_edit.exchanges.json", 3, MASTODON_LOCAL),
    Page("mastodon", "mastodon-py/local_instance/notifications_mentions_only.exchanges.json", 3, MASTODON_LOCAL),
)


def _namespaced(platform: str, value: str) -> str:
    return f"{platform}:{value}" if value else ""


def namespace(event: InboundEvent) -> InboundEvent:
    """The event with its ids prefixed by its platform, so that ids of different platforms never collide."""
    return dataclasses.replace(
        event,
        external_id=_namespaced(event.platform, event.external_id),
        thread_key=_namespaced(event.platform, event.thread_key),
        reply_to_id=_namespaced(event.platform, event.reply_to_id),
    )


def _page_adapter(page: Page, body: Any) -> BaseAdapter:
    """The real platform adapter for a page; a Facebook page's id is taken from the payload."""
    external_id = ""
    if page.platform == "facebook" and isinstance(body, dict) and body.get("entry"):
        external_id = str(body["entry"][0].get("id", ""))
    return _ADAPTERS[page.platform](external_id=external_id, config=page.config)


class DemoAdapter(BaseAdapter):
    """A pollable channel that replays `PAGES`, one per `fetch`."""

    platform = "demo"
    pollable = True

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """The page at `cursor["position"]` (0 when absent), parsed and namespaced; no network."""
        position = (cursor or {}).get("position", 0)
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise PayloadError(f"demo cursor position must be a non-negative integer, got {position!r}")
        if position >= len(PAGES):
            return FetchResult(events=[], cursor={"position": position}, has_more=False)
        page = PAGES[position]
        body = page.body()
        events = [namespace(event) for event in _page_adapter(page, body).parse(body)]
        return FetchResult(events=events, cursor={"position": position + 1}, has_more=position + 1 < len(PAGES))

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Re-parse a stored demo page: `{"platform": "x|facebook|...", "body": <page>, "config": {...}}`.

        `config` is optional (the Mastodon pages need `{"instance": ...}`); the ids come back namespaced.
        """
        if not isinstance(payload, Mapping) or payload.get("platform") not in _ADAPTERS or "body" not in payload:
            raise PayloadError('demo payload must be {"platform": "x|facebook|telegram|mastodon", "body": ...}')
        page = Page(payload["platform"], "", config=payload.get("config") or {})
        return [namespace(event) for event in _page_adapter(page, payload["body"]).parse(payload["body"])]
