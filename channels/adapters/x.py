"""X (Twitter): webhooks (Account Activity), polling (API v2) and replies, all into `InboundEvent`s.

What a body becomes (PLATFORMS.md section 1):

- **API v2 pages** (`data` / `includes` / `meta`; section 1a). Tweets in `data` (a list, or one object for a
  single lookup). The author comes from `author_id` joined on `includes.users`; a tweet without `author_id`
  (no `expansions=author_id`) gets `author=None`, never a made-up one. Media come from `attachments.media_keys`
  joined on `includes.media` (a key that is not in `includes` is still listed, with its key only).
  DM events (`event_type`): only `MessageCreate`, as `dm` with thread key `dm:<dm_conversation_id>` and the
  author from `sender_id`; an event without `dm_conversation_id` cannot be threaded, so the page is refused.
  Bodies without tweets are recognised: an empty page (`meta.result_count == 0`), the acks of our own writes
  (`{"data": {"deleted": true}}`, `{"hidden": ...}`, a DM send's `dm_event_id`) and user lookups give no
  events; a problem document (`title`/`detail`/`errors` without `data`) raises `PayloadError`.
- **v1.1 Tweet objects** (section 1b): a REST timeline (a list), a search body (`statuses`), one status, and
  the tweets of Account Activity `tweet_create_events`. The id is `id_str` (the numeric `id` overflows
  doubles and is never read); the author is `user` (`id_str`, `screen_name`, `name`,
  `profile_image_url_https`), absent when the delivery has no `user`. Text: `extended_tweet.full_text` over
  `full_text` over the (maybe truncated) `text`; a retweet's own text is cut, so it becomes
  `RT @<author>: <text of the retweeted tweet>` when the retweeted tweet is whole (a REST answer without
  `tweet_mode=extended` cuts both; then the retweet's own, longer, text is kept). Edits:
  `edit_history.edit_tweet_ids` (enterprise and Account Activity) or `ext_edit_control` (REST), treated as
  the v2 `edit_history_tweet_ids`. Media from `extended_entities`.
- **v1.1 DM events** (`direct_message_events`, `{"event": ...}`, `{"events": [...]}`): `message_create` only,
  as `dm` at `created_timestamp` (ms). DM ids are shared with v2 and a one-to-one v2 conversation id is
  `"<smaller user id>-<larger user id>"`, so the thread key is `dm:` + the numerically sorted
  sender/recipient pair: a DM polled through v2 and one delivered by webhook land in the same thread.
- **Account Activity envelopes** (section 1c): `for_user_id` must be this account (when `external_id` is
  set), else the body is refused: it belongs to another account. `tweet_create_events` and
  `direct_message_events` as above (authors of DMs from the `users` map); `tweet_delete_events` -> `delete`
  at `timestamp_ms`. Likes, follows, blocks, mutes, typing and read receipts, revokes, replay-job notices and
  unknown kinds are skipped (`self.skip`), never an error. X Activity API (XAA) events are skipped too.

Common to all:

- Kind: `reply` when the tweet answers another one; else our own tweets (author = `external_id`, or the
  Account Activity `for_user_id`) are `post` with direction `out`, and everybody else's are `mention` (a
  mention of us, a quote of ours, a retweet naming us). Our own replies and DMs are direction `out` too.
- Quotes keep their kind and get an attachment `{"type": "quote", "tweet_id", "url"}`.
- Thread key: `conversation_id` when X sent it (v2 with `tweet.fields=conversation_id`, which the poller asks
  for). Otherwise the reply chain is walked through every tweet of the same body (v2 `data` and
  `includes.tweets`; v1.1 tweets and their nested retweeted / quoted tweets) up to the oldest known
  ancestor: the key is that ancestor's `conversation_id`, or the id of the tweet it replies to, or its own id.
- Edits: when a tweet is not its own first version, the stable id is the first one: we emit the create on that
  id (its time read from the snowflake, its text the newest we have) and an `edit` on the same id at the new
  version's time with the new text. Both are deterministic, so re-reading the body changes nothing.
- Text is plain text: X escapes `&`, `<` and `>` in tweets as `&amp;`, `&lt;`, `&gt;`, which are undone once.
  DM texts are taken as sent.
- Time: `created_at` (ISO-8601 in v2, `Wed May 24 20:43:24 +0000 2017` in v1.1); when missing, the time in
  the snowflake id (X ids carry their creation time in milliseconds since 2010-11-04T01:42:54.657Z, bits 22 up).
- Hidden replies: X reports no hiding in tweets or webhooks; the ack of our own hide / unhide gives no event
  and the reply stays recorded.

Webhooks: `verify_webhook` checks `x-twitter-webhooks-signature` (`sha256=` + base64 HMAC-SHA256 of the raw
body with the app's consumer secret); `handshake` answers the CRC GET (`crc_token`).

Polling (`fetch`): the mentions timeline `GET /2/users/:id/mentions`, then, at most every `dm_poll_seconds`
(config, default 300: the DM endpoint allows 15 calls per 15 minutes), `GET /2/dm_events`. The cursor:

- `since_id`: the newest mention stored by a finished run; while a run pages back, `pagination_token` and
  `newest_id` (the newest id of that run) are kept beside it, and `since_id` moves to `newest_id` only once
  the last page is stored. An interrupted run resumes from its token and loses nothing.
- `phase: "dms"` while the DM part of a run is under way; `dm_since_id`, `dm_pagination_token`,
  `dm_newest_id` play the same roles for DM events (whose endpoint has no `since_id`: paging stops at the
  first event not newer than `dm_since_id`), and `dm_next_at` is the earliest time of the next DM poll.
  `config["poll_dms"] = False` turns DM polling off.

Replies (`send`): a public reply is `POST /2/tweets` with `reply.in_reply_to_tweet_id`; a private one is
`POST /2/dm_conversations/with/:recipient/messages` (or, without a recipient, into the `dm:` conversation of
the thread). `find_sent` looks for a public reply among our own tweets newer than the tweet it answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import httpx

from .base import (
    Author,
    BaseAdapter,
    Direction,
    EventKind,
    FetchResult,
    HandshakeResponse,
    InboundEvent,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    SendResult,
    WebhookRequest,
    check_signature,
    decode_payload,
    hmac_digest,
    retry_after,
)
from .timeparse import from_epoch_millis, parse_iso8601, parse_twitter_legacy, utc_now

PLATFORM = "x"
# X snowflake ids: milliseconds since this epoch, shifted left by 22 bits.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
# Keys of the `data` object X returns for our own writes (delete, hide, DM send, like, retweet, ...).
_ACK_KEYS = frozenset({"deleted", "hidden", "dm_conversation_id", "dm_event_id", "liked", "retweeted", "bookmarked",
                       "following", "blocking", "muting"})
# Account Activity kinds that are not something a customer said, and why they are skipped.
_ACTIVITY_SKIPPED = {
    "favorite_events": "a like", "follow_events": "a follow or unfollow", "unfollow_events": "an unfollow",
    "block_events": "a block or unblock", "unblock_events": "an unblock", "mute_events": "a mute or unmute",
    "unmute_events": "an unmute", "direct_message_indicate_typing_events": "a typing indicator",
    "direct_message_mark_read_events": "a read receipt", "user_event": "an app authorisation revoke",
    "replay_job_status": "a replay job notice", "spaces_events": "a Spaces event",
}
# Envelope keys that carry context, not events.
_ACTIVITY_CONTEXT = frozenset({"for_user_id", "users", "apps", "user_has_blocked", "is_blocked_by", "source",
                               "target"})

# What the poller asks X for, so that every event has its author, thread and media.
MENTION_EXPANSIONS = ("author_id,referenced_tweets.id,referenced_tweets.id.author_id,in_reply_to_user_id,"
                      "attachments.media_keys")
TWEET_FIELDS = ("id,text,created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,attachments,"
                "edit_history_tweet_ids,entities,lang")
USER_FIELDS = "id,name,username,profile_image_url"
MEDIA_FIELDS = "media_key,type,url,preview_image_url,alt_text,width,height,duration_ms"
DM_EVENT_FIELDS = "id,event_type,text,created_at,dm_conversation_id,sender_id,participant_ids,attachments"
DM_EXPANSIONS = "sender_id,attachments.media_keys"
SENT_TWEET_FIELDS = "created_at,author_id,conversation_id,in_reply_to_user_id,referenced_tweets,edit_history_tweet_ids"
DEFAULT_PAGE_SIZE = 100
DEFAULT_DM_POLL_SECONDS = 300
# Pages of our own tweets `find_sent` reads before it gives up deciding.
FIND_SENT_PAGES = 5

_ESCAPED = re.compile(r"&(amp|lt|gt);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">"}
_URL_LIKE = re.compile(r"(?:https?://\S+|\b[\w-]+(?:\.[\w-]+)+(?:/\S*)?)", re.IGNORECASE)
_LEADING_MENTIONS = re.compile(r"^(?:@\w+\s+)+")
_CONVERSATION_ID = re.compile(r"^\d+(?:-\d+)?$")


def snowflake_time(tweet_id: str) -> dt.datetime:
    """The creation time encoded in an X snowflake id (tweets, DM events), as an aware UTC datetime."""
    if not isinstance(tweet_id, str) or not _is_numeric(tweet_id):
        raise PayloadError(f"X id {tweet_id!r} is not a numeric snowflake, so it carries no time")
    millis = (int(tweet_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)


def _id(value: Any, what: str) -> str:
    """An X id as an opaque string. A JSON integer is converted exactly; a float (a rounded id) is refused."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"{what} is missing or not an id: {value!r}")


