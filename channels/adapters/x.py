"""X (Twitter) API v2: polled tweet pages (mentions, search, lookups) and DM event lists into `InboundEvent`s.

What one response body becomes (PLATFORMS.md section 1a):

- Tweets in `data` (a list, or one object for a single lookup). The author comes from `author_id` joined on
  `includes.users`; a tweet without `author_id` (no `expansions=author_id`) gets `author=None`, never a
  made-up one. Media come from `attachments.media_keys` joined on `includes.media` (a key that is not in
  `includes` is still listed, with its key only).
- Kind: `reply` when the tweet has a `replied_to` reference; otherwise `mention` (a poll of mentions, a quote
  of ours, or a retweet that names us). Our own top-level tweets (author id = the adapter's `external_id`)
  are `post` with direction `out`.
- Thread key: `conversation_id` when requested. Otherwise the reply chain is walked through the tweets of
  the same body (`data` and `includes.tweets`) up to the oldest known ancestor, and the key is that
  ancestor's `conversation_id`, or the id of the tweet it replies to, or its own id (the brief's "replied_to
  id, else own id", applied at the top of the known chain so that replies to replies land in one thread).
  The X poller should ask for `tweet.fields=conversation_id`; then none of this is needed.
- Edits: `edit_history_tweet_ids` lists every version, oldest first. When a tweet is not its own first
  version, the stable id is the first one: we emit the create on that id (its time read from the snowflake,
  its text the newest we have) and an `edit` on the same id at the new version's time with the new text.
  Both are deterministic, so re-polling the page changes nothing.
- Time: `created_at`; when it was not requested, the time encoded in the snowflake id (X ids carry their
  creation time in milliseconds since 2010-11-04T01:42:54.657Z, bits 22 and up).
- DM events (`event_type`): only `MessageCreate`, as `dm` with thread key `dm:<dm_conversation_id>` and the
  author from `sender_id` (enriched from `includes.users`). An event without `dm_conversation_id` cannot be
  threaded, so the page is refused: ask for `dm_event.fields=dm_conversation_id,sender_id,created_at`.
- Bodies that carry no tweets are recognised: an empty page (`meta.result_count == 0`), the acks of our own
  writes (`{"data": {"deleted": true}}`, `{"hidden": ...}`, a DM send's `dm_event_id`) give no events; a
  problem document (`title`/`detail`/`errors` without `data`) raises `PayloadError`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .base import Author, BaseAdapter, Direction, EventKind, InboundEvent, PayloadError, decode_payload
from .timeparse import parse_iso8601

PLATFORM = "x"
# X snowflake ids: milliseconds since this epoch, shifted left by 22 bits.
SNOWFLAKE_EPOCH_MS = 1_288_834_974_657
# Keys of the `data` object X returns for our own writes (delete, hide, DM send, like, retweet, ...).
_ACK_KEYS = frozenset({"deleted", "hidden", "dm_conversation_id", "dm_event_id", "liked", "retweeted", "bookmarked",
                       "following", "blocking", "muting"})


def snowflake_time(tweet_id: str) -> dt.datetime:
    """The creation time encoded in an X snowflake id (tweets, DM events), as an aware UTC datetime."""
    if not isinstance(tweet_id, str) or not tweet_id.isdigit():
        raise PayloadError(f"X id {tweet_id!r} is not a numeric snowflake, so it carries no time")
    millis = (int(tweet_id) >> 22) + SNOWFLAKE_EPOCH_MS
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)


def _id(value: Any, what: str) -> str:
    """An X id as an opaque string; X v2 sends strings, a JSON number is accepted and converted exactly."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(f"{what} is missing or not an id: {value!r}")


