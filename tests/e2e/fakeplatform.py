"""A fake of the platforms' APIs on 127.0.0.1 for the end-to-end tests.

One `ThreadingHTTPServer` on a free port answers like X API v2, the Facebook and Instagram Graph API, the Telegram
Bot API and Mastodon, from the recorded responses in channels/recorded/ (byte-for-byte copies of real answers), page
by page, honouring the query parameters the adapters send, so that a second poll gets only what is newer, as it would
from the platform. (Instagram's media edge is asked with nothing that says what the adapter already has, so it gets
the same page again, from the fake as from Graph.) Channel accounts reach it through `config["api_base_url"]`.

What each platform serves, and what is modelled because no recording holds it:

- X (`FakeX`): `GET /2/users/{id}/mentions` serves two recorded v2 pages (the first names the second with
  `meta.next_token`) to any user id; `since_id` keeps only newer tweets and ends the paging where it cuts a page,
  as X does. `GET /2/dm_events` serves the recorded DM page; that endpoint has no `since_id`.
- Facebook (`FakeGraph`): the Graph API of the page "MyLife" of the python-facebook recordings. No recorded `/feed`
  page of that page exists, so its feed holds one post built around the recorded comment (`comment_full_fields.json`):
  the id its permalink names, a time before it (as tests/channels/adapters/test_facebook_api.py derives the same
  post) and the page as author, named as the recorded conversation names it. Its conversation is the recorded
  conversation with the recorded message as its `messages` edge. `since` / `until`
  and `limit` are honoured on the feed, with a time-based `paging.next` when more posts are left.
- Instagram (`FakeInstagram`): the Graph API of the Instagram account of the python-facebook recordings.
  `GET /{ig-user-id}/media` serves its media newest first with their comments, honouring field expansion
  (`fields`, with `.limit(n)` on edges), `limit`, the cursors `after` / `before` and `since` / `until`. No recorded
  `/media` page exists: the recorded comments are served under the media they name, the account's own comment
  gets its `from` from its recorded `user.id` and `username`, and the one recorded comment with an author id
  (Meta's webhook test delivery, a reply) sits under its parent comment, of which only the id is recorded. The
  media's times and types and that parent's time are chosen; the class docstring lists every such value.
- Telegram (`FakeTelegram`): recorded Updates queued for one bot. The recordings come from different bots and
  several carry `update_id` 1, so the fake numbers them itself, as Telegram numbers a bot's updates. `getUpdates`
  honours `offset` (and forgets every update below it, as Telegram does once they are confirmed), `limit` and
  `allowed_updates`.
- Mastodon (`FakeMastodon`): `GET /api/v1/notifications` serves the recorded mention notification, honouring
  `types[]`, `limit`, `max_id`, `since_id` and `min_id`, with the `Link` header Mastodon sends.
  `POST /api/v1/statuses` creates a status shaped like the recorded answer to a real `POST /api/v1/statuses`
  and honours `Idempotency-Key` as Mastodon does: a repeated key answers with the status the first request made.

Every request is recorded (`seen`). Faults are set per route with `rule(...)`: answer something else instead
(a 429 with the platform's reset header), hold a request until released (so that a worker can be killed while it
waits), or act on the request and answer only after a delay (a send that times out after it was posted).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import html
import itertools
import json
import pathlib
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECORDED = pathlib.Path(__file__).resolve().parents[2] / "channels" / "recorded"
# How long a held request waits for its release at most, so that a forgotten hold never blocks a test run.
HOLD_LIMIT = 60.0


def recorded(path: str) -> Any:
    """A recorded response body, as the platform sent it."""
    return json.loads((RECORDED / path).read_bytes())


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def param(self, name: str) -> str | None:
        """The first value of a query parameter, None when absent."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclasses.dataclass
