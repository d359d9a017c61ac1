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
  kinds (callback_query, my_chat_member, message_reaction, ...) give no events and raise no error; each is
  recorded in `skipped` with the reason.

Webhooks: Telegram signs nothing; `setWebhook(secret_token=...)` makes it send that secret in the header
`X-Telegram-Bot-Api-Secret-Token`, compared in constant time with `webhook_secret["secret_token"]`.

Polling: `getUpdates` with `offset` = the cursor's `offset` (which also confirms every earlier update to
Telegram), `timeout=0`, `limit` (`config["page_size"]`, default and most 100) and `allowed_updates` = the kinds
parsed above. The next cursor is `{"offset": last update_id + 1}`; a full page means more is waiting. An
update that cannot be parsed is skipped with its reason, so one bad update never stops the channel (Telegram
drops unconfirmed updates after 24 hours, so a stuck offset would lose every later message).

Sending: `sendMessage` to the chat of the thread key (and its forum topic), answering `reply_to_id` through
`reply_parameters` (sent even if that message was deleted meanwhile); the result is named `<chat.id>:<message_id>`
like parsed messages. Errors: `{"ok": false, "error_code": 429, "parameters": {"retry_after": n}}` is
`RateLimited` until now + n, 5xx `TransientError`, any other code `PermanentError`.

The bot token (`credentials["bot_token"]`) is part of every API URL. It is never put in an error message, and
the request lines httpx logs show `/bot<redacted>/` instead.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
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
    RateLimited,
    SendResult,
    TransientError,
    WebhookRequest,
    check_token,
    decode_payload,
    retry_after,
)
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
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What getUpdates is asked for: the update kinds `parse` turns into events.
ALLOWED_UPDATES = (*CREATE_UPDATES, *EDIT_UPDATES, "deleted_business_messages")
PAGE_SIZE = 100  # getUpdates returns at most 100 updates
_BOT_TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
_TOKEN_IN_URL = re.compile(r"/bot\d+:[^/\s?#]+")
_THREAD_KEY = re.compile(r"chat:(-?\d+)(?::topic:(\d+))?")
_MESSAGE_REF = re.compile(r"(-?\d+):(\d+)")


