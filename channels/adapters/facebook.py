"""Facebook Pages: Page webhooks, polled Graph pages and replies; plus what Facebook and Instagram share (Meta).

What a body becomes (PLATFORMS.md sections 2a and 2b):

- Webhook `{"object": "page", "entry": [...]}`; every entry and every change / messaging item is read. The
  page id is `entry.id` (a JSON number or a string; the `*_str` twin wins when present). Authors are
  page-scoped, so their `scope` is that page id.
- Feed changes (`field == "feed"`), items comment / post / status / photo / video:
  `add` -> `comment` (`reply` when `parent_id` is another comment, not the post), or `post` for the other
  items; `edited` / `edit` -> `edit`; `remove` -> `delete`; `hide` / `unhide` (moderation) and other verbs are
  skipped. Comment ids are `comment_id`, post-like ids `post_id`; thread key = `post_id`; reply-to =
  `parent_id`. Author `from{id,name}` or the old `sender_id` + `sender_name`; an author whose id is the page
  is us: direction `out`. Time: `created_time` for an add, the entry's `time` for an edit or removal (the
  time of the change), each falling back on the other. `field == "mention"` (the page was @-mentioned in a
  comment or post elsewhere) is a `mention` with no author, because the payload names none.
- Reviews (`field == "ratings"`): a review (`item: rating`) is a `post` whose id and thread key are its
  `open_graph_story_id`, by `reviewer_id` / `reviewer_name`, text `review_text`; a comment on a review
  (`item: comment`) is a `comment` in that thread: its `post_id` is `{owner}_{story}`, so the thread key is
  the part after the `_`.
- Other items (reaction, like, share) and fields (parking, payment_options, ...) are skipped (`self.skip`).
- Messenger (`messaging[]`, and `standby[]` when another app owns the thread): `message` -> `dm` with thread
  key `psid:<PSID>`, author the PSID scoped to the page; `is_echo` (sent by the page or its apps) ->
  direction `out`, author None; `message_edit` -> `edit`; `message.is_deleted` (unsend) -> `delete`.
  `delivery.mids` -> one `status` event (`delivered`, direction `out`: it is about our message) per id;
  `read` names only a watermark on Messenger, so it is skipped, as are reactions, postbacks, referrals,
  opt-ins and handovers.
- Graph pages (`{"data": [...], "paging": ...}`, one object, or an `?ids=` map `{id: object}`). The page is
  not named in them, so the page id is the adapter's `external_id`. Objects are told apart by shape:
  a conversation (`t_...`) gives its `messages` (a summary without them gives nothing); a message
  (`m_...`, or with `to`) is a `dm` like a webhook one (`from` / `to.data` hold the PSID, whose
  `{psid}@facebook.com` pseudo-address is dropped from the profile); a post (id `{page}_...`, or carrying a
  `comments` edge) is a `post` followed by its comments; anything else is a comment. When a comment's `id`
  was not requested it is rebuilt as `{post}_{comment}` from `permalink_url` (`comment_id`, or
  `reply_comment_id` for a reply: the same form as a requested `id`), and the thread key is `{page}_{post}`,
  the `post_id` of the webhooks. Without `from` the author is unknown (None), so direction stays `in`.

Meta, for Facebook and Instagram alike (`MetaAdapter`):

- Webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>`, compared in constant
  time; the legacy SHA-1 `X-Hub-Signature` is not accepted. The subscription GET (`hub.mode=subscribe`) is
  answered with `hub.challenge` when `hub.verify_token` equals the account's `verify_token`.
- Graph API calls carry the page token (`credentials["page_access_token"]`, or `access_token`) in an
  `Authorization: Bearer` header, never in a URL. Throttling comes as a 4xx whose `error.code` is 4, 17, 32,
  341, 613 or 80000-80014 (Graph "Handling Errors" and "Rate Limits" pages): `RateLimited` until now plus
  the largest `estimated_time_to_regain_access` (minutes) of `X-Business-Use-Case-Usage` / `X-App-Usage`,
  else `Retry-After`, else five minutes. `is_transient` errors and codes 1 / 2 are `TransientError`.
- Polling walks stages (Facebook: the page feed with its comments, then Messenger conversations) newest
  first, one Graph page per `fetch`. The cursor keeps `since` (epoch seconds: the start of the last complete
  run less five minutes), the current `stage` and its paging parameters (`after`, or `until` +
  `__paging_token` from `paging.next`, never the token-bearing URL), and `seen` ({id: time} of what was
  returned at or after `since`), so a run returns only what is newer than `since` and not yet seen. Posts
  (and Instagram media) up to seven days older than `since` are re-read for new comments; older posts are
  left to the webhooks, as are edits and removals, which polling cannot see. A first run looks one day back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import httpx

from .base import (
    Author,
    BaseAdapter,
    DeliveryStatus,
    Direction,
    EventKind,
    FetchResult,
    HandshakeResponse,
    InboundEvent,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RateLimited,
    SendResult,
    TransientError,
    WebhookRequest,
    check_signature,
    check_token,
    decode_payload,
    hmac_digest,
    retry_after,
)
from .timeparse import from_epoch_guess, from_epoch_millis, parse_iso8601, utc_now

PLATFORM = "facebook"
GRAPH_API = "https://graph.facebook.com/v21.0"
FEED_ITEMS = frozenset({"comment", "post", "status", "photo", "video"})
_VERB_KINDS = {"add": EventKind.COMMENT, "edited": EventKind.EDIT, "edit": EventKind.EDIT, "remove": EventKind.DELETE}
# Graph error codes that mean "throttled, come back later" (Graph API "Handling Errors" / "Rate Limits" pages):
# app, user, page, application-limit and custom throttling, and the Business Use Case limits 80000-80014.
THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
DEFAULT_THROTTLE_WAIT = dt.timedelta(minutes=5)
_USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-page-usage")
_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")
_GRAPH_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
# Messenger Send API reference, `message.text`: "Must be UTF-8 and has a 2000 character limit."
MESSENGER_TEXT_LIMIT = 2000

PAGE_SIZE = 25
POLL_OVERLAP = dt.timedelta(minutes=5)
FIRST_POLL_LOOKBACK = dt.timedelta(days=1)
COMMENT_WINDOW = dt.timedelta(days=7)
MAX_SEEN = 2000
_PAGING_KEYS = ("after", "until", "since", "__paging_token")


def meta_id(obj: Mapping[str, Any], key: str, what: str, *, required: bool = True) -> str:
    """An id as a string: the `<key>_str` twin if present, else the value (ints converted exactly)."""
    value = obj.get(f"{key}_str", obj.get(key))
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is None and not required:
        return ""
    raise PayloadError(f"{what} is missing or not an id: {value!r}")


def meta_time(value: Any, what: str) -> dt.datetime:
    """A Meta time: epoch seconds or milliseconds (number or digit string), or a Graph ISO string."""
    if isinstance(value, str) and ("T" in value or "-" in value.lstrip("-")):
        return parse_iso8601(value)
    try:
        return from_epoch_guess(value)
    except PayloadError as exc:
        raise PayloadError(f"{what}: {exc}") from None


def text_field(obj: Mapping[str, Any], key: str, what: str) -> str:
    """A text field ("" when absent or null); PayloadError when it is not a string."""
    value = obj.get(key) or ""
    if not isinstance(value, str):
        raise PayloadError(f"{what}.{key} is not a string")
    return value


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (for optional nested objects)."""
    return value if isinstance(value, dict) else {}