class Answer:
    """What the fake sends back: a status, a JSON body (or raw bytes) and headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclasses.dataclass(eq=False)
class Rule:
    """A fault on one route: answer `answer` instead, hold until `release()`, and/or answer after `delay` seconds.

    It applies to requests with `method` whose path matches `path` (a regular expression, matched whole) and for
    which `when` (if given) is true, at most `times` times (None: always). `arrived` is set when it first applied.
    """

    method: str
    path: str
    when: Callable[[Seen], bool] | None = None
    times: int | None = None
    answer: Answer | None = None
    hold: bool = False
    delay: float = 0.0
    used: int = 0
    arrived: threading.Event = dataclasses.field(default_factory=threading.Event)
    released: threading.Event = dataclasses.field(default_factory=threading.Event)

    def matches(self, seen: Seen) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if seen.method != self.method or not re.fullmatch(self.path, seen.path):
            return False
        return self.when is None or self.when(seen)

    def release(self) -> None:
        """Let a held request go on (to its normal answer)."""
        self.released.set()


class FakePlatform:
    """The fake platform server: X, Facebook and Instagram Graph, Telegram and Mastodon on one port, faults, a log."""

    def __init__(self) -> None:
        self.x = FakeX()
        self.graph = FakeGraph()
        self.instagram = FakeInstagram()
        self.telegram = FakeTelegram()
        self.mastodon = FakeMastodon()
        self.requests: list[Seen] = []
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakePlatform:
        self._thread.start()
        return self

    def stop(self) -> None:
        for rule in self.rules:
            rule.release()
        self._server.shutdown()
        self._server.server_close()

    def rule(self, method: str, path: str, *, when: Callable[[Seen], bool] | None = None, times: int | None = None,
             answer: Answer | None = None, hold: bool = False, delay: float = 0.0) -> Rule:
        """Add a fault (see `Rule`); the first matching rule applies."""
        rule = Rule(method=method, path=path, when=when, times=times, answer=answer, hold=hold, delay=delay)
        with self._lock:
            self.rules.append(rule)
        return rule

    def seen(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        """The requests received so far, optionally only those with `method` and a path matching `path` whole."""
        with self._lock:
            requests = list(self.requests)
        return [r for r in requests
                if (method is None or r.method == method) and (path is None or re.fullmatch(path, r.path))]

    def respond(self, seen: Seen) -> tuple[Answer, float]:
        """The answer to a request and how long to wait before sending it."""
        with self._lock:
            self.requests.append(seen)
            rule = next((r for r in self.rules if r.matches(seen)), None)
            if rule is not None:
                rule.used += 1
        if rule is not None:
            rule.arrived.set()
            if rule.hold:
                rule.released.wait(HOLD_LIMIT)
            if rule.answer is not None:
                return rule.answer, rule.delay
        with self._lock:
            for platform in (self.x, self.graph, self.instagram, self.telegram, self.mastodon):
                answer = platform.handle(seen, self.url)
                if answer is not None:
                    return answer, rule.delay if rule is not None else 0.0
        return Answer(404, {"error": f"the fake platform has no route {seen.method} {seen.path}"}), 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakePlatform) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout, a killed worker) closed its end; nothing to report."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        seen = Seen(method=self.command, path=url.path,
                    query=urllib.parse.parse_qs(url.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()}, body=body, at=time.monotonic())
        answer, delay = self.server.fake.respond(seen)
        if delay:
            time.sleep(delay)
        payload = answer.encoded()
        try:
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json; charset=utf-8", **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client is gone (it timed out, or its worker was killed)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `FakePlatform.requests` is the log."""


