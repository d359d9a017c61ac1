"""Instagram (professional accounts, through Meta): webhooks, polled Graph comments and replies.

What a body becomes (PLATFORMS.md section 3):

- Identity: Instagram gives Instagram-scoped ids (IGSID) per professional account, so every author's `scope`
  is OUR Instagram account id: `entry.id` of a webhook, or the adapter's `external_id` for polled pages and
  for Meta's dashboard test deliveries (`entry.id == "0"`). An author whose id is that account is us:
  direction `out`. The handle is the `username`.
- Webhook `{"object": "instagram", "entry": [...]}`; every entry and every change / messaging item is read.
- `field == "comments"` (and `live_comments`): `value{id, text, from{id, username}, media{id}, parent_id?}` ->
  `comment` on the media, or `reply` when `parent_id` names the comment answered. Thread key = the media id
  (old deliveries without `media`: the parent comment, else the comment itself); reply-to = `parent_id`, else
  the media id. The value carries no time, so the entry's `time` is used.
- `field == "mentions"`: only `{comment_id, media_id}` -> a `mention` with that id (or the media id for a
  caption mention), no author and no text: a lookup (`mentioned_comment`) fills them in later.
- Messaging (`messaging[]`), as on Messenger (see `facebook.py`): `message` -> `dm` with thread key
  `igsid:<IGSID>`; echoes (`is_echo`, sent by the account) -> direction `out`; `message_edit` -> `edit`;
  `is_deleted` -> `delete`; `read{mid}` -> a `status` event (`read`) for our message `mid`; reactions,
  postbacks and the rest are skipped. A reply to a story keeps the story as an attachment.
- Graph pages: comments (`GET /{media-id}/comments`: `data[]` of `{id, text, timestamp, from?, username?,
  user?, parent_id?, replies?}`), media with a `comments` edge (our poll), one comment, an `?ids=` map, or
  a `mentioned_comment` / `mentioned_media` lookup (-> `mention`). A comment's author is `from{id,username}`,
  else `user.id` (only given for the account's own comments) with `username`; with neither the author is
  unknown (None). Its media id comes from `media.id`, the enclosing media, or the page's own `paging.next`
  (`/{media-id}/comments?...`); nested `replies.data[]` are `reply` events to their comment.
- Other fields (story_insights, ...) are skipped (`self.skip`).

Sending: a private reply is an Instagram Direct message to the IGSID of an `igsid:` thread (`POST
/me/messages`), or a private reply to a comment (`recipient.comment_id`); a public reply is `POST
/{ig-comment-id}/replies`, or `POST /{ig-media-id}/comments` when the answer is to the media itself.
Polling walks the account's media (`GET /{ig-user-id}/media` with their comments and replies) like the
Facebook feed. Webhook signature, handshake, Graph errors and the poll cursor are Meta's (`MetaAdapter`).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from .base import (
    Author,
    Direction,
    EventKind,
    InboundEvent,
    OutboundMessage,
    PayloadError,
    PermanentError,
    SendResult,
    decode_payload,
)
from .facebook import (
    COMMENT_WINDOW,
    MetaAdapter,
    PollStage,
    as_dict,
    graph_items,
    graph_path,
    meta_id,
    meta_time,
    text_field,
)

PLATFORM = "instagram"
# Instagram Direct: "Message text must be UTF-8 and be a 1000 bytes or less" (Meta, Instagram Messaging,
# "Send a Message"). Comments: 2,200 characters, Instagram's caption and comment limit as third-party API docs
# state it (Meta's IG Comment Replies reference names none).
DM_TEXT_BYTES = 1000
COMMENT_TEXT_LIMIT = 2200
_USERNAME = re.compile(r"[A-Za-z0-9._]{1,30}")
_MEDIA_KEYS = ("comments", "media_type", "media_product_type", "caption", "permalink", "media_url")


class InstagramAdapter(MetaAdapter):
    """An Instagram professional account: `external_id` is its Instagram user id (the scope of its IGSIDs)."""

    platform = PLATFORM
    label = "Instagram"
    thread_prefix = "igsid"
    pollable = True
    # The stricter of the two limits above; `send` checks each kind of reply against its own.
    max_reply_length = DM_TEXT_BYTES

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one Instagram webhook body, Graph comment page, comment, media or mention lookup into events."""
        body = decode_payload(payload, "Instagram")
        if not isinstance(body, dict):
            raise PayloadError(f"Instagram payload must be a JSON object, got {type(body).__name__}")
        if "object" in body or "entry" in body:
            return self._webhook(body)
        if "mentioned_comment" in body or "mentioned_media" in body:
            return self._mention_lookup(body)
        if not body or ("data" not in body and "id" not in body
                        and not all(isinstance(v, dict) for v in body.values())):
            raise PayloadError('not an Instagram webhook (`object: "instagram"`) nor a Graph page (`data`) or object')
        media_id = _edge_owner(body, "comments")
        events: list[InboundEvent] = []
        for where, item in graph_items(body, "Instagram"):
            events.extend(self._graph_object(item, where, media_id))
        return events

    def _account(self, entry_id: str = "") -> str:
        account = entry_id if entry_id and entry_id != "0" else self.external_id or entry_id
        if not account:
            raise PayloadError("a polled Graph page does not name its Instagram account: "
                               "build InstagramAdapter(external_id=<Instagram user id>)")
        return account

    # -- webhooks ------------------------------------------------------------------------------------------------

    def _webhook(self, body: dict[str, Any]) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for entry, account, box, item, where in self._webhook_items(body, "instagram", ("messaging",),
                                                                     owner=self._account):
            if box == "changes":
                event = self._change(item, entry, account, where)
                if event is not None:
                    events.append(event)
            else:
                events.extend(self._messaging(item, entry, account, where))
        return events

    def _change(self, change: dict[str, Any], entry: dict[str, Any], account: str, where: str) -> InboundEvent | None:
        field = change.get("field")
        if field not in ("comments", "live_comments", "mentions"):
            self.skip(where, f"field {field!r} is not a conversation")
            return None
        value = change.get("value")
        if not isinstance(value, dict):
            raise PayloadError(f"Instagram webhook {where}.value is not an object")
        if entry.get("time") is None:
            raise PayloadError(f"Instagram webhook {where}: the entry has no time")
        occurred_at = meta_time(entry["time"], f"Instagram {where} entry.time")
        if field == "mentions":
            media_id = meta_id(value, "media_id", f"Instagram {where}.value.media_id", required=False)
            comment_id = meta_id(value, "comment_id", f"Instagram {where}.value.comment_id", required=False)
            if not (media_id or comment_id):
                raise PayloadError(f"Instagram {where}: a mention names neither comment_id nor media_id")
            return InboundEvent(platform=PLATFORM, external_id=comment_id or media_id, kind=EventKind.MENTION,
                                occurred_at=occurred_at, thread_key=media_id or comment_id, raw=value)
        return self._comment(value, f"webhook {where}.value", account, occurred_at=occurred_at)[0]

    # -- comments (webhook values and Graph objects) ---------------------------------------------------------------

    def _comment(self, comment: dict[str, Any], where: str, account: str, *, media_id: str = "", parent_id: str = "",
                 occurred_at: Any = None) -> list[InboundEvent]:
        """One comment (and its nested `replies`) as events: `comment` on a media, `reply` to a comment."""
        comment_id = meta_id(comment, "id", f"Instagram {where}.id")
        media_id = (meta_id(as_dict(comment.get("media")), "id", f"Instagram {where}.media.id", required=False)
                    or media_id)
        parent_id = meta_id(comment, "parent_id", f"Instagram {where}.parent_id", required=False) or parent_id
        if occurred_at is None:
            if comment.get("timestamp") is None:
                raise PayloadError(f"Instagram {where} has no timestamp")
            occurred_at = meta_time(comment["timestamp"], f"Instagram {where}.timestamp")
        author = self._author(comment, account, where)
        thread_key = media_id or parent_id or comment_id
        events = [InboundEvent(
            platform=PLATFORM,
            external_id=comment_id,
            kind=EventKind.REPLY if parent_id else EventKind.COMMENT,
            occurred_at=occurred_at,
            author=author,
            text=text_field(comment, "text", f"Instagram {where}"),
            thread_key=thread_key,
            reply_to_id=parent_id or media_id,
            direction=Direction.OUTBOUND if author and author.external_id == account else Direction.INBOUND,
            raw={k: v for k, v in comment.items() if k != "replies"},
        )]
        replies = as_dict(comment.get("replies")).get("data") or []
        if not isinstance(replies, list):
            raise PayloadError(f"Instagram {where}.replies.data must be a list")
        for i, reply in enumerate(replies):
            if not isinstance(reply, dict):
                raise PayloadError(f"Instagram {where}.replies.data[{i}] is not an object")
            events.extend(self._comment(reply, f"{where}.replies.data[{i}]", account, media_id=thread_key,
                                        parent_id=comment_id))
        return events

    @staticmethod
    def _author(comment: dict[str, Any], account: str, where: str) -> Author | None:
        sender = as_dict(comment.get("from")) or as_dict(comment.get("user"))
        if sender.get("id") is None:
            return None
        handle = str(sender.get("username") or comment.get("username") or "")
        profile = f"https://www.instagram.com/{handle}/" if _USERNAME.fullmatch(handle) else ""
        return Author(platform=PLATFORM, external_id=meta_id(sender, "id", f"Instagram {where}.from.id"), scope=account,
                      handle=handle, profile_url=profile, raw=sender)

    def _graph_object(self, item: Any, where: str, media_id: str) -> list[InboundEvent]:
        if not isinstance(item, dict):
            raise PayloadError(f"Instagram Graph {where} is not an object")
        account = self._account()
        if not any(key in item for key in _MEDIA_KEYS):
            return self._comment(item, f"Graph {where}", account, media_id=media_id)
        media = meta_id(item, "id", f"Instagram Graph {where}.id")
        comments = as_dict(item.get("comments")).get("data") or []
        if not isinstance(comments, list):
            raise PayloadError(f"Instagram Graph {where}.comments.data must be a list")
        if not comments:
            self.skip(where, f"media {media} carries no comments")
        events: list[InboundEvent] = []
        for i, comment in enumerate(comments):
            if not isinstance(comment, dict):
                raise PayloadError(f"Instagram Graph {where}.comments.data[{i}] is not an object")
            events.extend(self._comment(comment, f"Graph {where}.comments.data[{i}]", account, media_id=media))
        return events

    def _mention_lookup(self, body: dict[str, Any]) -> list[InboundEvent]:
        """`GET /{ig-user-id}?fields=mentioned_comment...` / `mentioned_media...`: the content of a mention."""
        account = self._account(meta_id(body, "id", "Instagram mention lookup id", required=False))
        key = "mentioned_comment" if "mentioned_comment" in body else "mentioned_media"
        found = body[key]
        if not isinstance(found, dict):
            raise PayloadError(f"Instagram {key} is not an object")
        object_id = meta_id(found, "id", f"Instagram {key}.id")
        if found.get("timestamp") is None:
            raise PayloadError(f"Instagram {key} has no timestamp")
        author = self._author(found, account, key)
        media_id = meta_id(as_dict(found.get("media")), "id", f"Instagram {key}.media.id", required=False)
        return [InboundEvent(
            platform=PLATFORM, external_id=object_id, kind=EventKind.MENTION,
            occurred_at=meta_time(found["timestamp"], f"Instagram {key}.timestamp"), author=author,
            text=text_field(found, "text" if key == "mentioned_comment" else "caption", f"Instagram {key}"),
            thread_key=media_id or object_id, reply_to_id=media_id if media_id != object_id else "",
            direction=Direction.OUTBOUND if author and author.external_id == account else Direction.INBOUND,
            raw=found,
        )]

    # -- polling and sending -------------------------------------------------------------------------------------

    def poll_stages(self) -> list[PollStage]:
        """The account's media, newest first, with their comments and the replies to them."""
        if not self.external_id:
            raise PermanentError("instagram: polling needs the Instagram user id as the account's external_id")
        comment_fields = "id,text,timestamp,from,username,parent_id"
        return [PollStage("media", f"{graph_path(self.external_id)}/media",
                          f"id,timestamp,media_type,comments.limit(50){{{comment_fields},replies{{{comment_fields}}}}}",
                          "timestamp", window=COMMENT_WINDOW)]

    def send(self, message: OutboundMessage) -> SendResult:
        """An Instagram Direct message (private) or a reply under the comment, or a comment on the media (public)."""
        text = self._reply_text(message)
        if message.private:
            if len(text.encode()) > DM_TEXT_BYTES:
                raise PermanentError(f"instagram: a Direct message is limited to {DM_TEXT_BYTES} bytes of UTF-8")
            return self._send_private(message, "/me/messages", messaging_type=False)
        if len(text) > COMMENT_TEXT_LIMIT:
            raise PermanentError(f"instagram: a comment is limited to {COMMENT_TEXT_LIMIT} characters")
        if message.thread_key.startswith("igsid:"):
            raise PermanentError("instagram: a public reply needs the comment or media it answers")
        if message.reply_to_id and message.reply_to_id != message.thread_key:
            path = f"{graph_path(message.reply_to_id)}/replies"
        elif message.thread_key:
            path = f"{graph_path(message.thread_key)}/comments"
        else:
            raise PermanentError("instagram: a public reply needs the comment or media it answers")
        body = self._post(path, {"message": text})
        return SendResult(external_id=self._answer_id(body, "id"), raw=body, thread_key=message.thread_key)


def _edge_owner(body: dict[str, Any], edge: str) -> str:
    """The object whose `edge` a Graph page lists, read from its own `paging.next` (`/{id}/<edge>?...`)."""
    link = as_dict(body.get("paging")).get("next")
    if not isinstance(link, str):
        return ""
    segments = [s for s in urllib.parse.urlsplit(link).path.split("/") if s]
    return segments[-2] if len(segments) >= 2 and segments[-1] == edge else ""
