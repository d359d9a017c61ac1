"""Telegram Bot API: Update objects (webhook bodies or getUpdates results) into `InboundEvent`s.

What an Update becomes (PLATFORMS.md section 6):

- Accepted shapes: one Update, a list of Updates, or a getUpdates body `{"ok": true, "result": [...]}`.
- `message`, `channel_post`, `business_message` create an event; its kind follows the chat type:
  private chat -> `dm`; channel -> `post`; group / supergroup -> `reply` when the message answers another
  one (`reply_to_message`), else `post`. In a forum topic every message carries a `reply_to_message`
  pointing at the topic's first (service) message; that is not an answer to anyone, so such messages stay
  `post` and the topic is in the thread key instead.
- `edited_message`, `edited_channel_post`, `edited_business_message` -> `edit` of the same external id,
  at `edit_date`. `deleted_business_messages` -> one `delete` per message id, at the receive time (Telegram
  gives none). Ordinary chats get no delete notifications.
- Keys: message ids are unique only per chat, so the external id is `<chat.id>:<message_id>`; thread key
  `chat:<chat.id>`, plus `:topic:<message_thread_id>` for forum-topic messages; reply-to is the external
  id of `reply_to_message`.
- Author: `from` (display name = first + last name, handle = username); a message sent on behalf of a chat
  (`sender_chat`: channel posts, anonymous group admins) or a channel post without `from` is authored by
  that chat (display name = its title, or its first + last name). Telegram user ids are global: no scope.
  A message from the bot itself (`from.id` = the adapter's `external_id`) is direction `out`.
- Text = `text` or `caption`. Attachments are summarised (type, file_id, file_unique_id, file_name,
  mime_type; only the largest `photo` size by pixel area); contact and location keep their own fields.
- Service messages (pinned message, members joining, title changes, topic created, ...) and unknown update
  kinds (callback_query, my_chat_member, message_reaction, ...) give no events and raise no error.
"""

from __future__ import annotations

from typing import Any

from .base import Author, BaseAdapter, Direction, EventKind, InboundEvent, PayloadError, decode_payload
from .timeparse import from_epoch_seconds, utc_now

PLATFORM = "telegram"
CREATE_UPDATES = ("message", "channel_post", "business_message")
EDIT_UPDATES = ("edited_message", "edited_channel_post", "edited_business_message")
FILE_TYPES = ("document", "voice", "sticker", "video", "audio", "animation", "video_note")
_FILE_FIELDS = ("file_id", "file_unique_id", "file_name", "mime_type")
# Message fields that make it a service message rather than something a person wrote.
SERVICE_FIELDS = frozenset({
    "pinned_message", "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo",
    "delete_chat_photo", "group_chat_created", "supergroup_chat_created", "channel_chat_created",
    "message_auto_delete_timer_changed", "migrate_to_chat_id", "migrate_from_chat_id", "forum_topic_created",
    "forum_topic_edited", "forum_topic_closed", "forum_topic_reopened", "general_forum_topic_hidden",
    "general_forum_topic_unhidden", "video_chat_scheduled", "video_chat_started", "video_chat_ended",
    "video_chat_participants_invited", "users_shared", "chat_shared", "write_access_allowed",
    "proximity_alert_triggered", "boost_added", "chat_background_set",
})


