"""WhatsApp Cloud API: webhook bodies into `InboundEvent`s, webhook verification, and text replies.

What a body becomes (PLATFORMS.md section 4):

- Envelope `{"object": "whatsapp_business_account", "entry": [{"changes": [{"field", "value"}]}]}`; every entry
  and change is read. `field == "messages"` carries `messages[]` (from customers) and `statuses[]` (of what we
  sent); `field == "smb_message_echoes"` carries `message_echoes[]` (what the business sent from the WhatsApp
  Business app). Other fields (account, template, user-id updates, ...) are skipped.
- The channel is `value.metadata.phone_number_id`, our business number. It is the authors' scope: one person
  has one identity per business number. An adapter built for a number (`external_id`) skips changes for
  another number of the same business account rather than file them under the wrong channel.
- Author: the phone number `from` (the `wa_id`), or the business-scoped user id `from_user_id` where the phone
  number is missing. Display name `profile.name` and handle `profile.username` (without `@`) come from the
  `contacts[]` entry with that `wa_id` / `user_id` and never from another entry; that entry is the author's
  raw profile (it holds the `user_id` / `parent_user_id` twins of a phone number).
- Every message is a `dm`. Thread key `wa:<customer>` (one conversation per customer on the business number),
  or `group:<group_id>` for a message in a group; reply-to = `context.id`.
- Content: `text.body`; media (image, audio, video, document, sticker) become attachments {type, id, mime_type,
  sha256, caption, filename, voice, animated, url}, with the caption as text; `location`, shared `contacts`,
  `button` (template quick reply: its text, the payload in the attachment), `interactive` replies
  (`button_reply` / `list_reply`: the title as text, the id in the attachment) and `order` likewise. A
  `reaction` is a `dm` whose text is the emoji, in reply to the message reacted to; an empty emoji (the
  reaction was removed) is skipped, since the removal names no event of ours.
- `type: "edit"` -> `edit` of `edit.original_message_id` with the new text or caption; `type: "revoke"` ->
  `delete` of `revoke.original_message_id`; both at the webhook's `timestamp`.
- Echoes: the same shapes, direction `out`, no author (the business wrote them). The customer is `to` (or
  `to_user_id`), or `from` when `to` is our own display number.
- `statuses[]` -> `status` events: external id = the id of our message, `sent` / `delivered` / `read` / `failed`
  (`played`, a voice message listened to, counts as `read`); a failure's errors as `title (code): details`.
- Skipped, with the reason recorded: messages with `errors[]` (types `unsupported`, `unknown`), `system`
  messages (a customer changed number), unknown message types and unknown statuses.
- Times: `timestamp` is epoch seconds in a string. A value that is not (Meta's documentation samples carry the
  literal `"TIMESTAMP"`) gives the receive time, with a warning, rather than losing the event.

Webhooks: every POST carries `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` keyed with the app
secret (`webhook_secret["app_secret"]`); the subscription GET (`hub.mode=subscribe`) must carry our verify token
(`webhook_secret["verify_token"]`) and is answered with `hub.challenge`.

Sending: `POST /{phone_number_id}/messages` with the account's access token; a customer without a phone number
is addressed by business-scoped id (`recipient`), a group by `recipient_type: "group"`. Graph answers most
errors with HTTP 400 and an error `code`; the rate-limit codes become `RateLimited` and the temporary ones
`TransientError`, whatever the HTTP status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from typing import Any

import httpx

from .base import (
    Author,
    BaseAdapter,
    DeliveryStatus,
    Direction,
    EventKind,
    HandshakeResponse,
    InboundEvent,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RateLimited,
    SendResult,
    SignatureError,
    TransientError,
    WebhookRequest,
    check_signature,
    check_token,
    decode_payload,
    hmac_digest,
    retry_after,
)
from .timeparse import from_epoch_seconds, utc_now

logger = logging.getLogger(__name__)

PLATFORM = "whatsapp"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_MEDIA_FIELDS = ("id", "mime_type", "sha256", "caption", "filename", "voice", "animated", "url")
_LOCATION_FIELDS = ("latitude", "longitude", "name", "address", "url")
_CONTACT_FIELDS = ("name", "phones", "emails", "org", "addresses", "urls", "birthday")
_STATUSES = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}
# Graph error codes that mean "slow down": API Too Many Calls (4), API User Too Many Calls (17), WhatsApp
# Business Account rate limit (80007), Cloud API throughput (130429), pair rate limit (131056).
RATE_LIMIT_CODES = frozenset({4, 17, 80007, 130429, 131056})
# Graph error codes documented as temporary (API Unknown, API Service): retry later.
TRANSIENT_CODES = frozenset({1, 2})
# Meta's hub.challenge is a number; anything but a short plain token is not echoed back.
_CHALLENGE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
# How long to pause when a rate-limit answer says nothing of its own.
DEFAULT_RATE_LIMIT_WAIT = 60


def _text(value: Any) -> str:
    """An id-like value as a stripped string ("" for None); WhatsApp sends ids as strings."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _required(value: Any, what: str) -> str:
    text = _text(value)
    if not text:
        raise PayloadError(f"{what} is missing or not an id: {value!r}")
    return text


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(f"{what} must be a list")
    return value