def _bearer(seen: Seen) -> str:
    value = seen.headers.get("authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else ""


# -- X API v2 -----------------------------------------------------------------------------------------------------


class FakeX:
    """X API v2: the mentions timeline and the DM events of any user, from the recorded python-twitter pages."""

    token = "x-oauth2-user-access-token"
    MENTION_PAGES = (
        "python-twitter/x_api_v2/users_mentions_with_created_at.json",  # meta.next_token names the next one
        "python-twitter/x_api_v2/search_recent_reply_thread_with_includes.json",  # older tweets, no next_token
    )
    DM_PAGE = "python-twitter/x_api_v2/dm_events_by_conversation.json"
    # X's answer to a bad parameter (recorded in python-twitter as well).
    INVALID_REQUEST = "python-twitter/x_api_v2/error_problem_invalid_request.json"
    # X's documented 401 (x-api/fundamentals/response-codes-and-errors.mdx).
    UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
    # X's documented 429 body (x-api/fundamentals/rate-limits.mdx); the reset time is in `x-rate-limit-reset`.
    RATE_LIMITED = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}

    def __init__(self) -> None:
        self.mention_pages = [recorded(p) for p in self.MENTION_PAGES]
        self.dm_pages = [recorded(self.DM_PAGE)]

    @classmethod
    def rate_limited(cls, reset_at: int) -> Answer:
        """A 429 with X's rate-limit headers: the window's limit, nothing remaining, and its reset (epoch seconds)."""
        return Answer(429, cls.RATE_LIMITED, {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0",
                                              "x-rate-limit-reset": str(reset_at)})

    def handle(self, seen: Seen, base_url: str) -> Answer | None:
        if seen.method != "GET":
            return None
        mentions = re.fullmatch(r"/2/users/(\d+)/mentions", seen.path)
        if not mentions and seen.path != "/2/dm_events":
            return None
        if _bearer(seen) != self.token:
            return Answer(401, self.UNAUTHORIZED)
        pages = self.mention_pages if mentions else self.dm_pages
        page = self._page(pages, seen.param("pagination_token"))
        if page is None:
            return Answer(400, recorded(self.INVALID_REQUEST))
        since = seen.param("since_id")
        if mentions and since:
            page = self._newer_than(page, int(since))
        return Answer(200, page)

    @staticmethod
    def _page(pages: list[dict[str, Any]], token: str | None) -> dict[str, Any] | None:
        """The page `token` names (the first without one); None for a token X never gave."""
        tokens = [None, *((p.get("meta") or {}).get("next_token") for p in pages[:-1])]
        return copy.deepcopy(pages[tokens.index(token)]) if token in tokens else None

    @staticmethod
    def _newer_than(page: dict[str, Any], since: int) -> dict[str, Any]:
        """The page cut at `since_id`: only newer tweets, and no next page once the cut was reached."""
        data = page.get("data") or []
        fresh = [t for t in data if int(t["id"]) > since]
        if not fresh:
            return {"meta": {"result_count": 0}}
        meta = dict(page.get("meta") or {})
        if len(fresh) < len(data):
            meta.pop("next_token", None)
        ids = [int(t["id"]) for t in fresh]
        meta.update(result_count=len(fresh), newest_id=str(max(ids)), oldest_id=str(min(ids)))
        return {**page, "data": fresh, "meta": meta}


# -- Facebook Graph API -------------------------------------------------------------------------------------------


def _graph_time(value: str) -> int:
    return int(dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp())


