"""Facebook Pages: Page webhooks (feed changes and Messenger) and polled Graph comment pages into `InboundEvent`s.

What a body becomes (PLATFORMS.md sections 2a and 2b):

- Webhook `{"object": "page", "entry": [...]}`; every entry and every change / messaging item is read. The
  page id is `entry.id` (a JSON number or a string; the `*_str` twin wins when present). Authors are
  page-scoped, so their `scope` is that page id.
- Feed changes (`field == "feed"`), items comment / post / status / photo / video:
  `add` -> `comment` (`reply` when `parent_id` is another comment, not the post), or `post` for the other
  items; `edited` / `edit` -> `edit`; `remove` -> `delete`; `hide` / `unhide` and other verbs -> nothing yet.
  Comment ids are `comment_id`, post-like ids `post_id`; thread key = `post_id`; reply-to = `parent_id`.
  Author `from{id,name}` or the old `sender_id` + `sender_name`; an author whose id is the page is us:
  direction `out`. Time: `created_time` for an add, the entry's `time` for an edit or removal (the time of
  the change), each falling back on the other. Other items (reaction, like, share) and fields (ratings, ...)
  give no events; `field == "mention"` (the page was @-mentioned in a comment or post elsewhere) is a
  `mention` with no author, because the payload names none.
- Messenger (`messaging[]`, and `standby[]` when another app owns the thread: the message still belongs to
  the conversation): `message` -> `dm` with thread key `psid:<PSID>`, author the PSID scoped to the page;
  `is_echo` (sent by the page or its apps) -> direction `out`, author None; `message_edit` -> `edit`;
  `message.is_deleted` -> `delete`. Delivery, read, reaction, postback, referral, optin: nothing.
- Graph comment page (`{"data": [...], "paging": ...}` from `GET /{post-id}/comments`) or one comment object.
  The page is not named in it, so the page id is the adapter's `external_id`. When `id` was not requested
  the comment id is rebuilt as `{post}_{comment}` from `permalink_url` (`comment_id`, or `reply_comment_id`
  for a reply: the same form as a requested `id`), and the thread key is `{page}_{post}`, the `post_id` of
  the webhooks. Without `from` the author is unknown (None), so direction stays `in`.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from .base import Author, BaseAdapter, Direction, EventKind, InboundEvent, PayloadError, decode_payload
from .timeparse import from_epoch_guess, from_epoch_millis, parse_iso8601

PLATFORM = "facebook"
FEED_ITEMS = frozenset({"comment", "post", "status", "photo", "video"})
_VERB_KINDS = {"edited": EventKind.EDIT, "edit": EventKind.EDIT, "remove": EventKind.DELETE}


def _fb_id(obj: dict[str, Any], key: str, what: str, *, required: bool = True) -> str:
    """An id as a string: the `<key>_str` twin if present, else the value (ints converted exactly)."""
    value = obj.get(f"{key}_str", obj.get(key))
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None and not required:
        return ""
    raise PayloadError(f"{what} is missing or not an id: {value!r}")


def _time(value: Any, what: str) -> dt.datetime:
    """A Meta time: epoch seconds or milliseconds (number or digit string), or a Graph ISO string."""
    if isinstance(value, str) and ("T" in value or "-" in value.lstrip("-")):
        return parse_iso8601(value)
    try:
        return from_epoch_guess(value)
    except PayloadError as exc:
        raise PayloadError(f"{what}: {exc}") from None


class FacebookAdapter(BaseAdapter):
    """A Facebook Page: `external_id` is the page id (needed for polled comment pages, which do not name it)."""

    platform = PLATFORM

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one Page webhook body, Graph comment page or Graph comment into events."""
        body = decode_payload(payload, "Facebook")
        if not isinstance(body, dict):
            raise PayloadError(f"Facebook payload must be a JSON object, got {type(body).__name__}")
        if "object" in body or "entry" in body:
            return self._webhook(body)
        if "data" in body:
            data = body["data"]
            if not isinstance(data, list):
                raise PayloadError("Facebook Graph `data` must be a list of comments")
            return [self._polled_comment(item, f"data[{i}]") for i, item in enumerate(data)]
        if "created_time" in body and ("id" in body or "permalink_url" in body):
            return [self._polled_comment(body, "comment")]
        raise PayloadError('not a Facebook Page webhook (`object: "page"`) nor a Graph comment page (`data`)')

    # -- webhooks ----------------------------------------------------------------------------------------------

    def _webhook(self, body: dict[str, Any]) -> list[InboundEvent]:
        if body.get("object") != "page":
            raise PayloadError(f'Facebook webhook `object` is {body.get("object")!r}, expected "page"')
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise PayloadError("Facebook webhook has no `entry` list")
        events: list[InboundEvent] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise PayloadError(f"Facebook webhook entry[{i}] is not an object")
            page_id = _fb_id(entry, "id", f"Facebook webhook entry[{i}].id")
            for j, change in enumerate(entry.get("changes") or []):
                if not isinstance(change, dict):
                    raise PayloadError(f"Facebook webhook entry[{i}].changes[{j}] is not an object")
                event = self._change(change, entry, page_id, f"entry[{i}].changes[{j}]")
                if event is not None:
                    events.append(event)
            for box in ("messaging", "standby"):
                for j, item in enumerate(entry.get(box) or []):
                    if not isinstance(item, dict):
                        raise PayloadError(f"Facebook webhook entry[{i}].{box}[{j}] is not an object")
                    event = self._messaging(item, entry, page_id, f"entry[{i}].{box}[{j}]")
                    if event is not None:
                        events.append(event)
        return events

    def _change(self, change: dict[str, Any], entry: dict[str, Any], page_id: str, where: str) -> InboundEvent | None:
        field = change.get("field")
        value = change.get("value")
        if field not in ("feed", "mention") or value is None:
            return None  # ratings, parking, payment_options, ...: not a conversation event
        if not isinstance(value, dict):
            raise PayloadError(f"Facebook webhook {where}.value is not an object")
        item, verb = value.get("item"), value.get("verb")
        if item not in FEED_ITEMS:
            return None  # reaction, like, share, ...
        if verb == "add":
            if field == "mention":
                kind = EventKind.MENTION
            elif item == "comment":
                kind = EventKind.COMMENT
            else:
                kind = EventKind.POST
        elif verb in _VERB_KINDS:
            kind = _VERB_KINDS[verb]
        else:
            return None  # hide / unhide / block / mute: moderation, not handled yet
        post_id = _fb_id(value, "post_id", f"Facebook {where}.value.post_id")
        if item == "comment":
            external_id = _fb_id(value, "comment_id", f"Facebook {where}.value.comment_id")
            parent_id = _fb_id(value, "parent_id", f"Facebook {where}.value.parent_id", required=False)
            if kind == EventKind.COMMENT and parent_id and parent_id != post_id:
                kind = EventKind.REPLY
            reply_to = parent_id or post_id
        else:
            external_id = post_id
            reply_to = ""
        author = self._feed_author(value, page_id, where) if field == "feed" else None
        times = [value.get("created_time"), entry.get("time")]
        if kind in (EventKind.EDIT, EventKind.DELETE):
            times.reverse()
        when = next((t for t in times if t is not None), None)
        if when is None:
            raise PayloadError(f"Facebook {where} has neither value.created_time nor entry.time")
        text = value.get("message") or ""
        if not isinstance(text, str):
            raise PayloadError(f"Facebook {where}.value.message is not a string")
        attachments = tuple({"type": kind_, "url": value[kind_]} for kind_ in ("photo", "video")
                            if isinstance(value.get(kind_), str) and value[kind_])
        return InboundEvent(
            platform=PLATFORM,
            external_id=external_id,
            kind=kind,
            occurred_at=_time(when, f"Facebook {where} time"),
            author=author,
            text="" if kind == EventKind.DELETE else text,
            thread_key=post_id,
            reply_to_id=reply_to,
            direction=Direction.OUTBOUND if author and author.external_id == page_id else Direction.INBOUND,
            attachments=() if kind == EventKind.DELETE else attachments,
            raw=value,
        )

    @staticmethod
    def _feed_author(value: dict[str, Any], page_id: str, where: str) -> Author | None:
        sender = value.get("from")
        if isinstance(sender, dict) and (sender.get("id") is not None or sender.get("id_str")):
            return Author(platform=PLATFORM, external_id=_fb_id(sender, "id", f"Facebook {where}.value.from.id"),
                          scope=page_id, display_name=str(sender.get("name") or ""), raw=sender)
        if value.get("sender_id") is not None or value.get("sender_id_str"):
            return Author(platform=PLATFORM, external_id=_fb_id(value, "sender_id", f"Facebook {where}.sender_id"),
                          scope=page_id, display_name=str(value.get("sender_name") or ""))
        return None

    def _messaging(self, item: dict[str, Any], entry: dict[str, Any], page_id: str,
                   where: str) -> InboundEvent | None:
        message, edit = item.get("message"), item.get("message_edit")
        if message is None and edit is None:
            return None  # delivery, read, reaction, postback, referral, optin, handover ...
        payload = message if message is not None else edit
        if not isinstance(payload, dict):
            raise PayloadError(f"Facebook {where}.message is not an object")
        sender = item.get("sender") if isinstance(item.get("sender"), dict) else {}
        recipient = item.get("recipient") if isinstance(item.get("recipient"), dict) else {}
        sender_id = _fb_id(sender, "id", f"Facebook {where}.sender.id", required=False)
        recipient_id = _fb_id(recipient, "id", f"Facebook {where}.recipient.id", required=False)
        outbound = bool(payload.get("is_echo")) or sender_id == page_id
        # The customer is the side that is not the page. A real echo goes page -> user; Meta's doc sample
        # keeps the user as sender, so fall back to whichever id is not the page.
        psid = recipient_id if outbound and recipient_id and recipient_id != page_id else sender_id
        if not psid or psid == page_id:
            raise PayloadError(f"Facebook {where} names no customer PSID in sender/recipient")
        mid = _fb_id(payload, "mid", f"Facebook {where}.message.mid")
        if item.get("timestamp") is not None:
            occurred_at = from_epoch_millis(item["timestamp"])
        elif entry.get("time") is not None:
            occurred_at = from_epoch_guess(entry["time"])
        else:
            raise PayloadError(f"Facebook {where} has neither timestamp nor entry.time")
        if message is None:
            kind = EventKind.EDIT
        elif message.get("is_deleted"):
            kind = EventKind.DELETE
        else:
            kind = EventKind.DIRECT_MESSAGE
        text = payload.get("text") or ""
        if not isinstance(text, str):
            raise PayloadError(f"Facebook {where}.message.text is not a string")
        reply_to = payload.get("reply_to") if isinstance(payload.get("reply_to"), dict) else {}
        return InboundEvent(
            platform=PLATFORM,
            external_id=mid,
            kind=kind,
            occurred_at=occurred_at,
            author=None if outbound else Author(platform=PLATFORM, external_id=psid, scope=page_id),
            text="" if kind == EventKind.DELETE else text,
            thread_key=f"psid:{psid}",
            reply_to_id=str(reply_to.get("mid") or ""),
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=() if kind == EventKind.DELETE else _messenger_attachments(payload, where),
            raw=item,
        )

    # -- Graph polling -------------------------------------------------------------------------------------------

    def _polled_comment(self, comment: Any, where: str) -> InboundEvent:
        if not isinstance(comment, dict):
            raise PayloadError(f"Facebook Graph {where} is not an object")
        page_id = self.external_id
        if not page_id:
            raise PayloadError("a polled Graph comment page does not name its page: "
                               "build FacebookAdapter(external_id=<page id>)")
        link = urllib.parse.urlsplit(str(comment.get("permalink_url") or ""))
        query = urllib.parse.parse_qs(link.query)
        segments = [s for s in link.path.split("/") if s]
        link_post = segments[segments.index("posts") + 1] if "posts" in segments[:-1] else ""
        top_comment = (query.get("comment_id") or [""])[0]
        reply_comment = (query.get("reply_comment_id") or [""])[0]
        if comment.get("id"):
            external_id = _fb_id(comment, "id", f"Facebook Graph {where}.id")
            post = external_id.split("_", 1)[0] if "_" in external_id else link_post
        elif link_post and (reply_comment or top_comment):
            post = link_post
            external_id = f"{post}_{reply_comment or top_comment}"
        else:
            raise PayloadError(f"Facebook Graph {where} has no `id` and no permalink_url with a comment_id")
        if not post:
            raise PayloadError(f"Facebook Graph {where}: cannot tell which post comment {external_id} belongs to")
        thread_key = f"{page_id}_{post}"
        parent = comment.get("parent") if isinstance(comment.get("parent"), dict) else None
        if parent and parent.get("id"):
            reply_to = _fb_id(parent, "id", f"Facebook Graph {where}.parent.id")
        elif reply_comment and top_comment:
            reply_to = f"{post}_{top_comment}"
        else:
            reply_to = ""
        sender = comment.get("from")
        author = None
        if isinstance(sender, dict) and sender.get("id") is not None:
            author = Author(platform=PLATFORM, external_id=_fb_id(sender, "id", f"Facebook Graph {where}.from.id"),
                            scope=page_id, display_name=str(sender.get("name") or ""), raw=sender)
        if "created_time" not in comment:
            raise PayloadError(f"Facebook Graph {where} has no created_time")
        text = comment.get("message") or ""
        if not isinstance(text, str):
            raise PayloadError(f"Facebook Graph {where}.message is not a string")
        return InboundEvent(
            platform=PLATFORM,
            external_id=external_id,
            kind=EventKind.REPLY if reply_to else EventKind.COMMENT,
            occurred_at=_time(comment["created_time"], f"Facebook Graph {where}.created_time"),
            author=author,
            text=text,
            thread_key=thread_key,
            reply_to_id=reply_to or thread_key,
            direction=Direction.OUTBOUND if author and author.external_id == page_id else Direction.INBOUND,
            attachments=_graph_attachment(comment),
            raw=comment,
        )