def graph_items(body: dict[str, Any], label: str) -> Iterator[tuple[str, Any]]:
    """The objects of a Graph body with where they sit: a `data` list, an `?ids=` map, or the body itself."""
    if "data" in body:
        if not isinstance(body["data"], list):
            raise PayloadError(f"{label} Graph `data` must be a list")
        yield from ((f"data[{i}]", item) for i, item in enumerate(body["data"]))
    elif body and all(isinstance(v, dict) and v.get("id") == k for k, v in body.items()):
        yield from ((f"[{k!r}]", item) for k, item in body.items())
    else:
        yield "object", body


def graph_path(*parts: str) -> str:
    """A Graph API path from ids, refusing anything that is not an id (no `/`, `..` or query smuggled in)."""
    for part in parts:
        if not isinstance(part, str) or not _GRAPH_ID.fullmatch(part):
            raise PermanentError(f"{part!r} is not a Graph object id")
    return "/" + "/".join(parts)


def _next_page(body: dict[str, Any]) -> dict[str, str]:
    """The paging parameters of the next page (from `paging.next`, else `paging.cursors.after`); {} at the end."""
    paging = as_dict(body.get("paging"))
    link = paging.get("next")
    if not isinstance(link, str) or not link:
        return {}
    query = urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query, keep_blank_values=True)
    page = {key: value for key, value in query if key in _PAGING_KEYS and value}
    after = as_dict(paging.get("cursors")).get("after")
    if "after" not in page and "until" not in page and isinstance(after, str) and after:
        page["after"] = after
    return page