class FakeGraph:
    """The Graph API of one Facebook page ("MyLife" of the python-facebook recordings): its feed and conversations."""

    page_id = "2121008874780932"
    token = "fb-page-access-token"
    COMMENT = "python-facebook/facebook_graph/comment_full_fields.json"
    CONVERSATION = "python-facebook/facebook_graph/conversation_full_fields.json"
    MESSAGE = "python-facebook/facebook_graph/message_with_image_attachment.json"
    # The post the recorded comment answers: its id from the comment's id and permalink; the time is chosen
    # (before the comment's); the author is the page as the recorded conversation names it.
    POST_ID = "2954961744718970"
    POST_TIME = "2021-07-19T08:00:00+0000"

    def __init__(self) -> None:
        conversation = recorded(self.CONVERSATION)
        page = next(p for p in conversation["participants"]["data"] if p["id"] == self.page_id)
        self.posts = [{
            "id": f"{self.page_id}_{self.POST_ID}", "created_time": self.POST_TIME,
            "from": {"name": page["name"], "id": page["id"]}, "comments": {"data": [recorded(self.COMMENT)]},
        }]
        conversation["messages"] = {"data": [recorded(self.MESSAGE)]}
        self.conversations = [conversation]

    @staticmethod
    def error(code: int, message: str) -> dict[str, Any]:
        """Graph's error object (Graph API, "Handling Errors")."""
        return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AfAkEtRaCe"}}

    def handle(self, seen: Seen, base_url: str) -> Answer | None:
        found = re.fullmatch(r"/(v\d+\.\d+)/(\d+)/(feed|conversations)", seen.path)
        if seen.method != "GET" or not found:
            return None
        version, page, edge = found.groups()
        if _bearer(seen) != self.token:
            return Answer(400, self.error(190, "Invalid OAuth access token - Cannot parse access token"))
        if page != self.page_id:
            return Answer(400, self.error(100, f"Unsupported get request. Object with ID '{page}' does not exist"))
        if edge == "conversations":
            return Answer(200, {"data": copy.deepcopy(self.conversations)})
        return Answer(200, self._feed(seen, f"{base_url}/{version}/{page}/feed"))

    def _feed(self, seen: Seen, edge_url: str) -> dict[str, Any]:
        since = int(seen.param("since") or 0)
        until = int(seen.param("until") or 2**62)
        limit = int(seen.param("limit") or 25)
        posts = sorted((p for p in self.posts if since <= _graph_time(p["created_time"]) <= until),
                       key=lambda p: _graph_time(p["created_time"]), reverse=True)
        page = posts[:limit]
        body: dict[str, Any] = {"data": copy.deepcopy(page)}
        if len(posts) > limit:
            oldest = _graph_time(page[-1]["created_time"])
            query = urllib.parse.urlencode({"limit": limit, "until": oldest - 1, "__paging_token": "enc_AdAnext"})
            body["paging"] = {"next": f"{edge_url}?{query}"}
        return body


# -- Instagram Graph API ------------------------------------------------------------------------------------------

# A Graph field list: `name(.modifier(arg))*({sub-fields})?`, comma-separated (Graph API, "Field Expansion").
_FIELD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_]+\([^(){},]*\))*)\s*")
_MODIFIER = re.compile(r"\.([A-Za-z_]+)\(([^(){},]*)\)")
Fields = dict[str, tuple[dict[str, str], "Fields | None"]]


def graph_fields(spec: str) -> Fields:
    """A `fields` parameter as {name: (modifiers, sub-fields or None)}; ValueError when it is not one."""
    fields, end = _fields_from(spec, 0)
    if end != len(spec):
        raise ValueError(f"unexpected {spec[end:]!r}")
    return fields


def _fields_from(spec: str, at: int) -> tuple[Fields, int]:
    fields: Fields = {}
    while True:
        found = _FIELD.match(spec, at)
        if not found:
            raise ValueError(f"no field name at {spec[at:]!r}")
        name, modifiers, at = found.group(1), dict(_MODIFIER.findall(found.group(2))), found.end()
        sub = None
        if spec.startswith("{", at):
            sub, at = _fields_from(spec, at + 1)
            if not spec.startswith("}", at):
                raise ValueError(f"unclosed {{ after {name!r}")
            at += 1
        fields[name] = (modifiers, sub)
        if not spec.startswith(",", at):
            return fields, at
        at += 1


def _cursor(object_id: str) -> str:
    """An opaque paging cursor for an object, base64 as Graph's are."""
    return base64.urlsafe_b64encode(f"cursor:{object_id}".encode()).decode().rstrip("=")