def _messenger_attachments(message: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """Messenger attachments as {type, url?, sticker_id?, title?}."""
    items = message.get("attachments") or []
    if not isinstance(items, list):
        raise PayloadError(f"Facebook {where}.message.attachments must be a list")
    found = []
    for attachment in items:
        if not isinstance(attachment, dict):
            raise PayloadError(f"Facebook {where}.message.attachments holds a non-object")
        payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        summary: dict[str, Any] = {"type": str(attachment.get("type") or "")}
        if payload.get("url"):
            summary["url"] = str(payload["url"])
        if payload.get("sticker_id") is not None:
            summary["sticker_id"] = str(payload["sticker_id"])
        if attachment.get("title"):
            summary["title"] = str(attachment["title"])
        found.append(summary)
    return tuple(found)


def _graph_attachment(comment: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """A Graph comment's single `attachment` as {type, url, image_url?}."""
    attachment = comment.get("attachment")
    if not isinstance(attachment, dict):
        return ()
    summary: dict[str, Any] = {"type": str(attachment.get("type") or "")}
    if attachment.get("url"):
        summary["url"] = str(attachment["url"])
    image = ((attachment.get("media") or {}).get("image") or {}) if isinstance(attachment.get("media"), dict) else {}
    if isinstance(image, dict) and image.get("src"):
        summary["image_url"] = str(image["src"])
    return (summary,)