def _regain_minutes(headers: httpx.Headers) -> float:
    """The largest `estimated_time_to_regain_access` (minutes) in Graph's usage headers; 0 when none says."""
    found = 0.0
    for name in _USAGE_HEADERS:
        try:
            usage = json.loads(headers.get(name) or "null")
        except ValueError:
            continue
        blocks = [usage] if isinstance(usage, dict) and "call_count" in usage else (
            [b for v in usage.values() if isinstance(v, list) for b in v] if isinstance(usage, dict) else [])
        for block in blocks:
            value = block.get("estimated_time_to_regain_access") if isinstance(block, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                found = max(found, float(value))
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class PollStage:
    """One Graph edge a poll walks newest first; `window` is how much older than `since` its items stay of interest."""

    name: str
    path: str
    fields: str
    time_field: str
    window: dt.timedelta = dt.timedelta(0)
    since_param: bool = False


class MetaAdapter(BaseAdapter):
    """What Facebook Pages and Instagram share: webhook signature and handshake, Graph calls, messaging, polling."""

    api_base_url = GRAPH_API
    private_reply_window = dt.timedelta(hours=24)
    label: ClassVar[str] = "Meta"
    # Thread keys of private conversations are `<prefix>:<user id>` (`psid` on Messenger, `igsid` on Instagram).
    thread_prefix: ClassVar[str] = ""

    # -- webhooks ------------------------------------------------------------------------------------------------

    def _webhook_items(self, body: dict[str, Any], object_name: str, boxes: tuple[str, ...],
                       owner: Callable[[str], str] = str,
                       ) -> Iterator[tuple[dict[str, Any], str, str, dict[str, Any], str]]:
        """Every change and messaging item of a Meta webhook body whose `object` must be `object_name`.

        Yields (entry, owner, box, item, where): the owner is `owner(<entry id>)`, worked out once per entry;
        box is `changes` or one of `boxes` (`messaging`, `standby`).
        """
        label = self.label
        if body.get("object") != object_name:
            raise PayloadError(f'{label} webhook `object` is {body.get("object")!r}, expected "{object_name}"')
        entries = body.get("entry")
        if not isinstance(entries, list):
            raise PayloadError(f"{label} webhook has no `entry` list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise PayloadError(f"{label} webhook entry[{i}] is not an object")
            entry_owner = owner(meta_id(entry, "id", f"{label} webhook entry[{i}].id"))
            for box in ("changes", *boxes):
                for j, item in enumerate(entry.get(box) or []):
                    if not isinstance(item, dict):
                        raise PayloadError(f"{label} webhook entry[{i}].{box}[{j}] is not an object")
                    yield entry, entry_owner, box, item, f"entry[{i}].{box}[{j}]"

    def verify_webhook(self, request: WebhookRequest) -> None:
        """`X-Hub-Signature-256` must be `sha256=` + hex HMAC-SHA256 of the raw body with the app secret."""
        expected = hmac_digest(self.secret("app_secret"), request.body)
        check_signature(request.header("X-Hub-Signature-256"), expected, prefix="sha256=")

    def handshake(self, request: WebhookRequest) -> HandshakeResponse | None:
        """Meta's subscription GET: echo `hub.challenge` when `hub.verify_token` is ours; None for other requests."""
        if request.method.upper() != "GET" or request.query.get("hub.mode") != "subscribe":
            return None
        check_token(request.query.get("hub.verify_token", ""), self.secret("verify_token"), "hub.verify_token")
        challenge = request.query.get("hub.challenge", "")
        if not _CHALLENGE.fullmatch(challenge):
            raise PayloadError("hub.challenge is missing or not a plain token")
        return HandshakeResponse(body=challenge)

    # -- Graph API -----------------------------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        """The house client, which also turns Graph's throttling and transient error codes into adapter errors."""
        client = super().http()
        client.event_hooks["response"].append(self._graph_errors)
        return client

    def _graph_errors(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        try:
            error = as_dict(as_dict(response.json()).get("error"))
        except ValueError:
            return  # not a Graph error body: the base mapping decides
        code, message = error.get("code"), str(error.get("message") or "")[:200]
        if code in THROTTLE_CODES:
            raise RateLimited(f"{self.platform}: rate limited (Graph error {code}: {message})",
                              reset_at=self.rate_limit_reset(response))
        if error.get("is_transient") is True or code in (1, 2):
            raise TransientError(f"{self.platform}: Graph error {code} (temporary): {message}")

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """`estimated_time_to_regain_access` from Graph's usage headers, else `Retry-After`, else five minutes."""
        minutes = _regain_minutes(response.headers)
        if minutes > 0:
            return utc_now() + dt.timedelta(minutes=minutes)
        if response.headers.get("retry-after"):
            return retry_after(response, default_seconds=int(DEFAULT_THROTTLE_WAIT.total_seconds()))
        return utc_now() + DEFAULT_THROTTLE_WAIT

    def _auth(self) -> dict[str, str]:
        token = self.credentials.get("page_access_token") or self.credentials.get("access_token")
        if not isinstance(token, str) or not token:
            raise PermanentError(f"{self.platform}: channel account has no page_access_token")
        return {"Authorization": f"Bearer {token}"}

    def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        with self.http() as client:
            response = self.request(client, "GET", path, params=dict(params), headers=self._auth())
        try:
            body = response.json()
        except ValueError:
            raise TransientError(f"{self.platform}: Graph answered GET {path} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise PayloadError(f"{self.platform}: Graph answered GET {path} with {type(body).__name__}, not an object")
        return body

    def _post(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        headers = self._auth()
        with self.http() as client:
            response = self.request(client, "POST", path, sending=True, json=dict(payload), headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OutcomeUnknown(f"{self.platform}: POST {path} succeeded but its answer is not a JSON object")
        return body

    @staticmethod
    def _answer_id(body: Mapping[str, Any], key: str) -> str:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise OutcomeUnknown(f"the platform accepted the reply but its answer has no {key!r}")
        return value

    # -- sending -------------------------------------------------------------------------------------------------

    @staticmethod
    def _reply_text(message: OutboundMessage) -> str:
        if message.attachments:
            raise PermanentError("replies with attachments are not supported yet")
        if not isinstance(message.text, str) or not message.text.strip():
            raise PermanentError("a reply needs text")
        return message.text

    def _send_private(self, message: OutboundMessage, path: str, *, messaging_type: bool) -> SendResult:
        """A private message: to the user of a `<prefix>:<id>` thread, else a private reply to a comment or post."""
        prefix = f"{self.thread_prefix}:"
        if message.thread_key.startswith(prefix):
            user_id = message.thread_key[len(prefix):]
            graph_path(user_id)
            recipient: dict[str, str] = {"id": user_id}
        elif message.reply_to_id and message.reply_to_id != message.thread_key:
            recipient = {"comment_id": graph_path(message.reply_to_id)[1:]}
        elif message.thread_key and self.platform == PLATFORM:
            recipient = {"post_id": graph_path(message.thread_key)[1:]}
        else:
            raise PermanentError(f"{self.platform}: a private reply needs a {prefix}<id> thread or a comment to answer")
        payload: dict[str, Any] = {"recipient": recipient, "message": {"text": message.text}}
        if messaging_type and "id" in recipient:
            payload["messaging_type"] = "RESPONSE"
        body = self._post(path, payload)
        user = body.get("recipient_id", recipient.get("id"))
        return SendResult(external_id=self._answer_id(body, "message_id"), raw=body,
                          thread_key=f"{prefix}{user}" if user else "")

    # -- messaging (Messenger and Instagram Direct) ----------------------------------------------------------------

    def _messaging(self, item: dict[str, Any], entry: dict[str, Any], account_id: str,
                   where: str) -> list[InboundEvent]:
        message, edit = item.get("message"), item.get("message_edit")
        receipt = next((k for k in ("delivery", "read") if k in item), None)
        if message is None and edit is None and receipt is None:
            kind = next((k for k in item if k not in ("sender", "recipient", "timestamp")), "nothing")
            self.skip(where, f"{kind} event is not a message")
            return []
        sender_id, recipient_id = (
            meta_id(as_dict(item.get(side)), "id", f"{self.label} {where}.{side}.id", required=False)
            for side in ("sender", "recipient"))
        payload = as_dict(message if message is not None else edit)
        if (message is not None or edit is not None) and not payload:
            raise PayloadError(f"{self.label} {where}.message is not an object")
        outbound = bool(payload.get("is_echo")) or sender_id == account_id
        # The user is the side that is not us. A real echo goes us -> user; Meta's doc sample keeps the user as
        # sender, so fall back to whichever id is not ours.
        user_id = recipient_id if outbound and recipient_id and recipient_id != account_id else sender_id
        if not user_id or user_id == account_id:
            raise PayloadError(f"{self.label} {where} names no user id in sender/recipient")
        thread_key = f"{self.thread_prefix}:{user_id}"
        if receipt is not None:
            return self._receipt(item, receipt, entry, thread_key, where)
        mid = meta_id(payload, "mid", f"{self.label} {where}.message.mid")
        if item.get("timestamp") is not None:
            occurred_at = from_epoch_millis(item["timestamp"])
        elif entry.get("time") is not None:
            occurred_at = from_epoch_guess(entry["time"])
        else:
            raise PayloadError(f"{self.label} {where} has neither timestamp nor entry.time")
        if message is None:
            kind = EventKind.EDIT
        elif payload.get("is_deleted"):
            kind = EventKind.DELETE
        else:
            kind = EventKind.DIRECT_MESSAGE
        reply_to = as_dict(payload.get("reply_to"))
        attachments = _messenger_attachments(payload, f"{self.label} {where}")
        story = as_dict(reply_to.get("story"))
        if story:
            attachments += ({"type": "story_reply", **{k: str(story[k]) for k in ("id", "url") if story.get(k)}},)
        return [InboundEvent(
            platform=self.platform,
            external_id=mid,
            kind=kind,
            occurred_at=occurred_at,
            author=None if outbound else Author(platform=self.platform, external_id=user_id, scope=account_id),
            text="" if kind == EventKind.DELETE else text_field(payload, "text", f"{self.label} {where}.message"),
            thread_key=thread_key,
            reply_to_id=str(reply_to.get("mid") or story.get("id") or ""),
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=() if kind == EventKind.DELETE else attachments,
            raw=item,
        )]

    def _receipt(self, item: dict[str, Any], key: str, entry: dict[str, Any], thread_key: str,
                 where: str) -> list[InboundEvent]:
        """Delivery / read receipts of our messages: one `status` event per message id the receipt names."""
        receipt = as_dict(item[key])
        mids = receipt.get("mids") if key == "delivery" else [receipt["mid"]] if receipt.get("mid") else []
        if not isinstance(mids, list) or not mids:
            self.skip(where, f"{key} receipt names no message ids (watermark only)")
            return []
        when = next((t for t in (item.get("timestamp"), receipt.get("watermark"), entry.get("time")) if t is not None),
                    None)
        if when is None:
            raise PayloadError(f"{self.label} {where} has no timestamp, watermark or entry.time")
        status = DeliveryStatus.DELIVERED if key == "delivery" else DeliveryStatus.READ
        return [InboundEvent(platform=self.platform, external_id=meta_id({"mid": mid}, "mid", f"{where}.{key}.mid"),
                             kind=EventKind.STATUS, occurred_at=meta_time(when, f"{self.label} {where} time"),
                             thread_key=thread_key, direction=Direction.OUTBOUND, status=status, raw=item)
                for mid in mids]

    # -- polling -------------------------------------------------------------------------------------------------

    def poll_stages(self) -> list[PollStage]:
        """The Graph edges one poll run walks, in order."""
        raise NotImplementedError

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """One Graph page of the current stage, keeping only what is newer than `since` and not yet seen."""
        stages = self.poll_stages()
        state = dict(cursor or {})
        now = utc_now()
        since = _cursor_time(state.get("since")) or now - FIRST_POLL_LOOKBACK
        started = state.get("started") if isinstance(state.get("started"), int) else int(now.timestamp())
        seen = {str(k): v for k, v in as_dict(state.get("seen")).items() if isinstance(v, int)}
        names = [stage.name for stage in stages]
        index = names.index(state["stage"]) if state.get("stage") in names else 0
        stage = stages[index]
        floor = since - stage.window
        params = {"fields": stage.fields, "limit": str(PAGE_SIZE)}
        if stage.since_param:
            params["since"] = str(int(floor.timestamp()))
        params.update({k: str(v) for k, v in as_dict(state.get("page")).items() if k in _PAGING_KEYS})
        body = self._get(stage.path, params)
        events = [e for e in self.parse(body) if e.occurred_at >= since and e.external_id not in seen]
        seen.update((e.external_id, int(e.occurred_at.timestamp())) for e in events)
        run = {"since": int(since.timestamp()), "started": started, "seen": seen}
        next_page = _next_page(body)
        oldest = _oldest(body, stage.time_field)
        if next_page and (oldest is None or oldest >= floor):
            return FetchResult(events, {**run, "stage": stage.name, "page": next_page}, has_more=True)
        if index + 1 < len(stages):
            return FetchResult(events, {**run, "stage": stages[index + 1].name}, has_more=True)
        next_since = started - int(POLL_OVERLAP.total_seconds())
        keep = sorted(((t, i) for i, t in seen.items() if t >= next_since), reverse=True)[:MAX_SEEN]
        return FetchResult(events, {"since": next_since, "seen": {i: t for t, i in keep}}, has_more=False)


def _cursor_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def _oldest(body: dict[str, Any], field: str) -> dt.datetime | None:
    """The oldest `field` time of the items in a Graph page, None when it has none."""
    times = []
    for item in body.get("data") or []:
        try:
            times.append(meta_time(item.get(field), field))
        except (PayloadError, AttributeError):
            continue
    return min(times, default=None)


class FacebookAdapter(MetaAdapter):
    """A Facebook Page: `external_id` is the page id (needed for polled Graph pages, which do not name it)."""

    platform = PLATFORM
    label = "Facebook"
    thread_prefix = "psid"
    pollable = True
    max_reply_length = MESSENGER_TEXT_LIMIT

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one Page webhook body, or a Graph page, object or `?ids=` map into events."""
        body = decode_payload(payload, "Facebook")
        if not isinstance(body, dict):
            raise PayloadError(f"Facebook payload must be a JSON object, got {type(body).__name__}")
        if "object" in body or "entry" in body:
            return self._webhook(body)
        if not body or ("data" not in body and "id" not in body and "created_time" not in body
                        and not all(isinstance(v, dict) for v in body.values())):
            raise PayloadError('not a Facebook Page webhook (`object: "page"`) nor a Graph page (`data`) or object')
        events: list[InboundEvent] = []
        for where, item in graph_items(body, "Facebook"):
            events.extend(self._graph_object(item, where))
        return events

    # -- webhooks ----------------------------------------------------------------------------------------------

    def _webhook(self, body: dict[str, Any]) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for entry, page_id, box, item, where in self._webhook_items(body, "page", ("messaging", "standby")):
            if box == "changes":
                event = self._change(item, entry, page_id, where)
                if event is not None:
                    events.append(event)
            else:
                events.extend(self._messaging(item, entry, page_id, where))
        return events

    def _change(self, change: dict[str, Any], entry: dict[str, Any], page_id: str, where: str) -> InboundEvent | None:
        field = change.get("field")
        if field not in ("feed", "mention", "ratings"):
            self.skip(where, f"field {field!r} is not a conversation")
            return None
        value = change.get("value")
        if not isinstance(value, dict):
            raise PayloadError(f"Facebook webhook {where}.value is not an object")
        item, verb = value.get("item"), value.get("verb")
        if field == "ratings" and item == "rating":
            return self._review(value, entry, page_id, where)
        if item not in FEED_ITEMS:
            self.skip(where, f"{field} item {item!r} is not a message")
            return None
        if verb not in _VERB_KINDS:
            self.skip(where, f"{field} {item} verb {verb!r} (moderation or unknown) changes no message")
            return None
        kind = _VERB_KINDS[verb]
        if kind == EventKind.COMMENT and field == "mention":
            kind = EventKind.MENTION
        elif kind == EventKind.COMMENT and item != "comment":
            kind = EventKind.POST
        post_id = meta_id(value, "post_id", f"Facebook {where}.value.post_id")
        # A comment on a review sits under `{owner}_{story}`; the review's own id is the story id.
        thread_key = post_id.rsplit("_", 1)[-1] if field == "ratings" else post_id
        if item == "comment":
            external_id = meta_id(value, "comment_id", f"Facebook {where}.value.comment_id")
            parent_id = meta_id(value, "parent_id", f"Facebook {where}.value.parent_id", required=False)
            is_reply = bool(parent_id) and parent_id != post_id
            if kind == EventKind.COMMENT and is_reply:
                kind = EventKind.REPLY
            reply_to = parent_id if is_reply else thread_key
        else:
            external_id, reply_to = post_id, ""
        author = self._feed_author(value, page_id, where) if field != "mention" else None
        return self._feed_event(value, entry, where, kind=kind, external_id=external_id, author=author,
                                text=text_field(value, "message", f"Facebook {where}.value"), thread_key=thread_key,
                                reply_to=reply_to, page_id=page_id)

    def _review(self, value: dict[str, Any], entry: dict[str, Any], page_id: str, where: str) -> InboundEvent | None:
        kind = {"add": EventKind.POST, "edited": EventKind.EDIT, "edit": EventKind.EDIT,
                "remove": EventKind.DELETE}.get(value.get("verb"))
        if kind is None:
            self.skip(where, f"review verb {value.get('verb')!r} changes no message")
            return None
        story = meta_id(value, "open_graph_story_id", f"Facebook {where}.value.open_graph_story_id")
        author = None
        if value.get("reviewer_id") is not None:
            author = Author(platform=PLATFORM, scope=page_id, display_name=str(value.get("reviewer_name") or ""),
                            external_id=meta_id(value, "reviewer_id", f"Facebook {where}.value.reviewer_id"))
        return self._feed_event(value, entry, where, kind=kind, external_id=story, author=author,
                                text=text_field(value, "review_text", f"Facebook {where}.value"), thread_key=story,
                                reply_to="", page_id=page_id)

    @staticmethod
    def _feed_event(value: dict[str, Any], entry: dict[str, Any], where: str, *, kind: EventKind, external_id: str,
                    author: Author | None, text: str, thread_key: str, reply_to: str, page_id: str) -> InboundEvent:
        times = [value.get("created_time"), entry.get("time")]
        if kind in (EventKind.EDIT, EventKind.DELETE):
            times.reverse()
        when = next((t for t in times if t is not None), None)
        if when is None:
            raise PayloadError(f"Facebook {where} has neither value.created_time nor entry.time")
        deleted = kind == EventKind.DELETE
        attachments = tuple({"type": key, "url": value[key]} for key in ("photo", "video")
                            if isinstance(value.get(key), str) and value[key])
        return InboundEvent(
            platform=PLATFORM,
            external_id=external_id,
            kind=kind,
            occurred_at=meta_time(when, f"Facebook {where} time"),
            author=author,
            text="" if deleted else text,
            thread_key=thread_key,
            reply_to_id=reply_to,
            direction=Direction.OUTBOUND if author and author.external_id == page_id else Direction.INBOUND,
            attachments=() if deleted else attachments,
            raw=value,
        )

    @staticmethod
    def _feed_author(value: dict[str, Any], page_id: str, where: str) -> Author | None:
        sender = value.get("from")
        if isinstance(sender, dict) and (sender.get("id") is not None or sender.get("id_str")):
            return Author(platform=PLATFORM, external_id=meta_id(sender, "id", f"Facebook {where}.value.from.id"),
                          scope=page_id, display_name=str(sender.get("name") or ""), raw=sender)
        if value.get("sender_id") is not None or value.get("sender_id_str"):
            return Author(platform=PLATFORM, external_id=meta_id(value, "sender_id", f"Facebook {where}.sender_id"),
                          scope=page_id, display_name=str(value.get("sender_name") or ""))
        return None

    # -- Graph objects -------------------------------------------------------------------------------------------

    def _page_id(self) -> str:
        if not self.external_id:
            raise PayloadError("a polled Graph page does not name its page: "
                               "build FacebookAdapter(external_id=<page id>)")
        return self.external_id

    def _graph_object(self, item: Any, where: str) -> list[InboundEvent]:
        if not isinstance(item, dict):
            raise PayloadError(f"Facebook Graph {where} is not an object")
        page_id = self._page_id()
        object_id = str(item.get("id") or "")
        if object_id.startswith("t_") or "messages" in item or "participants" in item:
            messages = as_dict(item.get("messages")).get("data")
            if not isinstance(messages, list) or not messages:
                self.skip(where, f"conversation {object_id} summary carries no messages")
                return []
            return [self._graph_message(m, f"{where}.messages.data[{i}]", page_id) for i, m in enumerate(messages)]
        if object_id.startswith(("m_", "mid.")) or "to" in item:
            return [self._graph_message(item, where, page_id)]
        if object_id.startswith(f"{page_id}_") or isinstance(item.get("comments"), dict):
            return self._graph_post(item, where, page_id)
        return [self._polled_comment(item, where)]

    def _graph_post(self, post: dict[str, Any], where: str, page_id: str) -> list[InboundEvent]:
        post_id = meta_id(post, "id", f"Facebook Graph {where}.id")
        if post.get("created_time") is None:
            raise PayloadError(f"Facebook Graph {where} has no created_time")
        author = self._graph_author(post.get("from"), page_id, where)
        events = [InboundEvent(
            platform=PLATFORM, external_id=post_id, kind=EventKind.POST,
            occurred_at=meta_time(post["created_time"], f"Facebook Graph {where}.created_time"), author=author,
            text=text_field(post, "message", f"Facebook Graph {where}"), thread_key=post_id,
            direction=Direction.OUTBOUND if author and author.external_id == page_id else Direction.INBOUND,
            raw={k: v for k, v in post.items() if k != "comments"},
        )]
        comments = as_dict(post.get("comments")).get("data") or []
        if not isinstance(comments, list):
            raise PayloadError(f"Facebook Graph {where}.comments.data must be a list")
        events.extend(self._polled_comment(c, f"{where}.comments.data[{i}]", thread_key=post_id)
                      for i, c in enumerate(comments))
        return events

    @staticmethod
    def _graph_author(sender: Any, page_id: str, where: str) -> Author | None:
        if not isinstance(sender, dict) or sender.get("id") is None:
            return None
        # `email` is the `{id}@facebook.com` pseudo-address of the Graph inbox: not a contact point.
        return Author(platform=PLATFORM, external_id=meta_id(sender, "id", f"Facebook Graph {where}.from.id"),
                      scope=page_id, display_name=str(sender.get("name") or ""),
                      raw={k: v for k, v in sender.items() if k != "email"})

    def _graph_message(self, message: Any, where: str, page_id: str) -> InboundEvent:
        if not isinstance(message, dict):
            raise PayloadError(f"Facebook Graph {where} is not an object")
        mid = meta_id(message, "id", f"Facebook Graph {where}.id")
        author = self._graph_author(message.get("from"), page_id, where)
        outbound = author is not None and author.external_id == page_id
        recipients = [meta_id(r, "id", f"Facebook Graph {where}.to.id")
                      for r in as_dict(message.get("to")).get("data") or [] if isinstance(r, dict)]
        if outbound:
            user_id = next((r for r in recipients if r != page_id), "")
        else:
            user_id = author.external_id if author else ""
        if not user_id:
            raise PayloadError(f"Facebook Graph {where} names no customer in from / to")
        if message.get("created_time") is None:
            raise PayloadError(f"Facebook Graph {where} has no created_time")
        return InboundEvent(
            platform=PLATFORM, external_id=mid, kind=EventKind.DIRECT_MESSAGE,
            occurred_at=meta_time(message["created_time"], f"Facebook Graph {where}.created_time"),
            author=None if outbound else author, text=text_field(message, "message", f"Facebook Graph {where}"),
            thread_key=f"psid:{user_id}", direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            attachments=_graph_message_attachments(message, where), raw=message,
        )

    def _polled_comment(self, comment: Any, where: str, *, thread_key: str = "") -> InboundEvent:
        if not isinstance(comment, dict):
            raise PayloadError(f"Facebook Graph {where} is not an object")
        page_id = self._page_id()
        link = urllib.parse.urlsplit(str(comment.get("permalink_url") or ""))
        query = urllib.parse.parse_qs(link.query)
        segments = [s for s in link.path.split("/") if s]
        link_post = segments[segments.index("posts") + 1] if "posts" in segments[:-1] else ""
        top_comment = (query.get("comment_id") or [""])[0]
        reply_comment = (query.get("reply_comment_id") or [""])[0]
        if comment.get("id"):
            external_id = meta_id(comment, "id", f"Facebook Graph {where}.id")
            post = external_id.split("_", 1)[0] if "_" in external_id else link_post
        elif link_post and (reply_comment or top_comment):
            post = link_post
            external_id = f"{post}_{reply_comment or top_comment}"
        else:
            raise PayloadError(f"Facebook Graph {where} has no `id` and no permalink_url with a comment_id")
        if not post and not thread_key:
            raise PayloadError(f"Facebook Graph {where}: cannot tell which post comment {external_id} belongs to")
        thread_key = thread_key or f"{page_id}_{post}"
        parent = as_dict(comment.get("parent"))
        if parent.get("id"):
            reply_to = meta_id(parent, "id", f"Facebook Graph {where}.parent.id")
        elif reply_comment and top_comment:
            reply_to = f"{post}_{top_comment}"
        else:
            reply_to = ""
        author = self._graph_author(comment.get("from"), page_id, where)
        if "created_time" not in comment:
            raise PayloadError(f"Facebook Graph {where} has no created_time")
        return InboundEvent(
            platform=PLATFORM,
            external_id=external_id,
            kind=EventKind.REPLY if reply_to else EventKind.COMMENT,
            occurred_at=meta_time(comment["created_time"], f"Facebook Graph {where}.created_time"),
            author=author,
            text=text_field(comment, "message", f"Facebook Graph {where}"),
            thread_key=thread_key,
            reply_to_id=reply_to or thread_key,
            direction=Direction.OUTBOUND if author and author.external_id == page_id else Direction.INBOUND,
            attachments=_graph_attachment(comment),
            raw=comment,
        )

    # -- polling and sending -------------------------------------------------------------------------------------

    def poll_stages(self) -> list[PollStage]:
        """The page feed (posts with their comments, replies included), then the Messenger conversations."""
        if not self.external_id:
            raise PermanentError("facebook: polling needs the page id as the account's external_id")
        page = graph_path(self.external_id)
        comment_fields = "id,message,created_time,from,parent{id},permalink_url,attachment"
        return [
            PollStage("feed", f"{page}/feed", "id,message,created_time,from,permalink_url,"
                      f"comments.filter(stream).order(reverse_chronological).limit(100){{{comment_fields}}}",
                      "created_time", window=COMMENT_WINDOW, since_param=True),
            PollStage("conversations", f"{page}/conversations",
                      "id,updated_time,messages.limit(25){id,created_time,from,to,message,attachments}",
                      "updated_time"),
        ]

    def send(self, message: OutboundMessage) -> SendResult:
        """A Messenger message (private) or a comment under the post / comment answered (public)."""
        text = self._reply_text(message)
        if message.private:
            if len(text) > MESSENGER_TEXT_LIMIT:
                raise PermanentError(f"facebook: Messenger text is limited to {MESSENGER_TEXT_LIMIT} characters")
            return self._send_private(message, f"{graph_path(self.external_id or 'me')}/messages", messaging_type=True)
        target = message.reply_to_id or message.thread_key
        if not target or target.startswith("psid:"):
            raise PermanentError("facebook: a public reply needs the post or comment it answers")
        body = self._post(f"{graph_path(target)}/comments", {"message": text})
        return SendResult(external_id=self._answer_id(body, "id"), raw=body, thread_key=message.thread_key)


def _messenger_attachments(message: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """Messenger / Instagram Direct attachments as {type, url?, sticker_id?, title?}."""
    items = message.get("attachments") or []
    if not isinstance(items, list):
        raise PayloadError(f"{where}.message.attachments must be a list")
    found = []
    for attachment in items:
        if not isinstance(attachment, dict):
            raise PayloadError(f"{where}.message.attachments holds a non-object")
        payload = as_dict(attachment.get("payload"))
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
    image = as_dict(as_dict(attachment.get("media")).get("image"))
    if image.get("src"):
        summary["image_url"] = str(image["src"])
    return (summary,)


def _graph_message_attachments(message: dict[str, Any], where: str) -> tuple[dict[str, Any], ...]:
    """A Graph message's `attachments.data[]` as {type, url, mime_type?, name?} (CDN URLs expire: fetch promptly)."""
    items = as_dict(message.get("attachments")).get("data") or []
    if not isinstance(items, list):
        raise PayloadError(f"Facebook Graph {where}.attachments.data must be a list")
    found = []
    for attachment in items:
        if not isinstance(attachment, dict):
            raise PayloadError(f"Facebook Graph {where}.attachments holds a non-object")
        kind, url = "file", attachment.get("file_url")
        for key, name in (("image_data", "image"), ("video_data", "video")):
            if as_dict(attachment.get(key)).get("url"):
                kind, url = name, attachment[key]["url"]
        summary: dict[str, Any] = {"type": kind}
        if url:
            summary["url"] = str(url)
        summary.update({k: str(attachment[k]) for k in ("mime_type", "name") if attachment.get(k)})
        found.append(summary)
    return tuple(found)