def _context_id(message: dict[str, Any]) -> str:
    context = message.get("context")
    return _text(context.get("id")) if isinstance(context, dict) else ""


def errors_text(errors: Any) -> str:
    """WhatsApp `errors[]` in words: `title (code): details`, several joined by `; `."""
    parts = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        part = str(error.get("title") or error.get("message") or "error")
        if error.get("code") is not None:
            part += f" ({error['code']})"
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else error.get("details")
        if details:
            part += f": {details}"
        parts.append(part)
    return "; ".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class _Change:
    """What one `changes[].value` says about every item in it: our number and the customers' profiles."""

    phone_number_id: str
    display_phone_number: str
    contacts: tuple[dict[str, Any], ...]

    def contact(self, phone: str, user_id: str) -> dict[str, Any] | None:
        """The `contacts[]` entry of this phone number or business-scoped id; None when none matches."""
        for contact in self.contacts:
            if phone and _text(contact.get("wa_id")) == phone:
                return contact
            if user_id and _text(contact.get("user_id")) == user_id:
                return contact
        return None


class WhatsAppAdapter(BaseAdapter):
    """A WhatsApp business phone number: `external_id` is its phone number id, `credentials["access_token"]`
    a token allowed to send from it."""

    platform = PLATFORM
    api_base_url = "https://graph.facebook.com/v21.0"
    private_reply_window = dt.timedelta(hours=24)
    max_reply_length = 4096

    # -- webhooks ----------------------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check `X-Hub-Signature-256` against an HMAC-SHA256 of the raw body keyed with the app secret."""
        secret = self.secret("app_secret")
        check_signature(request.header(SIGNATURE_HEADER), hmac_digest(secret, request.body), prefix="sha256=")

    def handshake(self, request: WebhookRequest) -> HandshakeResponse | None:
        """Answer Meta's subscription GET with `hub.challenge` once `hub.verify_token` matches ours."""
        if request.method.upper() != "GET" or "hub.mode" not in request.query:
            return None
        expected = self.secret("verify_token")
        if request.query.get("hub.mode") != "subscribe":
            raise SignatureError("hub.mode is not 'subscribe'")
        check_token(request.query.get("hub.verify_token", ""), expected, "hub.verify_token")
        challenge = request.query.get("hub.challenge", "")
        if not _CHALLENGE.fullmatch(challenge):
            raise PayloadError("WhatsApp verification request has no hub.challenge, or not a plain token")
        return HandshakeResponse(body=challenge)

    # -- parsing -----------------------------------------------------------------------------------------------

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one webhook body into events."""
        body = decode_payload(payload, "WhatsApp")
        if not isinstance(body, dict):
            raise PayloadError(f"WhatsApp payload must be a JSON object, got {type(body).__name__}")
        if body.get("object") != "whatsapp_business_account":
            raise PayloadError(f"WhatsApp webhook `object` is {body.get('object')!r}, "
                               'expected "whatsapp_business_account"')
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise PayloadError("WhatsApp webhook has no `entry` list")
        events: list[InboundEvent] = []
        for i, entry in enumerate(entries):
            entry = _object(entry, f"WhatsApp entry[{i}]")
            for j, change in enumerate(_list(entry.get("changes"), f"WhatsApp entry[{i}].changes")):
                events.extend(self._change(_object(change, f"WhatsApp entry[{i}].changes[{j}]"),
                                           f"entry[{i}].changes[{j}]"))
        return events

    def _change(self, change: dict[str, Any], where: str) -> list[InboundEvent]:
        field = change.get("field")
        if field not in ("messages", "smb_message_echoes"):
            self.skip(where, f"field {field!r} carries no messages")
            return []
        value = _object(change.get("value"), f"WhatsApp {where}.value")
        metadata = _object(value.get("metadata"), f"WhatsApp {where}.value.metadata")
        number = _required(metadata.get("phone_number_id"), f"WhatsApp {where}.value.metadata.phone_number_id")
        if self.external_id and number != self.external_id:
            self.skip(where, f"for business number {number}, not this channel's {self.external_id}")
            return []
        contacts = _list(value.get("contacts"), f"WhatsApp {where}.value.contacts")
        context = _Change(number, _text(metadata.get("display_phone_number")),
                          tuple(c for c in contacts if isinstance(c, dict)))
        events: list[InboundEvent] = []
        for box, echo in (("messages", False), ("message_echoes", True)):
            for k, message in enumerate(_list(value.get(box), f"WhatsApp {where}.value.{box}")):
                events.extend(self._message(message, context, f"{where}.value.{box}[{k}]", echo=echo))
        for k, status in enumerate(_list(value.get("statuses"), f"WhatsApp {where}.value.statuses")):
            events.extend(self._status(status, f"{where}.value.statuses[{k}]"))
        if value.get("errors"):
            self.skip(f"{where}.value.errors", errors_text(value["errors"]) or "errors without details")
        return events

    def _message(self, message: Any, change: _Change, where: str, *, echo: bool) -> list[InboundEvent]:
        message = _object(message, f"WhatsApp {where}")
        kind = _text(message.get("type"))
        message_id = _required(message.get("id"), f"WhatsApp {where}.id")
        if message.get("errors") or kind in ("unsupported", "unknown"):
            self.skip(where, f"{kind or 'untyped'} message: {errors_text(message.get('errors')) or 'no content'}")
            return []
        if kind == "system":
            system = message.get("system") if isinstance(message.get("system"), dict) else {}
            self.skip(where, f"system message ({_text(system.get('type')) or 'no type'}), not written by the customer")
            return []
        customer = self._customer(message, change, where, echo=echo)
        group = _text(message.get("group_id"))
        common: dict[str, Any] = {
            "platform": PLATFORM,
            "occurred_at": self._time(message.get("timestamp"), where),
            "author": None if echo else self._author(message, change, customer),
            "thread_key": f"group:{group}" if group else f"wa:{customer}",
            "direction": Direction.OUTBOUND if echo else Direction.INBOUND,
            "raw": message,
        }
        if kind == "revoke":
            revoke = _object(message.get("revoke"), f"WhatsApp {where}.revoke")
            original = _required(revoke.get("original_message_id"), f"WhatsApp {where}.revoke.original_message_id")
            return [InboundEvent(external_id=original, kind=EventKind.DELETE, **common)]
        if kind == "edit":
            edit = _object(message.get("edit"), f"WhatsApp {where}.edit")
            original = _required(edit.get("original_message_id"), f"WhatsApp {where}.edit.original_message_id")
            inner = _object(edit.get("message"), f"WhatsApp {where}.edit.message")
            content = self._content(inner, f"{where}.edit.message")
            if content is None:
                return []
            text, attachments = content
            return [InboundEvent(external_id=original, kind=EventKind.EDIT, text=text, attachments=attachments,
                                 reply_to_id=_context_id(inner), **common)]
        if kind == "reaction":
            reaction = _object(message.get("reaction"), f"WhatsApp {where}.reaction")
            target = _text(reaction.get("message_id"))
            emoji = reaction.get("emoji") or ""
            if not emoji:
                self.skip(where, f"reaction removed from {target or 'a message'}")
                return []
            if not isinstance(emoji, str):
                raise PayloadError(f"WhatsApp {where}.reaction.emoji is not a string")
            return [InboundEvent(external_id=message_id, kind=EventKind.DIRECT_MESSAGE, text=emoji, reply_to_id=target,
                                 attachments=({"type": "reaction", "emoji": emoji, "message_id": target},), **common)]
        content = self._content(message, where)
        if content is None:
            return []
        text, attachments = content
        return [InboundEvent(external_id=message_id, kind=EventKind.DIRECT_MESSAGE, text=text,
                             reply_to_id=_context_id(message), attachments=attachments, **common)]

    def _content(self, message: dict[str, Any], where: str) -> tuple[str, tuple[dict[str, Any], ...]] | None:
        """The text and attachments of a message (or of an edit's new version); None, skipped, if unknown."""
        kind = _text(message.get("type"))
        if kind == "text":
            text = _object(message.get("text"), f"WhatsApp {where}.text").get("body") or ""
            if not isinstance(text, str):
                raise PayloadError(f"WhatsApp {where}.text.body is not a string")
            return text, ()
        if kind in MEDIA_TYPES:
            media = _object(message.get(kind), f"WhatsApp {where}.{kind}")
            summary = {"type": kind, **{k: media[k] for k in _MEDIA_FIELDS if media.get(k) not in (None, "")}}
            caption = media.get("caption") or ""
            return (caption if isinstance(caption, str) else ""), (summary,)
        if kind == "location":
            location = _object(message.get("location"), f"WhatsApp {where}.location")
            return "", ({"type": "location", **{k: location[k] for k in _LOCATION_FIELDS
                                               if location.get(k) not in (None, "")}},)
        if kind == "contacts":
            shared = _list(message.get("contacts"), f"WhatsApp {where}.contacts")
            return "", tuple({"type": "contact", **{k: c[k] for k in _CONTACT_FIELDS if c.get(k)}}
                             for c in shared if isinstance(c, dict))
        if kind == "button":
            button = _object(message.get("button"), f"WhatsApp {where}.button")
            return str(button.get("text") or ""), ({"type": "button", "payload": str(button.get("payload") or "")},)
        if kind == "interactive":
            interactive = _object(message.get("interactive"), f"WhatsApp {where}.interactive")
            reply_kind = _text(interactive.get("type"))
            reply = interactive.get(reply_kind)
            if reply_kind not in ("button_reply", "list_reply") or not isinstance(reply, dict):
                self.skip(where, f"interactive reply of type {reply_kind!r} is not a button or list reply")
                return None
            summary = {"type": reply_kind, "id": _text(reply.get("id"))}
            if reply.get("description"):
                summary["description"] = str(reply["description"])
            return str(reply.get("title") or ""), (summary,)
        if kind == "order":
            order = _object(message.get("order"), f"WhatsApp {where}.order")
            summary = {"type": "order", **{k: order[k] for k in ("catalog_id", "product_items") if order.get(k)}}
            return str(order.get("text") or ""), (summary,)
        self.skip(where, f"message type {kind!r} is not handled")
        return None

    @staticmethod
    def _customer(message: dict[str, Any], change: _Change, where: str, *, echo: bool) -> str:
        """The customer's phone number or business-scoped id: the sender, or for an echo the addressee."""
        if echo:
            customer = _text(message.get("to")) or _text(message.get("to_user_id"))
            if not customer or customer == change.display_phone_number:
                sender = _text(message.get("from"))
                customer = sender if sender != change.display_phone_number else ""
        else:
            customer = _text(message.get("from")) or _text(message.get("from_user_id"))
        if not customer:
            what = "to / to_user_id" if echo else "from / from_user_id"
            raise PayloadError(f"WhatsApp {where} names no customer ({what})")
        return customer

    @staticmethod
    def _author(message: dict[str, Any], change: _Change, customer: str) -> Author:
        contact = change.contact(_text(message.get("from")), _text(message.get("from_user_id")))
        profile = contact.get("profile") if contact and isinstance(contact.get("profile"), dict) else {}
        return Author(
            platform=PLATFORM,
            external_id=customer,
            scope=change.phone_number_id,
            handle=str(profile.get("username") or "").lstrip("@"),
            display_name=str(profile.get("name") or ""),
            raw=contact,
        )

    def _status(self, status: Any, where: str) -> list[InboundEvent]:
        status = _object(status, f"WhatsApp {where}")
        message_id = _required(status.get("id"), f"WhatsApp {where}.id")
        name = status.get("status")
        delivery = _STATUSES.get(name) if isinstance(name, str) else None
        if delivery is None:
            self.skip(where, f"status {name!r} is not sent, delivered, read, played or failed")
            return []
        recipient = _text(status.get("recipient_id"))
        thread_key = ""
        if recipient:
            thread_key = f"group:{recipient}" if status.get("recipient_type") == "group" else f"wa:{recipient}"
        return [InboundEvent(
            platform=PLATFORM,
            external_id=message_id,
            kind=EventKind.STATUS,
            occurred_at=self._time(status.get("timestamp"), where),
            text=errors_text(status.get("errors")),
            thread_key=thread_key,
            status=delivery,
            raw=status,
        )]

    @staticmethod
    def _time(value: Any, where: str) -> dt.datetime:
        try:
            return from_epoch_seconds(value)
        except PayloadError:
            logger.warning("whatsapp: %s: timestamp %.40r is not epoch seconds; using the receive time", where, value)
            return utc_now()

    # -- sending -----------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Send a text reply in the conversation `message.thread_key`, quoting `reply_to_id` when given."""
        token = self.credentials.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentError("whatsapp: the channel account has no access_token")
        number = self.external_id
        if not number.isdigit():
            raise PermanentError("whatsapp: the channel account's external_id must be its business phone number id")
        if not message.text.strip():
            raise PermanentError("whatsapp: the reply is empty")
        if self.max_reply_length and len(message.text) > self.max_reply_length:
            raise PermanentError(f"whatsapp: the reply is longer than {self.max_reply_length} characters")
        body: dict[str, Any] = {"messaging_product": "whatsapp", **_recipient(message), "type": "text",
                                "text": {"body": message.text}}
        if message.reply_to_id:
            body["context"] = {"message_id": message.reply_to_id}
        with self.http() as client:
            response = self.request(client, "POST", f"/{number}/messages", sending=True, json=body,
                                    headers={"Authorization": f"Bearer {token}"})
        try:
            answer = response.json()
        except ValueError:
            raise OutcomeUnknown("whatsapp: the reply was accepted with an answer that is not JSON") from None
        sent = answer.get("messages") if isinstance(answer, dict) else None
        sent_id = _text(sent[0].get("id")) if isinstance(sent, list) and sent and isinstance(sent[0], dict) else ""
        if not sent_id:
            raise OutcomeUnknown("whatsapp: the reply was accepted but the answer names no message id")
        return SendResult(external_id=sent_id, raw=answer, thread_key=message.thread_key)

    def http(self) -> httpx.Client:
        """The house client, plus a hook that reads Graph's error codes before the HTTP status is mapped."""
        client = super().http()
        client.event_hooks["response"].append(self._graph_error)
        return client

    def _graph_error(self, response: httpx.Response) -> None:
        """Raise RateLimited / TransientError for Graph errors that say so by code (Graph sends them as 4xx)."""
        if not 400 <= response.status_code < 500:
            return
        response.read()
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return
        if not isinstance(error, dict):
            return
        code = error.get("code")
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        detail = str(error.get("message") or "")[:200]
        if code in RATE_LIMIT_CODES:
            raise RateLimited(f"whatsapp: rate limited (Graph error {code}): {detail}",
                              reset_at=self.rate_limit_reset(response))
        if code in TRANSIENT_CODES or error.get("is_transient") is True:
            raise TransientError(f"whatsapp: temporary Graph error {code}: {detail}")

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """`Retry-After` if given, else the `estimated_time_to_regain_access` (minutes) of
        `X-Business-Use-Case-Usage`, else a minute from now."""
        if response.headers.get("retry-after"):
            return retry_after(response, default_seconds=DEFAULT_RATE_LIMIT_WAIT)
        minutes = _regain_minutes(response.headers.get("x-business-use-case-usage", ""))
        if minutes > 0:
            return utc_now() + dt.timedelta(minutes=minutes)
        return utc_now() + dt.timedelta(seconds=DEFAULT_RATE_LIMIT_WAIT)


def _recipient(message: OutboundMessage) -> dict[str, str]:
    """Whom to send to, from the thread key: a phone number (`to`), a business-scoped id (`recipient`) or a group."""
    key = message.thread_key
    if key.startswith("group:") and key[len("group:"):]:
        return {"recipient_type": "group", "to": key[len("group:"):]}
    if key.startswith("wa:") and key[len("wa:"):]:
        customer = key[len("wa:"):]
    elif not key and message.recipient is not None and message.recipient.external_id:
        customer = message.recipient.external_id
    else:
        raise PermanentError(f"whatsapp: cannot send to thread {key!r}: expected wa:<customer> or group:<group id>")
    if customer.lstrip("+").isdigit():
        return {"recipient_type": "individual", "to": customer}
    return {"recipient_type": "individual", "recipient": customer}


def _regain_minutes(header: str) -> int:
    """The largest `estimated_time_to_regain_access` in an `X-Business-Use-Case-Usage` header; 0 if none."""
    try:
        usage = json.loads(header) if header else {}
    except ValueError:
        return 0
    found = [entry.get("estimated_time_to_regain_access") for entries in (usage.values() if isinstance(usage, dict)
             else []) if isinstance(entries, list) for entry in entries if isinstance(entry, dict)]
    return max((m for m in found if isinstance(m, int) and not isinstance(m, bool)), default=0)