class FakeInstagram:
    """The Graph API of one Instagram professional account: its media (`GET /{ig-user-id}/media`) with their comments.

    The account is the python-facebook recordings' (`17841406338772941`: the `user.id` of its own comment in
    `comment_with_replies.json` and the `id` of `mentioned_comment.json`). No recorded `/media` page exists, so the
    fake serves the recorded comments under the media they belong to, and answers like Graph would:

    - `fields` is honoured by field expansion: each object gets `id` and the requested fields it has, edges
      (`comments`, `replies`) honour `.limit(n)` and give their items only the requested sub-fields;
    - the media edge is newest first, honours `limit` and the cursors `after` / `before` (with `paging.cursors`,
      and `paging.next` while media are left), and `since` / `until` (epoch seconds) on the media's time when
      given (Graph's time-based paging; the adapter does not send them today).

    What is built around the recordings, because no recording holds it (chosen values are marked so):

    - Media `17846368219941692` (the one `comment_with_replies.json` names and `media_comments_page1.json`'s
      `paging.next` pages): its comments are the two of `media_comments_page1.json`, completed with the fields
      `comments_by_id.json` recorded for the same comment ids, and the account's own comment of
      `comment_with_replies.json` with its nested reply. That comment was recorded without `from`: it is completed
      from its `user.id` and `username` (Graph's `from` is `{id, username}`). The other comments were recorded
      without an author id, so they get no `from` (none is made up). The media's `timestamp` is chosen (just
      before its oldest comment) and its `media_type` too (`IMAGE`).
    - Media `76543987`: the comment of Meta's test delivery `restfb/instagram/wh-comments-2021.json` is the only
      recorded Instagram comment with an author id (`from{id, username}`). It is a reply (`parent_id`
      `987654321`), and Graph lists replies under their top-level comment's `replies`, so the media carries that
      comment, of which only the id is recorded (time chosen, no text nor author), with the recorded reply
      under it. The webhook value has no time: the reply's `timestamp` is the entry's `time`. The media's
      `media_product_type` is recorded (`FEED`); its `timestamp` and `media_type` are chosen.
    """

    account_id = "17841406338772941"
    token = "ig-page-access-token"
    MEDIA_ID = "17846368219941692"
    MEDIA_TIME = "2020-02-24T09:00:00+0000"  # chosen: before its oldest comment (2020-02-24T09:15:16)
    PAGE = "python-facebook/instagram_graph/media_comments_page1.json"
    REPLIED = "python-facebook/instagram_graph/comment_with_replies.json"
    BY_ID = "python-facebook/instagram_graph/comments_by_id.json"
    WEBHOOK = "restfb/instagram/wh-comments-2021.json"
    SAMPLE_MEDIA_TIME = "2018-02-23T15:00:00+0000"  # chosen: before the comment below
    SAMPLE_PARENT_TIME = "2018-02-23T15:10:00+0000"  # chosen: before the recorded reply (15:21:47)
    MEDIA_TYPE = "IMAGE"  # chosen
    PAGE_LIMIT = 100

    def __init__(self) -> None:
        by_id = recorded(self.BY_ID)
        comments = [{**by_id.get(c["id"], {}), **c} for c in recorded(self.PAGE)["data"]]
        own = recorded(self.REPLIED)
        own = {**by_id.get(own["id"], {}), **own, "from": {"id": own["user"]["id"], "username": own["username"]}}
        comments.append(own)
        entry = recorded(self.WEBHOOK)["entry"][0]
        reply = dict(entry["changes"][0]["value"])
        reply["timestamp"] = dt.datetime.fromtimestamp(entry["time"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        sample_media = reply["media"]
        parent = {"id": reply["parent_id"], "timestamp": self.SAMPLE_PARENT_TIME, "replies": {"data": [reply]}}
        self.media = sorted([
            {"id": self.MEDIA_ID, "timestamp": self.MEDIA_TIME, "media_type": self.MEDIA_TYPE,
             "comments": {"data": self._newest_first(comments)}},
            {**sample_media, "timestamp": self.SAMPLE_MEDIA_TIME, "media_type": self.MEDIA_TYPE,
             "comments": {"data": [parent]}},
        ], key=lambda m: _graph_time(m["timestamp"]), reverse=True)

    @staticmethod
    def _newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda c: _graph_time(c["timestamp"]), reverse=True)

    def handle(self, seen: Seen, base_url: str) -> Answer | None:
        found = re.fullmatch(r"/(v\d+\.\d+)/(\w+)/media", seen.path)
        if seen.method != "GET" or not found:
            return None
        version, user = found.groups()
        if _bearer(seen) != self.token:
            return Answer(400, FakeGraph.error(190, "Invalid OAuth access token - Cannot parse access token"))
        if user != self.account_id:
            return Answer(400, FakeGraph.error(100, f"Unsupported get request. Object with ID '{user}' does not exist"))
        try:
            fields = graph_fields(seen.param("fields") or "id")
        except ValueError as exc:
            return Answer(400, FakeGraph.error(100, f"Syntax error in fields: {exc}"))
        since = int(seen.param("since") or 0)
        until = int(seen.param("until") or 2**62)
        media = [m for m in self.media if since <= _graph_time(m["timestamp"]) <= until]
        cursors = [_cursor(m["id"]) for m in media]
        after, before = seen.param("after"), seen.param("before")
        if (after and after not in cursors) or (before and before not in cursors):
            return Answer(400, FakeGraph.error(100, "Invalid pagination cursor"))
        start = cursors.index(after) + 1 if after else 0
        end = cursors.index(before) if before else len(media)
        limit = min(max(int(seen.param("limit") or 25), 1), self.PAGE_LIMIT)
        page = media[start:end][:limit]
        body: dict[str, Any] = {"data": [self._select(m, fields, f"{base_url}/{version}") for m in page]}
        if page:
            body["paging"] = {"cursors": {"before": _cursor(page[0]["id"]), "after": _cursor(page[-1]["id"])}}
            if start + len(page) < end:
                keep = {k: v[0] for k, v in seen.query.items() if k in ("fields", "since", "until")}
                query = urllib.parse.urlencode({**keep, "limit": limit, "after": _cursor(page[-1]["id"])})
                body["paging"]["next"] = f"{base_url}/{version}/{user}/media?{query}"
        return Answer(200, body)

    def _select(self, obj: dict[str, Any], fields: Fields, base: str) -> dict[str, Any]:
        """Field expansion: `id`, then each requested field the object has (edges paged by their `.limit(n)`).

        An edge with more items than its limit gets a `paging.next` to `/{id}/{edge}`, as Graph gives; the fake
        does not serve that route (the adapter does not follow nested paging, and no recorded edge is that long).
        """
        out: dict[str, Any] = {"id": obj["id"]} if "id" in obj else {}
        for name, (modifiers, sub) in fields.items():
            if name not in obj:
                continue
            value = obj[name]
            if isinstance(value, dict) and isinstance(value.get("data"), list):
                limit = int(modifiers.get("limit") or 25)
                items = value["data"][:limit]
                edge: dict[str, Any] = {"data": [self._select(i, sub, base) if sub else {"id": i["id"]}
                                                 for i in items]}
                if items:
                    after = _cursor(items[-1]["id"])
                    edge["paging"] = {"cursors": {"before": _cursor(items[0]["id"]), "after": after}}
                    if len(value["data"]) > limit:
                        edge["paging"]["next"] = f"{base}/{obj['id']}/{name}?limit={limit}&after={after}"
                out[name] = edge
            elif isinstance(value, dict) and sub:
                out[name] = self._select(value, sub, base)
            else:
                out[name] = copy.deepcopy(value)
        return out


# -- Telegram Bot API ---------------------------------------------------------------------------------------------


class FakeTelegram:
    """The Bot API of one bot, with recorded Updates (nutgram) waiting for `getUpdates`."""

    token = "123456:fake-bot-token"
    UPDATE_FILES = ("text", "command", "photo", "voice", "message", "entities")
    FIRST_UPDATE_ID = 90001

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        for number, name in enumerate(self.UPDATE_FILES):
            update = recorded(f"nutgram/telegram_bot_api/{name}.json")
            update["update_id"] = self.FIRST_UPDATE_ID + number
            self.pending.append(update)

    def handle(self, seen: Seen, base_url: str) -> Answer | None:
        found = re.fullmatch(r"/bot([^/]+)/(\w+)", seen.path)
        if not found:
            return None
        token, method = found.groups()
        if token != self.token:
            return Answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        if method != "getUpdates":
            return Answer(404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"})
        params = {k: v[0] for k, v in seen.query.items()}
        if seen.method == "POST" and seen.body:
            params.update(seen.json())
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        allowed = params.get("allowed_updates")
        kinds = set(json.loads(allowed) if isinstance(allowed, str) else allowed or [])
        # An offset confirms every update below it: Telegram forgets them.
        self.pending = [u for u in self.pending if u["update_id"] >= offset]
        result = [u for u in self.pending if not kinds or kinds.intersection(u)][:limit]
        return Answer(200, {"ok": True, "result": copy.deepcopy(result)})


# -- Mastodon -----------------------------------------------------------------------------------------------------


class FakeMastodon:
    """One Mastodon account's API: its mention notifications and posting statuses, from the Mastodon.py recordings."""

    token = "mastodon-access-token"
    RECORDING = "mastodon-py/local_instance/notifications_mentions_only.exchanges.json"
    # The account the recorded mention notification mentions: ours.
    account_id = "117020565966271181"

    def __init__(self) -> None:
        exchanges = recorded(self.RECORDING)["exchanges"]
        self.status_template = exchanges[0]["response_body"]  # the answer to a real POST /api/v1/statuses
        self.notifications: list[dict[str, Any]] = exchanges[1]["response_body"]
        self.statuses_by_key: dict[str, dict[str, Any]] = {}
        self.posted: list[dict[str, Any]] = []
        self._ids = itertools.count(int(self.status_template["id"]) + 1)

    def handle(self, seen: Seen, base_url: str) -> Answer | None:
        route = (seen.method, seen.path)
        if route not in (("GET", "/api/v1/notifications"), ("POST", "/api/v1/statuses")):
            return None
        if _bearer(seen) != self.token:
            return Answer(401, {"error": "The access token is invalid"})
        if route[0] == "GET":
            return self._notifications(seen, base_url)
        return self._post_status(seen)

    def _notifications(self, seen: Seen, base_url: str) -> Answer:
        types = seen.query.get("types[]") or []
        limit = min(max(int(seen.param("limit") or 40), 1), 80)
        items = sorted((n for n in self.notifications if not types or n["type"] in types),
                       key=lambda n: int(n["id"]), reverse=True)
        if seen.param("max_id"):
            items = [n for n in items if int(n["id"]) < int(seen.param("max_id"))]
        if seen.param("min_id"):  # the page just above min_id, still newest first
            items = [n for n in items if int(n["id"]) > int(seen.param("min_id"))][-limit:]
        elif seen.param("since_id"):  # the newest page above since_id
            items = [n for n in items if int(n["id"]) > int(seen.param("since_id"))]
        page = copy.deepcopy(items[:limit])
        headers = {}
        if page:
            keep = [("types[]", t) for t in types] + [("limit", str(limit))]
            url = f"{base_url}/api/v1/notifications?"
            newer = urllib.parse.urlencode([*keep, ("min_id", page[0]["id"])])
            older = urllib.parse.urlencode([*keep, ("max_id", page[-1]["id"])])
            headers["Link"] = f'<{url}{older}>; rel="next", <{url}{newer}>; rel="prev"'
        return Answer(200, page, headers)

    def _post_status(self, seen: Seen) -> Answer:
        key = seen.headers.get("idempotency-key", "")
        if key and key in self.statuses_by_key:
            return Answer(200, self.statuses_by_key[key])
        form = seen.json() if seen.headers.get("content-type", "").startswith("application/json") else {
            k: v[0] for k, v in urllib.parse.parse_qs(seen.body.decode()).items()}
        text = str(form.get("status") or "")
        if not text.strip():
            return Answer(422, {"error": "Validation failed: Text can't be blank"})
        status = copy.deepcopy(self.status_template)
        status_id = str(next(self._ids))
        status.update(
            id=status_id, created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            content=f"<p>{html.escape(text)}</p>", in_reply_to_id=form.get("in_reply_to_id"),
            visibility=form.get("visibility") or "public",
            uri=re.sub(r"\d+$", status_id, status["uri"]), url=re.sub(r"\d+$", status_id, status["url"]),
        )
        self.posted.append(status)
        if key:
            self.statuses_by_key[key] = status
        return Answer(200, status)