class XAdapter(BaseAdapter):
    """X API v2 (polling). `external_id` is our account's X user id: tweets and DMs by it are outbound."""

    platform = PLATFORM

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one X API v2 response body (tweets or DM events) into events."""
        body = decode_payload(payload, "X")
        if not isinstance(body, dict):
            raise PayloadError(f"X payload must be a JSON object, got {type(body).__name__}")
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
                events.extend(self._dm_event(item, index, context))
            else:
                events.extend(self._tweet(item, index, context))
        return events

    # -- tweets -------------------------------------------------------------------------------------------------

    def _tweet(self, tweet: dict[str, Any], index: int, context: _Context) -> list[InboundEvent]:
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
        outbound = bool(author and self.external_id and author.external_id == self.external_id)
        if replied_to:
            kind = EventKind.REPLY
        elif outbound:
            kind = EventKind.POST
        else:
            kind = EventKind.MENTION  # a polled mention, a quote of ours (`quoted`), or a retweet naming us
        text = tweet.get("text") or ""
        if not isinstance(text, str):
            raise PayloadError(f"X data[{index}].text is not a string")
        common = {
            "platform": PLATFORM,
            "external_id": original_id,
            "author": author,
            "text": text,
            "thread_key": context.thread_key(tweet, original_id),
            "reply_to_id": replied_to,
            "direction": Direction.OUTBOUND if outbound else Direction.INBOUND,
            "attachments": context.attachments(tweet, index),
            "raw": tweet,
        }
        if original_id == tweet_id:
            return [InboundEvent(kind=kind, occurred_at=version_time, **common)]
        return [
            InboundEvent(kind=kind, occurred_at=snowflake_time(original_id), **common),
            InboundEvent(kind=EventKind.EDIT, occurred_at=version_time, **common),
        ]

    # -- direct messages ----------------------------------------------------------------------------------------

    def _dm_event(self, event: dict[str, Any], index: int, context: _Context) -> list[InboundEvent]:
        if event.get("event_type") != "MessageCreate":
            return []  # ParticipantsJoin / ParticipantsLeave: nothing a customer said
        event_id = _id(event.get("id"), f"X DM data[{index}].id")
        conversation = event.get("dm_conversation_id")
        if not conversation:
            raise PayloadError(
                f"X DM event {event_id} has no `dm_conversation_id`, so it cannot be threaded: request "
                "dm_event.fields=dm_conversation_id,sender_id,created_at")
        author = context.author(event.get("sender_id"), f"X DM data[{index}].sender_id")
        outbound = bool(author and self.external_id and author.external_id == self.external_id)
        text = event.get("text") or ""
        if not isinstance(text, str):
            raise PayloadError(f"X DM data[{index}].text is not a string")
        return [InboundEvent(
            platform=PLATFORM,
            external_id=event_id,
            kind=EventKind.DIRECT_MESSAGE,
            occurred_at=parse_iso8601(event["created_at"]) if event.get("created_at") else snowflake_time(event_id),
            author=author,
            text=text,
            thread_key=f"dm:{_id(conversation, f'X DM data[{index}].dm_conversation_id')}",
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=context.attachments(event, index),
            raw=event,
        )]


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
    """The lookups one response body offers: users, media and every tweet it contains, by id."""

    def __init__(self, includes: dict[str, Any], items: list[Any]) -> None:
        self.users = {str(u["id"]): u for u in includes.get("users") or [] if isinstance(u, dict) and u.get("id")}
        self.media_by_key = {str(m["media_key"]): m for m in includes.get("media") or []
                      if isinstance(m, dict) and m.get("media_key")}
        self.tweets: dict[str, dict[str, Any]] = {}
        for tweet in [*(includes.get("tweets") or []), *items]:
            if isinstance(tweet, dict) and tweet.get("id") and "event_type" not in tweet:
                self.tweets[str(tweet["id"])] = tweet

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

    def thread_key(self, tweet: dict[str, Any], own_id: str) -> str:
        """`conversation_id`, else the root of the reply chain as far as this body knows it, else `own_id`."""
        seen: set[str] = set()
        current = tweet
        while True:
            if current.get("conversation_id"):
                return str(current["conversation_id"])
            parent = next((str(r.get("id")) for r in current.get("referenced_tweets") or []
                           if isinstance(r, dict) and r.get("type") == "replied_to" and r.get("id")), "")
            if not parent:
                return own_id if current is tweet else str(current["id"])
            if parent in seen or parent not in self.tweets:
                return parent
            seen.add(parent)
            current = self.tweets[parent]

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