def _optional_id(value: Any, what: str) -> str:
    return "" if value is None or value == "" else _id(value, what)


def _is_numeric(value: str) -> bool:
    return value.isascii() and value.isdigit()


def _numeric(value: str, what: str) -> int:
    if not _is_numeric(value):
        raise PayloadError(f"{what} {value!r} is not a numeric X id")
    return int(value)


def _newest(*ids: Any) -> str:
    """The largest of some snowflake ids (empty values ignored), as a string; empty when there is none."""
    found = [str(i) for i in ids if i not in (None, "")]
    return max(found, key=lambda i: _numeric(i, "X id")) if found else ""


def _plain(text: str) -> str:
    """Tweet text as the author wrote it: X's `&amp;`, `&lt;`, `&gt;` undone, in one pass."""
    return _ESCAPED.sub(lambda m: _UNESCAPED[m.group(1)], text)


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{what} is not a string")
    return value


def _quote(tweet_id: str) -> dict[str, str]:
    return {"type": "quote", "tweet_id": tweet_id, "url": f"https://x.com/i/web/status/{tweet_id}"}


def dm_pair_key(first: str, second: str) -> str:
    """The thread key of a one-to-one DM: X's v2 conversation id `<smaller id>-<larger id>`, prefixed `dm:`."""
    low, high = sorted((first, second), key=lambda i: _numeric(i, "X DM participant id"))
    return f"dm:{low}-{high}"