def _int_id(value: Any, what: str) -> str:
    """A Telegram integer id (chat, user, message) as a string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return value
    raise PayloadError(f"{what} is missing or not an integer id: {value!r}")


def _full_name(obj: dict[str, Any]) -> str:
    return " ".join(str(obj[k]) for k in ("first_name", "last_name") if obj.get(k)).strip()


class TelegramAdapter(BaseAdapter):
    """A Telegram bot: `external_id` may be the bot's user id, so that its own messages are outbound."""

    platform = PLATFORM

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one Update, a list of Updates or a getUpdates body into events."""
        body = decode_payload(payload, "Telegram")
        if isinstance(body, dict) and ("ok" in body or "result" in body) and "update_id" not in body:
            if body.get("ok") is not True:
                raise PayloadError(f"Telegram getUpdates failed: {body.get('description', 'ok is not true')}")
            body = body.get("result")
            if not isinstance(body, list):
                raise PayloadError("Telegram getUpdates `result` must be a list of Updates")
        updates = body if isinstance(body, list) else [body]
        events: list[InboundEvent] = []
        for index, update in enumerate(updates):
            where = f"update[{index}]" if isinstance(body, list) else "update"
            if not isinstance(update, dict):
                raise PayloadError(f"Telegram {where} is not an object")
            if "update_id" not in update:
                raise PayloadError(f"Telegram {where} has no update_id: not an Update")
            events.extend(self._update(update, where))
        return events

    def _update(self, update: dict[str, Any], where: str) -> list[InboundEvent]:
        for key in CREATE_UPDATES:
            if key in update:
                event = self._message(update[key], f"{where}.{key}", edit=False)
                return [event] if event else []
        for key in EDIT_UPDATES:
            if key in update:
                event = self._message(update[key], f"{where}.{key}", edit=True)
                return [event] if event else []
        if "deleted_business_messages" in update:
            return self._deleted(update["deleted_business_messages"], f"{where}.deleted_business_messages")
        return []  # callback_query, my_chat_member, message_reaction, poll, ...: no conversation event

    def _message(self, message: Any, where: str, *, edit: bool) -> InboundEvent | None:
        if not isinstance(message, dict):
            raise PayloadError(f"Telegram {where} is not an object")
        chat = message.get("chat")
        if not isinstance(chat, dict):
            raise PayloadError(f"Telegram {where} has no chat")
        chat_id = _int_id(chat.get("id"), f"Telegram {where}.chat.id")
        message_id = _int_id(message.get("message_id"), f"Telegram {where}.message_id")
        if SERVICE_FIELDS.intersection(message):
            return None
        chat_type = chat.get("type")
        time_field = "edit_date" if edit else "date"
        if message.get(time_field) is None:
            raise PayloadError(f"Telegram {where} has no {time_field}")
        topic = ""
        if message.get("is_topic_message") and message.get("message_thread_id") is not None:
            topic = _int_id(message["message_thread_id"], f"Telegram {where}.message_thread_id")
        reply = message.get("reply_to_message")
        reply_to = ""
        if isinstance(reply, dict) and reply.get("message_id") is not None:
            reply_chat = reply.get("chat") if isinstance(reply.get("chat"), dict) else chat
            reply_chat_id = _int_id(reply_chat.get("id"), f"Telegram {where}.reply_to_message.chat.id")
            reply_message_id = _int_id(reply["message_id"], f"Telegram {where}.reply_to_message.message_id")
            if reply_message_id != topic:  # in a forum topic, the topic root is not a real reply target
                reply_to = f"{reply_chat_id}:{reply_message_id}"
        if chat_type == "private":
            kind = EventKind.DIRECT_MESSAGE
        elif chat_type in ("group", "supergroup"):
            kind = EventKind.REPLY if reply_to else EventKind.POST
        elif chat_type == "channel":
            kind = EventKind.POST
        else:
            raise PayloadError(f"Telegram {where}.chat.type {chat_type!r} is not private, group, supergroup or channel")
        author = self._author(message, chat, where)
        text = message.get("text") or message.get("caption") or ""
        if not isinstance(text, str):
            raise PayloadError(f"Telegram {where}.text is not a string")
        outbound = bool(author and self.external_id and author.external_id == self.external_id)
        return InboundEvent(
            platform=PLATFORM,
            external_id=f"{chat_id}:{message_id}",
            kind=EventKind.EDIT if edit else kind,
            occurred_at=from_epoch_seconds(message[time_field]),
            author=author,
            text=text,
            thread_key=f"chat:{chat_id}" + (f":topic:{topic}" if topic else ""),
            reply_to_id=reply_to,
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=_attachments(message, where),
            raw=message,
        )

    @staticmethod
    def _author(message: dict[str, Any], chat: dict[str, Any], where: str) -> Author | None:
        sender_chat = message.get("sender_chat")
        sender = message.get("from")
        if not isinstance(sender_chat, dict) and chat.get("type") == "channel":
            sender_chat = chat
        if isinstance(sender_chat, dict):
            return Author(
                platform=PLATFORM,
                external_id=_int_id(sender_chat.get("id"), f"Telegram {where}.sender_chat.id"),
                handle=str(sender_chat.get("username") or ""),
                display_name=str(sender_chat.get("title") or _full_name(sender_chat)),
                raw=sender_chat,
            )
        if isinstance(sender, dict):
            return Author(
                platform=PLATFORM,
                external_id=_int_id(sender.get("id"), f"Telegram {where}.from.id"),
                handle=str(sender.get("username") or ""),
                display_name=_full_name(sender),
                raw=sender,
            )
        return None

    @staticmethod
    def _deleted(deleted: Any, where: str) -> list[InboundEvent]:
        if not isinstance(deleted, dict) or not isinstance(deleted.get("chat"), dict):
            raise PayloadError(f"Telegram {where} has no chat")
        chat_id = _int_id(deleted["chat"].get("id"), f"Telegram {where}.chat.id")
        ids = deleted.get("message_ids")
        if not isinstance(ids, list):
            raise PayloadError(f"Telegram {where}.message_ids must be a list")
        received = utc_now()
        return [InboundEvent(platform=PLATFORM, external_id=f"{chat_id}:{_int_id(i, f'Telegram {where}.message_ids')}",
                             kind=EventKind.DELETE, occurred_at=received, thread_key=f"chat:{chat_id}", raw=deleted)
                for i in ids]


def _attachments(message: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """What is attached, summarised: file references for media, the fields themselves for contact / location."""
    found: list[dict[str, Any]] = []
    photo = message.get("photo")
    if photo:
        if not isinstance(photo, list) or not all(isinstance(p, dict) for p in photo):
            raise PayloadError(f"Telegram {where}.photo must be a list of sizes")
        largest = max(photo, key=lambda p: (int(p.get("width") or 0) * int(p.get("height") or 0),
                                            int(p.get("file_size") or 0)))
        found.append({"type": "photo", **{k: largest[k] for k in _FILE_FIELDS if largest.get(k)},
                      **{k: largest[k] for k in ("width", "height") if largest.get(k)}})
    for kind in FILE_TYPES:
        media = message.get(kind)
        if media is None:
            continue
        if not isinstance(media, dict):
            raise PayloadError(f"Telegram {where}.{kind} is not an object")
        summary = {"type": kind, **{k: media[k] for k in _FILE_FIELDS if media.get(k)}}
        if kind == "sticker" and media.get("emoji"):
            summary["emoji"] = media["emoji"]
        found.append(summary)
    contact = message.get("contact")
    if isinstance(contact, dict):
        found.append({"type": "contact", **{k: contact[k] for k in ("phone_number", "first_name", "last_name",
                                                                     "user_id", "vcard") if contact.get(k)}})
    location = message.get("location")
    if isinstance(location, dict):
        found.append({"type": "location", **{k: location[k] for k in ("latitude", "longitude")
                                              if location.get(k) is not None}})
    return tuple(found)