class _RedactBotToken(logging.Filter):
    """Hides the bot token in the request URLs httpx logs (`.../bot<token>/getUpdates` -> `.../bot<redacted>/...`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_URL.sub("/bot<redacted>", str(arg)) if isinstance(arg, str | httpx.URL)
                                else arg for arg in record.args)
        return True


_REDACT_BOT_TOKEN = _RedactBotToken()
logging.getLogger("httpx").addFilter(_REDACT_BOT_TOKEN)


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
    pollable = True
    api_base_url = "https://api.telegram.org"
    max_reply_length = 4096

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check the `X-Telegram-Bot-Api-Secret-Token` header against our secret token, in constant time."""
        expected = self.secret("secret_token")
        check_token(request.header(SECRET_HEADER), expected, SECRET_HEADER)

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """One getUpdates page after the cursor's `offset`; see the module docstring."""
        offset = (cursor or {}).get("offset")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
            raise PayloadError(f"Telegram cursor offset must be an integer update id, got {offset!r}")
        limit = self._page_size()
        params: dict[str, Any] = {"timeout": 0, "limit": limit, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
        if offset is not None:
            params["offset"] = offset
        with self.http() as client:
            response = self.request(client, "GET", self._method_url("getUpdates"), params=params)
        updates = self._result(response, "getUpdates")
        if not isinstance(updates, list):
            raise PayloadError("Telegram getUpdates `result` must be a list of Updates")
        events: list[InboundEvent] = []
        last: int | None = None
        for index, update in enumerate(updates):
            where = f"getUpdates.result[{index}]"
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if isinstance(update_id, bool) or not isinstance(update_id, int):
                self.skip(where, "not an Update with an integer update_id")
                continue
            last = update_id if last is None else max(last, update_id)
            try:
                events.extend(self._update(update, where))
            except PayloadError as exc:
                self.skip(where, f"update {update_id} cannot be read: {exc}")
        if updates and last is None:
            raise PayloadError("Telegram getUpdates returned updates without update_id: the offset cannot advance")
        next_cursor = {"offset": last + 1} if last is not None else dict(cursor or {})
        return FetchResult(events=events, cursor=next_cursor, has_more=len(updates) >= limit)

    def send(self, message: OutboundMessage) -> SendResult:
        """Send a text reply to the chat (and forum topic) of `message.thread_key`, answering `reply_to_id`."""
        match = _THREAD_KEY.fullmatch(message.thread_key)
        if match is None:
            raise PermanentError(f"telegram: cannot send to thread {message.thread_key!r}: "
                                 "expected chat:<chat id> or chat:<chat id>:topic:<topic id>")
        chat_id, topic = match.groups()
        if not message.text.strip():
            raise PermanentError("telegram: the reply is empty")
        if self.max_reply_length and len(message.text) > self.max_reply_length:
            raise PermanentError(f"telegram: the reply is longer than {self.max_reply_length} characters")
        body: dict[str, Any] = {"chat_id": int(chat_id), "text": message.text}
        if topic:
            body["message_thread_id"] = int(topic)
        if message.reply_to_id:
            reply = _MESSAGE_REF.fullmatch(message.reply_to_id)
            if reply is None:
                raise PermanentError(f"telegram: reply_to_id {message.reply_to_id!r} is not <chat id>:<message id>")
            reply_chat, reply_message = reply.groups()
            parameters: dict[str, Any] = {"message_id": int(reply_message), "allow_sending_without_reply": True}
            if reply_chat != chat_id:
                parameters["chat_id"] = int(reply_chat)
            body["reply_parameters"] = parameters
        with self.http() as client:
            response = self.request(client, "POST", self._method_url("sendMessage"), sending=True, json=body)
        sent = self._result(response, "sendMessage", sending=True)
        try:
            external_id = f"{_int_id(sent['chat']['id'], 'chat.id')}:{_int_id(sent['message_id'], 'message_id')}"
        except (TypeError, KeyError, PayloadError):
            raise OutcomeUnknown("telegram: sendMessage succeeded but names no chat and message id") from None
        return SendResult(external_id=external_id, raw=sent, thread_key=message.thread_key)

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """now + `parameters.retry_after` of Telegram's error body, else the `Retry-After` header, else a minute."""
        try:
            body = response.json()
        except ValueError:
            body = None
        parameters = body.get("parameters") if isinstance(body, dict) else None
        wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
        if isinstance(wait, int) and not isinstance(wait, bool) and wait >= 0:
            return utc_now() + dt.timedelta(seconds=wait)
        return retry_after(response)

    def _method_url(self, method: str) -> str:
        """`/bot<token>/<method>`; the token is checked first, so nothing but a token ever lands in the path."""
        token = self.credentials.get("bot_token")
        if not isinstance(token, str) or not _BOT_TOKEN.fullmatch(token):
            raise PermanentError("telegram: the channel account has no valid bot_token")
        return f"/bot{token}/{method}"

    def _page_size(self) -> int:
        size = self.config.get("page_size")
        if size is None:
            return PAGE_SIZE
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PayloadError(f'Telegram config["page_size"] must be a positive integer, got {size!r}')
        return min(size, PAGE_SIZE)

    def _result(self, response: httpx.Response, method: str, *, sending: bool = False) -> Any:
        """The `result` of a Telegram answer; its `ok: false` mapped to the adapter errors by `error_code`."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if sending:
                raise OutcomeUnknown(f"telegram: {method} answered with something that is not a JSON object")
            raise TransientError(f"telegram: {method} answered with something that is not a JSON object")
        if body.get("ok") is True:
            return body.get("result")
        code = body.get("error_code")
        description = str(body.get("description") or "no description")[:300]
        if code == 429:
            raise RateLimited(f"telegram: {method}: {description}", reset_at=self.rate_limit_reset(response))
        if isinstance(code, int) and code >= 500:
            raise TransientError(f"telegram: {method} failed ({code}): {description}")
        raise PermanentError(f"telegram: {method} failed ({code}): {description}")

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
        # callback_query, my_chat_member, message_reaction, poll, ...: no conversation event
        kinds = ", ".join(sorted(k for k in update if k != "update_id")) or "nothing"
        self.skip(where, f"update of kind {kinds} is not a message")
        return []

    def _message(self, message: Any, where: str, *, edit: bool) -> InboundEvent | None:
        if not isinstance(message, dict):
            raise PayloadError(f"Telegram {where} is not an object")
        chat = message.get("chat")
        if not isinstance(chat, dict):
            raise PayloadError(f"Telegram {where} has no chat")
        chat_id = _int_id(chat.get("id"), f"Telegram {where}.chat.id")
        message_id = _int_id(message.get("message_id"), f"Telegram {where}.message_id")
        service = sorted(SERVICE_FIELDS.intersection(message))
        if service:
            self.skip(where, f"service message ({', '.join(service)})")
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