class _Chain:
    """Every tweet one body holds, by id: its parent and conversation id, for walking reply chains."""

    def __init__(self) -> None:
        self.parents: dict[str, str] = {}
        self.conversations: dict[str, str] = {}

    def add(self, tweet_id: str, parent: str, conversation: str = "") -> None:
        self.parents.setdefault(tweet_id, parent)
        if conversation:
            self.conversations.setdefault(tweet_id, conversation)

    def thread_key(self, tweet_id: str, own_id: str) -> str:
        """`conversation_id`, else the root of the reply chain as far as this body knows it, else `own_id`."""
        seen = {tweet_id}
        current = tweet_id
        while True:
            if self.conversations.get(current):
                return self.conversations[current]
            parent = self.parents.get(current, "")
            if not parent:
                return own_id if current == tweet_id else current
            if parent in seen or parent not in self.parents:
                return parent
            seen.add(parent)
            current = parent


class XAdapter(BaseAdapter):
    """An X account. `external_id` is our X user id: tweets and DMs by it are outbound, and it is polled."""

    platform = PLATFORM
    pollable = True
    api_base_url = "https://api.x.com"
    max_reply_length = 280

    # -- parsing ------------------------------------------------------------------------------------------------

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one X body (API v2 page, v1.1 tweets or DM events, Account Activity envelope) into events."""
        body = decode_payload(payload, "X")
        if isinstance(body, list):
            return self._v1_tweets(body, "X v1.1 timeline", self.external_id)
        if not isinstance(body, dict):
            raise PayloadError(f"X payload must be a JSON object, got {type(body).__name__}")
        if "data" not in body:
            if "for_user_id" in body or any(k.endswith("_events") or k in _ACTIVITY_SKIPPED for k in body):
                return self._activity(body)
            if "statuses" in body:
                return self._v1_tweets(body["statuses"], "X v1.1 search statuses", self.external_id)
            if "event" in body or "events" in body:
                events = [body["event"]] if "event" in body else body["events"]
                return self._v1_dms(events, "X v1.1 DM events", {}, self.external_id)
            if "id_str" in body:
                return self._v1_tweets([body], "X v1.1 status", self.external_id)
        return self._v2(body)

    def _is_ours(self, author: Author | None, us: str) -> bool:
        return bool(author and us and author.external_id == us)

    def _events(self, *, kind: EventKind, tweet_id: str, original_id: str, version_time: dt.datetime,
                **common: Any) -> list[InboundEvent]:
        """The create (and, for a later version of an edited tweet, the edit) of one tweet."""
        common = {"platform": PLATFORM, "external_id": original_id, **common}
        if original_id == tweet_id:
            return [InboundEvent(kind=kind, occurred_at=version_time, **common)]
        return [
            InboundEvent(kind=kind, occurred_at=snowflake_time(original_id), **common),
            InboundEvent(kind=EventKind.EDIT, occurred_at=version_time, **common),
        ]

    @staticmethod
    def _kind(reply_to: str, outbound: bool) -> EventKind:
        if reply_to:
            return EventKind.REPLY
        return EventKind.POST if outbound else EventKind.MENTION

    # -- API v2 -------------------------------------------------------------------------------------------------

    def _v2(self, body: dict[str, Any]) -> list[InboundEvent]:
        if "data" not in body:
            if "title" in body or "detail" in body or "errors" in body:
                detail = body.get("detail") or "; ".join(
                    str(e.get("message") or e.get("detail") or e) for e in body.get("errors") or [] if e)
                raise PayloadError(f"X returned an error instead of `data`: {body.get('title', 'error')}: {detail}")
            meta = body.get("meta")
            if isinstance(meta, dict) and meta.get("result_count") == 0:
                return []
            raise PayloadError("X payload has no `data` (and is not an empty page with meta.result_count == 0)")
        data = body["data"]
        if isinstance(data, dict):
            if "id" not in data and _ACK_KEYS.intersection(data):
                return []
            if "event_uuid" in data:
                self.skip("data", f"X Activity API event {data.get('event_type')!r}: not supported")
                return []
            items = [data]
        elif isinstance(data, list):
            items = data
        else:
            raise PayloadError(f"X `data` must be a list or an object, got {type(data).__name__}")
        includes = body.get("includes") or {}
        if not isinstance(includes, dict):
            raise PayloadError("X `includes` must be an object")
        context = _Context(includes, items)
        events: list[InboundEvent] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise PayloadError(f"X data[{index}] is not an object")
            if "event_type" in item:
                events.extend(self._v2_dm(item, index, context))
            elif "username" in item and "text" not in item:
                self.skip("data" if isinstance(data, dict) else f"data[{index}]", "a user object, not a tweet")
            else:
                events.extend(self._v2_tweet(item, index, context))
        return events

    def _v2_tweet(self, tweet: dict[str, Any], index: int, context: _Context) -> list[InboundEvent]:
        tweet_id = _id(tweet.get("id"), f"X data[{index}].id")
        history = tweet.get("edit_history_tweet_ids") or []
        if not isinstance(history, list):
            raise PayloadError(f"X data[{index}].edit_history_tweet_ids must be a list")
        history = [_id(v, f"X data[{index}].edit_history_tweet_ids[]") for v in history]
        original_id = history[0] if history else tweet_id
        version_time = (parse_iso8601(tweet["created_at"]) if tweet.get("created_at")
                        else snowflake_time(tweet_id))
        refs = _references(tweet, index)
        replied_to = refs.get("replied_to", "")
        author = context.author(tweet.get("author_id"), f"X data[{index}].author_id")
        outbound = self._is_ours(author, self.external_id)
        attachments = context.attachments(tweet, index)
        if refs.get("quoted"):
            attachments = (*attachments, _quote(refs["quoted"]))
        return self._events(
            kind=self._kind(replied_to, outbound), tweet_id=tweet_id, original_id=original_id,
            version_time=version_time, author=author,
            text=_plain(_string(tweet.get("text"), f"X data[{index}].text")),
            thread_key=context.chain.thread_key(tweet_id, original_id), reply_to_id=replied_to,
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND, attachments=attachments, raw=tweet,
        )

    def _v2_dm(self, event: dict[str, Any], index: int, context: _Context) -> list[InboundEvent]:
        if event.get("event_type") != "MessageCreate":
            return []  # ParticipantsJoin / ParticipantsLeave: nothing a customer said
        event_id = _id(event.get("id"), f"X DM data[{index}].id")
        conversation = event.get("dm_conversation_id")
        if not conversation:
            raise PayloadError(
                f"X DM event {event_id} has no `dm_conversation_id`, so it cannot be threaded: request "
                "dm_event.fields=dm_conversation_id,sender_id,created_at")
        author = context.author(event.get("sender_id"), f"X DM data[{index}].sender_id")
        outbound = self._is_ours(author, self.external_id)
        return [InboundEvent(
            platform=PLATFORM,
            external_id=event_id,
            kind=EventKind.DIRECT_MESSAGE,
            occurred_at=parse_iso8601(event["created_at"]) if event.get("created_at") else snowflake_time(event_id),
            author=author,
            text=_string(event.get("text"), f"X DM data[{index}].text"),
            thread_key=f"dm:{_id(conversation, f'X DM data[{index}].dm_conversation_id')}",
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=context.attachments(event, index),
            raw=event,
        )]

    # -- v1.1 tweets --------------------------------------------------------------------------------------------

    def _v1_tweets(self, tweets: Any, where: str, us: str) -> list[InboundEvent]:
        if not isinstance(tweets, list):
            raise PayloadError(f"{where} must be a list of tweets")
        chain = _Chain()
        for index, tweet in enumerate(tweets):
            if not isinstance(tweet, dict):
                raise PayloadError(f"{where}[{index}] is not an object")
            _v1_collect(tweet, f"{where}[{index}]", chain)
        events: list[InboundEvent] = []
        for index, tweet in enumerate(tweets):
            events.extend(self._v1_tweet(tweet, f"{where}[{index}]", chain, us))
        return events

    def _v1_tweet(self, tweet: dict[str, Any], where: str, chain: _Chain, us: str) -> list[InboundEvent]:
        tweet_id = _v1_id(tweet, where)
        history = _v1_edit_history(tweet, where)
        original_id = history[0] if history else tweet_id
        if tweet.get("created_at"):
            version_time = parse_twitter_legacy(tweet["created_at"])
        elif tweet.get("timestamp_ms"):
            version_time = from_epoch_millis(tweet["timestamp_ms"])
        else:
            version_time = snowflake_time(tweet_id)
        author = _v1_author(tweet.get("user"), f"{where}.user")
        outbound = self._is_ours(author, us)
        reply_to = _optional_id(tweet.get("in_reply_to_status_id_str"), f"{where}.in_reply_to_status_id_str")
        attachments = _v1_media(tweet, where)
        quoted = _optional_id(tweet.get("quoted_status_id_str"), f"{where}.quoted_status_id_str")
        if quoted and "retweeted_status" not in tweet:
            attachments = (*attachments, _quote(quoted))
        return self._events(
            kind=self._kind(reply_to, outbound), tweet_id=tweet_id, original_id=original_id,
            version_time=version_time, author=author, text=_plain(_v1_text(tweet, where)),
            thread_key=chain.thread_key(tweet_id, original_id), reply_to_id=reply_to,
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND, attachments=attachments, raw=tweet,
        )

    # -- v1.1 direct messages -----------------------------------------------------------------------------------

    def _v1_dms(self, events: Any, where: str, users: Any, us: str) -> list[InboundEvent]:
        if not isinstance(events, list):
            raise PayloadError(f"{where} must be a list of DM events")
        if not isinstance(users, dict):
            raise PayloadError(f"{where}: `users` must be an object keyed by user id")
        found: list[InboundEvent] = []
        for index, event in enumerate(events):
            place = f"{where}[{index}]"
            if not isinstance(event, dict):
                raise PayloadError(f"{place} is not an object")
            if event.get("type") != "message_create":
                self.skip(place, f"DM event type {event.get('type')!r} is not a message")
                continue
            found.append(self._v1_dm(event, place, users, us))
        return found

    def _v1_dm(self, event: dict[str, Any], where: str, users: dict[str, Any], us: str) -> InboundEvent:
        event_id = _id(event.get("id"), f"{where}.id")
        message = event.get("message_create")
        if not isinstance(message, dict):
            raise PayloadError(f"{where} has no message_create object")
        sender = _id(message.get("sender_id"), f"{where}.message_create.sender_id")
        target = message.get("target")
        recipient = _id(target.get("recipient_id") if isinstance(target, dict) else None,
                        f"{where}.message_create.target.recipient_id")
        data = message.get("message_data")
        if not isinstance(data, dict):
            raise PayloadError(f"{where}.message_create has no message_data object")
        if event.get("created_timestamp") in (None, ""):
            raise PayloadError(f"{where} has no created_timestamp")
        user = users.get(sender)
        author = _v1_author(user, f"{where}.users[{sender}]") if user is not None else Author(
            platform=PLATFORM, external_id=sender)
        return InboundEvent(
            platform=PLATFORM,
            external_id=event_id,
            kind=EventKind.DIRECT_MESSAGE,
            occurred_at=from_epoch_millis(event["created_timestamp"]),
            author=author,
            text=_string(data.get("text"), f"{where}.message_data.text"),
            thread_key=dm_pair_key(sender, recipient),
            direction=Direction.OUTBOUND if us and sender == us else Direction.INBOUND,
            attachments=_v1_dm_attachment(data.get("attachment"), where),
            raw=event,
        )

    # -- Account Activity envelopes -----------------------------------------------------------------------------

    def _activity(self, body: dict[str, Any]) -> list[InboundEvent]:
        us = self.external_id
        if body.get("for_user_id") is not None:
            for_user = _id(body["for_user_id"], "X Account Activity for_user_id")
            if self.external_id and for_user != self.external_id:
                raise PayloadError(f"X Account Activity body is for user {for_user}, not for this account "
                                   f"({self.external_id}): it must not be recorded here")
            us = us or for_user
        events: list[InboundEvent] = []
        for key, value in body.items():
            if key in _ACTIVITY_CONTEXT:
                continue
            if key == "tweet_create_events":
                events.extend(self._v1_tweets(value, "X tweet_create_events", us))
            elif key == "direct_message_events":
                users = body.get("users")
                events.extend(self._v1_dms(value, "X direct_message_events", {} if users is None else users, us))
            elif key == "tweet_delete_events":
                events.extend(self._deletes(value, us))
            elif key in _ACTIVITY_SKIPPED:
                self.skip(key, f"{_ACTIVITY_SKIPPED[key]}, not an interaction")
            else:
                self.skip(key, "unknown X Account Activity event kind")
        return events

    def _deletes(self, items: Any, us: str) -> list[InboundEvent]:
        if not isinstance(items, list):
            raise PayloadError("X tweet_delete_events must be a list")
        events = []
        for index, item in enumerate(items):
            where = f"X tweet_delete_events[{index}]"
            status = item.get("status") if isinstance(item, dict) else None
            if not isinstance(status, dict):
                raise PayloadError(f"{where} has no status object")
            tweet_id = _id(status.get("id"), f"{where}.status.id")
            user_id = _optional_id(status.get("user_id"), f"{where}.status.user_id")
            events.append(InboundEvent(
                platform=PLATFORM,
                external_id=tweet_id,
                kind=EventKind.DELETE,
                occurred_at=from_epoch_millis(item["timestamp_ms"]) if item.get("timestamp_ms") else utc_now(),
                author=Author(platform=PLATFORM, external_id=user_id) if user_id else None,
                direction=Direction.OUTBOUND if us and user_id == us else Direction.INBOUND,
                raw=item,
            ))
        return events

    # -- webhooks -----------------------------------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        """`x-twitter-webhooks-signature` must be `sha256=` + base64 HMAC-SHA256(consumer secret, raw body)."""
        secret = self.secret("consumer_secret")
        check_signature(request.header("x-twitter-webhooks-signature"), hmac_digest(secret, request.body),
                        prefix="sha256=", encoding="base64")

    def handshake(self, request: WebhookRequest) -> HandshakeResponse | None:
        """X's CRC: a GET with `crc_token` is answered with `{"response_token": "sha256=<base64 HMAC>"}`."""
        token = request.query.get("crc_token") or ""
        if request.method.upper() != "GET" or not token:
            return None
        digest = hmac_digest(self.secret("consumer_secret"), token.encode())
        body = json.dumps({"response_token": "sha256=" + base64.b64encode(digest).decode()})
        return HandshakeResponse(body=body, content_type="application/json")

    # -- HTTP ---------------------------------------------------------------------------------------------------

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """X's `x-rate-limit-reset` (epoch seconds); `Retry-After` or a default when it is absent or past."""
        value = response.headers.get("x-rate-limit-reset", "").strip()
        if value.isdigit():
            try:
                reset = dt.datetime.fromtimestamp(int(value), tz=dt.UTC)
            except (OverflowError, OSError, ValueError):
                reset = None
            if reset is not None and reset > utc_now():
                return reset
        return retry_after(response)

    def _me(self) -> str:
        if not _is_numeric(self.external_id):
            raise PermanentError("X: the channel account has no numeric X user id (external_id)")
        return self.external_id

    def _client(self) -> httpx.Client:
        token = self.credentials.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentError("X: the channel account has no OAuth 2 user access token (credentials.access_token)")
        client = self.http()
        client.headers["Authorization"] = f"Bearer {token}"
        return client

    def _get(self, client: httpx.Client, url: str, params: dict[str, Any]) -> dict[str, Any]:
        body = decode_payload(self.request(client, "GET", url, params=params).content, "X")
        if not isinstance(body, dict):
            raise PayloadError(f"X answered GET {url} with a JSON {type(body).__name__}, not an object")
        return body

    def _setting(self, key: str, default: int) -> int:
        """A whole-number setting from `config`; the default when it is missing or not a number."""
        try:
            return int(self.config.get(key) or default)
        except (TypeError, ValueError):
            return default

    def _page_size(self) -> int:
        return min(max(self._setting("page_size", DEFAULT_PAGE_SIZE), 5), 100)

    # -- polling ------------------------------------------------------------------------------------------------

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """One page of mentions, or (in the DM phase) of DM events; see the module docstring for the cursor."""
        me = self._me()
        with self._client() as client:
            if cursor.get("phase") == "dms":
                return self._fetch_dms(client, cursor)
            return self._fetch_mentions(client, me, cursor)

    def _fetch_mentions(self, client: httpx.Client, me: str, cursor: Mapping[str, Any]) -> FetchResult:
        since = str(cursor.get("since_id") or "")
        token = str(cursor.get("pagination_token") or "")
        params: dict[str, Any] = {"max_results": self._page_size(), "expansions": MENTION_EXPANSIONS,
                                  "tweet.fields": TWEET_FIELDS, "user.fields": USER_FIELDS,
                                  "media.fields": MEDIA_FIELDS}
        if since:
            params["since_id"] = since
        if token:
            params["pagination_token"] = token
        body = self._get(client, f"/2/users/{me}/mentions", params)
        events = self.parse(body)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        data = body.get("data") if isinstance(body.get("data"), list) else []
        newest = _newest(cursor.get("newest_id"), meta.get("newest_id"), *(t.get("id") for t in data))
        state = {k: v for k, v in cursor.items() if k in ("dm_since_id", "dm_next_at")}
        if meta.get("next_token"):
            state.update(since_id=since, pagination_token=str(meta["next_token"]), newest_id=newest)
            return FetchResult(events, _clean(state), has_more=True)
        state["since_id"] = newest or since
        if self._dms_due(cursor):
            state["phase"] = "dms"
            return FetchResult(events, _clean(state), has_more=True)
        return FetchResult(events, _clean(state), has_more=False)

    def _dms_due(self, cursor: Mapping[str, Any]) -> bool:
        if not self.config.get("poll_dms", True):
            return False
        next_at = cursor.get("dm_next_at")
        if not next_at:
            return True
        try:
            return utc_now() >= parse_iso8601(next_at)
        except PayloadError:
            return True

    def _fetch_dms(self, client: httpx.Client, cursor: Mapping[str, Any]) -> FetchResult:
        floor = str(cursor.get("dm_since_id") or "")
        token = str(cursor.get("dm_pagination_token") or "")
        params: dict[str, Any] = {"max_results": self._page_size(), "event_types": "MessageCreate",
                                  "dm_event.fields": DM_EVENT_FIELDS, "expansions": DM_EXPANSIONS,
                                  "user.fields": USER_FIELDS, "media.fields": MEDIA_FIELDS}
        if token:
            params["pagination_token"] = token
        body = self._get(client, "/2/dm_events", params)
        data = body.get("data") if isinstance(body.get("data"), list) else []
        ids = [_id(e.get("id"), "X DM event id") if isinstance(e, dict) else "" for e in data]
        reached = False
        if floor and data:
            # No since_id on this endpoint: drop what is not newer than the stored position, and stop paging there.
            floor_number = _numeric(floor, "X cursor dm_since_id")
            fresh = [e for e, i in zip(data, ids, strict=True) if not i or _numeric(i, "X DM event id") > floor_number]
            reached = len(fresh) < len(data)
            body = {**body, "data": fresh}
        events = self.parse(body)
        newest = _newest(cursor.get("dm_newest_id"), *ids)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        state = {k: v for k, v in cursor.items() if k == "since_id"}
        if meta.get("next_token") and not reached:
            state.update(phase="dms", dm_since_id=floor, dm_pagination_token=str(meta["next_token"]),
                         dm_newest_id=newest, dm_next_at=cursor.get("dm_next_at"))
            return FetchResult(events, _clean(state), has_more=True)
        interval = dt.timedelta(seconds=self._setting("dm_poll_seconds", DEFAULT_DM_POLL_SECONDS))
        state.update(dm_since_id=newest or floor, dm_next_at=(utc_now() + interval).isoformat())
        return FetchResult(events, _clean(state), has_more=False)

    # -- sending ------------------------------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Post a public reply (`POST /2/tweets`) or a DM; the new tweet id / DM event id is the external id."""
        if message.attachments:
            raise PermanentError("X: sending attachments is not supported; send the text alone")
        if not message.text.strip():
            raise PermanentError("X: a reply needs text")
        if message.private:
            url = self._dm_url(message)
            with self._client() as client:
                response = self.request(client, "POST", url, sending=True, json={"text": message.text})
            body, data = _sent(response)
            event_id = data.get("dm_event_id")
            if not event_id:
                raise OutcomeUnknown(f"X accepted the DM (HTTP {response.status_code}) but sent no dm_event_id")
            conversation = data.get("dm_conversation_id")
            return SendResult(external_id=str(event_id), raw=body,
                              thread_key=f"dm:{conversation}" if conversation else message.thread_key)
        if not message.reply_to_id:
            raise PermanentError("X: a public reply needs the id of the tweet it answers (reply_to_id)")
        payload = {"text": message.text, "reply": {"in_reply_to_tweet_id": message.reply_to_id}}
        with self._client() as client:
            response = self.request(client, "POST", "/2/tweets", sending=True, json=payload)
        body, data = _sent(response)
        if not data.get("id"):
            raise OutcomeUnknown(f"X accepted the reply (HTTP {response.status_code}) but sent no tweet id")
        return SendResult(external_id=str(data["id"]), raw=body, thread_key=message.thread_key or message.reply_to_id)

    def _dm_url(self, message: OutboundMessage) -> str:
        recipient = message.recipient.external_id if message.recipient else ""
        if recipient:
            if not _is_numeric(recipient):
                raise PermanentError(f"X: DM recipient {recipient!r} is not a numeric X user id")
            return f"/2/dm_conversations/with/{recipient}/messages"
        conversation = message.thread_key.removeprefix("dm:") if message.thread_key.startswith("dm:") else ""
        if not _CONVERSATION_ID.match(conversation):
            raise PermanentError("X: a DM needs a recipient or a `dm:<conversation id>` thread key")
        return f"/2/dm_conversations/{conversation}/messages"

    def find_sent(self, message: OutboundMessage) -> SendResult | None:
        """A public reply we may have posted: our tweet answering `reply_to_id` with the same text, else None.

        Only tweets newer than the one answered can answer it, so `since_id` = `reply_to_id`. Texts are compared
        with X's changes undone (links shortened to t.co, leading @mentions added, `&amp;`, spacing). A DM cannot
        be looked up this way: OutcomeUnknown.
        """
        if message.private:
            raise OutcomeUnknown("X: whether a direct message was sent cannot be looked up; an agent must decide")
        if not message.reply_to_id:
            return None  # send refuses such a message before any request
        me = self._me()
        wanted = comparable_text(message.text)
        params: dict[str, Any] = {"since_id": message.reply_to_id, "max_results": 100, "exclude": "retweets",
                                  "tweet.fields": SENT_TWEET_FIELDS}
        with self._client() as client:
            for _ in range(FIND_SENT_PAGES):
                body = self._get(client, f"/2/users/{me}/tweets", params)
                for tweet in body.get("data") or []:
                    if _answers(tweet, me, message.reply_to_id) and comparable_text(tweet.get("text")) == wanted:
                        history = tweet.get("edit_history_tweet_ids") or [tweet["id"]]
                        return SendResult(external_id=str(history[0]), raw=tweet,
                                          thread_key=message.thread_key or str(tweet.get("conversation_id") or ""))
                meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
                if not meta.get("next_token"):
                    return None
                params["pagination_token"] = meta["next_token"]
        raise OutcomeUnknown(f"X: {FIND_SENT_PAGES} pages of our tweets did not settle whether the reply was posted")


def comparable_text(text: Any) -> str:
    """Text as X may give it back, reduced to what survives: no links or domains, no leading @mentions."""
    value = unicodedata.normalize("NFC", _plain(text if isinstance(text, str) else ""))
    value = _URL_LIKE.sub("<link>", value)
    value = _LEADING_MENTIONS.sub("", value.strip())
    return " ".join(value.split())


def _answers(tweet: Any, me: str, reply_to: str) -> bool:
    if not isinstance(tweet, dict) or not tweet.get("id"):
        return False
    if tweet.get("author_id") and str(tweet["author_id"]) != me:
        return False
    return any(isinstance(r, dict) and r.get("type") == "replied_to" and str(r.get("id")) == reply_to
               for r in tweet.get("referenced_tweets") or [])


def _sent(response: httpx.Response) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON body of a successful send and its `data`; OutcomeUnknown when it cannot be read."""
    try:
        body = response.json()
    except ValueError:
        raise OutcomeUnknown(f"X accepted the message (HTTP {response.status_code}); its answer is not JSON") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise OutcomeUnknown(f"X accepted the message (HTTP {response.status_code}) but its answer has no `data`")
    return body, data


def _clean(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if v not in (None, "")}


# -- v1.1 helpers ---------------------------------------------------------------------------------------------------


def _v1_id(tweet: dict[str, Any], where: str) -> str:
    value = tweet.get("id_str")
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where} has no id_str (the numeric `id` is not read: it overflows doubles)")
    return value.strip()


def _v1_collect(tweet: dict[str, Any], where: str, chain: _Chain) -> None:
    """Add a tweet and the tweets nested in it (retweeted, quoted) to the chain of known tweets."""
    chain.add(_v1_id(tweet, where),
              _optional_id(tweet.get("in_reply_to_status_id_str"), f"{where}.in_reply_to_status_id_str"))
    for key in ("retweeted_status", "quoted_status"):
        nested = tweet.get(key)
        if isinstance(nested, dict) and nested.get("id_str"):
            _v1_collect(nested, f"{where}.{key}", chain)


def _v1_edit_history(tweet: dict[str, Any], where: str) -> list[str]:
    """Every version id of an edited tweet, oldest first (empty when the tweet says nothing about edits)."""
    history = tweet.get("edit_history")
    control = tweet.get("ext_edit_control")
    ids: Any = None
    initial: Any = None
    if isinstance(history, dict):
        ids, initial = history.get("edit_tweet_ids"), history.get("initial_tweet_id")
    elif isinstance(control, dict):
        if isinstance(control.get("initial"), dict):
            ids = control["initial"].get("edit_tweet_ids")
        elif isinstance(control.get("edit"), dict):
            edit = control["edit"]
            initial = edit.get("initial_tweet_id")
            ids = (edit.get("edit_control_initial") or {}).get("edit_tweet_ids")
    elif "edit_history_tweet_ids" in tweet:
        ids = tweet["edit_history_tweet_ids"]
    if ids is None:
        return [_id(initial, f"{where}.initial_tweet_id"), _v1_id(tweet, where)] if initial else []
    if not isinstance(ids, list):
        raise PayloadError(f"{where}: the edit history must be a list of ids")
    found = [_id(v, f"{where}: edit history id") for v in ids]
    if initial and (not found or found[0] != str(initial)):
        found.insert(0, _id(initial, f"{where}.initial_tweet_id"))
    return found


def _v1_author(user: Any, where: str) -> Author | None:
    """A v1.1 user object (or an Account Activity `users` entry) as an author; None when there is no user."""
    if user is None:
        return None
    if not isinstance(user, dict):
        raise PayloadError(f"{where} is not an object")
    handle = str(user.get("screen_name") or "")
    return Author(
        platform=PLATFORM,
        external_id=_id(user.get("id_str") or user.get("id"), f"{where}.id_str"),
        handle=handle,
        display_name=str(user.get("name") or ""),
        avatar_url=str(user.get("profile_image_url_https") or user.get("profile_image_url") or ""),
        profile_url=f"https://x.com/{handle}" if handle else "",
        raw=user,
    )


def _v1_text(tweet: dict[str, Any], where: str) -> str:
    """The whole text of a v1.1 tweet, still escaped as X sends it."""
    retweeted = tweet.get("retweeted_status")
    if isinstance(retweeted, dict) and _v1_complete(retweeted):
        inner = _v1_text(retweeted, f"{where}.retweeted_status")
        user = retweeted.get("user")
        name = user.get("screen_name") if isinstance(user, dict) else ""
        return f"RT @{name}: {inner}" if name else inner
    extended = tweet.get("extended_tweet")
    if isinstance(extended, dict) and extended.get("full_text") is not None:
        return _string(extended["full_text"], f"{where}.extended_tweet.full_text")
    if tweet.get("full_text") is not None:
        return _string(tweet["full_text"], f"{where}.full_text")
    return _string(tweet.get("text"), f"{where}.text")


def _v1_complete(tweet: dict[str, Any]) -> bool:
    """Whether a tweet object carries its whole text (not cut, or with `extended_tweet` / `full_text`)."""
    extended = tweet.get("extended_tweet")
    return not tweet.get("truncated") or "full_text" in tweet or (
        isinstance(extended, dict) and "full_text" in extended)


def _v1_media(tweet: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """A summary of each medium in `extended_entities` (of `extended_tweet` first, for long tweets)."""
    extended = tweet.get("extended_tweet") if isinstance(tweet.get("extended_tweet"), dict) else {}
    entities = extended.get("extended_entities") or tweet.get("extended_entities") or {}
    media = entities.get("media") if isinstance(entities, dict) else None
    if media is None:
        return ()
    if not isinstance(media, list):
        raise PayloadError(f"{where}.extended_entities.media must be a list")
    return tuple(_v1_medium(m) for m in media if isinstance(m, dict))


def _v1_medium(medium: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"type": str(medium.get("type") or "")}
    for key, field in (("id", "id_str"), ("url", "media_url_https"), ("expanded_url", "expanded_url"),
                       ("alt_text", "ext_alt_text")):
        if medium.get(field):
            summary[key] = medium[field]
    variants = (medium.get("video_info") or {}).get("variants") or []
    videos = [v for v in variants if isinstance(v, dict) and v.get("content_type") == "video/mp4" and v.get("url")]
    if videos:
        summary["video_url"] = max(videos, key=lambda v: v.get("bitrate") or 0)["url"]
    return summary


def _v1_dm_attachment(attachment: Any, where: str) -> tuple[dict[str, Any], ...]:
    if attachment is None:
        return ()
    if not isinstance(attachment, dict):
        raise PayloadError(f"{where}.message_data.attachment is not an object")
    medium = attachment.get("media")
    if attachment.get("type") == "media" and isinstance(medium, dict):
        return (_v1_medium(medium),)
    return ({"type": str(attachment.get("type") or "")},)


# -- v2 helpers -----------------------------------------------------------------------------------------------------


def _references(tweet: dict[str, Any], index: int) -> dict[str, str]:
    """`referenced_tweets` as {type: id} (replied_to, quoted, retweeted)."""
    refs = tweet.get("referenced_tweets") or []
    if not isinstance(refs, list):
        raise PayloadError(f"X data[{index}].referenced_tweets must be a list")
    found: dict[str, str] = {}
    for ref in refs:
        if not isinstance(ref, dict) or not ref.get("type"):
            raise PayloadError(f"X data[{index}].referenced_tweets holds a malformed reference: {ref!r}")
        found.setdefault(str(ref["type"]), _id(ref.get("id"), f"X data[{index}].referenced_tweets[].id"))
    return found


class _Context:
    """The lookups one v2 body offers: users, media and every tweet it contains (for the reply chain)."""

    def __init__(self, includes: dict[str, Any], items: list[Any]) -> None:
        self.users = {str(u["id"]): u for u in includes.get("users") or [] if isinstance(u, dict) and u.get("id")}
        self.media_by_key = {str(m["media_key"]): m for m in includes.get("media") or []
                             if isinstance(m, dict) and m.get("media_key")}
        self.chain = _Chain()
        for tweet in [*items, *(includes.get("tweets") or [])]:
            if isinstance(tweet, dict) and tweet.get("id") and "event_type" not in tweet:
                parent = next((str(r.get("id")) for r in tweet.get("referenced_tweets") or []
                               if isinstance(r, dict) and r.get("type") == "replied_to" and r.get("id")), "")
                self.chain.add(str(tweet["id"]), parent, str(tweet.get("conversation_id") or ""))

    def author(self, user_id: Any, what: str) -> Author | None:
        """The author behind `user_id`, enriched from `includes.users`; None when the id is absent."""
        if user_id is None or user_id == "":
            return None
        uid = _id(user_id, what)
        user = self.users.get(uid, {})
        return Author(
            platform=PLATFORM,
            external_id=uid,
            handle=str(user.get("username") or ""),
            display_name=str(user.get("name") or ""),
            avatar_url=str(user.get("profile_image_url") or ""),
            profile_url=f"https://x.com/{user['username']}" if user.get("username") else "",
            raw=user or None,
        )

    def attachments(self, item: dict[str, Any], index: int) -> tuple[dict[str, Any], ...]:
        """A summary of each attached medium: key, type, and the URLs / alt text X sent (if expanded)."""
        keys = (item.get("attachments") or {}).get("media_keys") or []
        if not isinstance(keys, list):
            raise PayloadError(f"X data[{index}].attachments.media_keys must be a list")
        summaries = []
        for key in keys:
            medium = self.media_by_key.get(str(key), {})
            summary = {"media_key": str(key), "type": str(medium.get("type") or "")}
            for field in ("url", "preview_image_url", "alt_text", "width", "height", "duration_ms"):
                if medium.get(field) not in (None, ""):
                    summary[field] = medium[field]
            summaries.append(summary)
        return tuple(summaries)
