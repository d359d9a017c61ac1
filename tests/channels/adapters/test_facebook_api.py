"""Facebook webhook authenticity, Meta's handshake, Graph polling and replies (HTTP mocked at the transport with respx).

Response bodies are recorded Graph responses (python-facebook/) where one exists. The rest follow Meta's documented
shapes: the Send API answer `{"recipient_id", "message_id"}` (Messenger Platform, Send API reference), a created
comment `{"id"}` (Graph API, Comments edge), Graph's error object `{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}` (Graph API, "Handling Errors") and the `X-Business-Use-Case-Usage` / `X-App-Usage`
headers (Graph API, "Rate Limits").
"""

import datetime as dt
import hashlib
import hmac
import json
import pathlib

import httpx
import pytest
import respx

from channels.adapters import facebook
from channels.adapters.base import (
    Author,
    EventKind,
    HandshakeResponse,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
    WebhookRequest,
)
from channels.adapters.facebook import FacebookAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
GRAPH = "https://graph.facebook.com/v21.0"
UTC = dt.UTC
MYLIFE = "2121008874780932"
CUSTOMER = "2711636948859886"
TOKEN = "page-token-123"
SECRETS = {"app_secret": "app-secret", "verify_token": "verify-me"}


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def graph_error(code: int, message: str, **extra: object) -> dict:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf", **extra}}


def adapter(page: str = MYLIFE, **kwargs: object) -> FacebookAdapter:
    return FacebookAdapter(external_id=page, credentials={"page_access_token": TOKEN}, webhook_secret=SECRETS,
                           **kwargs)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    frozen = dt.datetime(2021, 7, 23, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(facebook, "utc_now", lambda: frozen)
    return frozen


@pytest.fixture
def graph() -> respx.MockRouter:
    with respx.mock(base_url=GRAPH, assert_all_called=False) as router:
        yield router


# -- webhook signature -------------------------------------------------------------------------------------------

BODY = recorded("restfb/messenger/messaging-message-basic.json")


def signed(body: bytes, secret: str = "app-secret", prefix: str = "sha256=") -> WebhookRequest:
    signature = prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(method="POST", headers={"x-hub-signature-256": signature}, query={}, body=body)


def test_signature_over_the_raw_body_is_accepted() -> None:
    adapter().verify_webhook(signed(BODY))


@pytest.mark.parametrize(("request_", "message"), [
    (signed(BODY, secret="another-secret"), "does not match"),
    (WebhookRequest("POST", signed(BODY).headers, {}, BODY.replace(b"hello, world!", b"hello, World!")),
     "does not match"),
    # Signed over re-serialised JSON (what a framework's parsed-then-dumped body would be), not the bytes sent.
    (WebhookRequest("POST", signed(json.dumps(json.loads(BODY)).encode()).headers, {}, BODY), "does not match"),
    (signed(BODY, prefix="sha1="), "does not start with 'sha256='"),
    (WebhookRequest(method="POST", headers={}, query={}, body=BODY), "missing"),
])
def test_wrong_tampered_reserialised_or_missing_signature_is_refused(request_: WebhookRequest, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        adapter().verify_webhook(request_)


def test_legacy_sha1_header_alone_is_refused() -> None:
    sha1 = "sha1=" + hmac.new(b"app-secret", BODY, hashlib.sha1).hexdigest()
    with pytest.raises(SignatureError, match="missing"):
        adapter().verify_webhook(WebhookRequest("POST", {"x-hub-signature": sha1}, {}, BODY))


def test_account_without_app_secret_refuses_every_webhook() -> None:
    unconfigured = FacebookAdapter(external_id=MYLIFE, webhook_secret={"verify_token": "verify-me"})
    with pytest.raises(SignatureError, match="no webhook secret 'app_secret'"):
        unconfigured.verify_webhook(signed(BODY))


# -- handshake -----------------------------------------------------------------------------------------------------

def hub(**query: str) -> WebhookRequest:
    return WebhookRequest(method="GET", headers={}, query=query)


def test_handshake_echoes_the_challenge() -> None:
    answer = adapter().handshake(hub(**{"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                        "hub.challenge": "1158201444"}))

    assert answer == HandshakeResponse(body="1158201444", status=200, content_type="text/plain")


@pytest.mark.parametrize(("query", "secrets", "message"), [
    ({"hub.verify_token": "guess"}, SECRETS, "hub.verify_token does not match"),
    ({}, SECRETS, "hub.verify_token header is missing"),
    ({"hub.verify_token": "verify-me"}, {"app_secret": "x"}, "no webhook secret 'verify_token'"),
])
def test_handshake_with_a_wrong_or_missing_token_is_refused(query: dict, secrets: dict, message: str) -> None:
    request = hub(**{"hub.mode": "subscribe", "hub.challenge": "1158201444", **query})
    with pytest.raises(SignatureError, match=message):
        FacebookAdapter(webhook_secret=secrets).handshake(request)


def test_handshake_does_not_reflect_markup() -> None:
    with pytest.raises(facebook.PayloadError, match="hub.challenge"):
        adapter().handshake(hub(**{"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                   "hub.challenge": "<script>alert(1)</script>"}))


@pytest.mark.parametrize("request_", [
    WebhookRequest(method="POST", headers={}, query={"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                                     "hub.challenge": "1"}, body=BODY),
    hub(),
    hub(**{"hub.mode": "unsubscribe", "hub.verify_token": "verify-me", "hub.challenge": "1"}),
])
def test_requests_that_are_not_a_handshake_get_none(request_: WebhookRequest) -> None:
    assert adapter().handshake(request_) is None


# -- polling -------------------------------------------------------------------------------------------------------

# page_feed_fields_page1.json was recorded from `/{page}/posts`; `/{page}/feed` answers with the same post objects.
def test_feed_page_returns_posts_newer_than_since_and_moves_on_to_conversations(
        graph: respx.MockRouter, now: dt.datetime) -> None:
    route = graph.get("/4/feed").respond(200, json=json.loads(recorded(
        "python-facebook/facebook_graph/page_feed_fields_page1.json")))

    result = adapter(page="4").fetch({"since": int(dt.datetime(2021, 7, 3, tzinfo=UTC).timestamp())})

    # Only the post after `since`; the page's oldest post is older than `since` less the comment window: stop.
    assert [(e.external_id, e.kind) for e in result.events] == [("4_10113477241177441", EventKind.POST)]
    assert result.has_more is True
    assert result.cursor == {"since": 1625270400, "started": int(now.timestamp()), "stage": "conversations",
                             "seen": {"4_10113477241177441": 1625428258}}
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "access_token" not in str(request.url)
    params = request.url.params
    assert params["since"] == str(1625270400 - 7 * 86400)
    assert params["limit"] == "25"
    assert params["fields"].startswith("id,message,created_time,from,permalink_url,comments.filter(stream)")


def test_feed_pagination_follows_paging_next_without_its_token(graph: respx.MockRouter, now: dt.datetime) -> None:
    first = graph.get("/4/feed", params={"limit": "25"}).respond(200, json=json.loads(recorded(
        "python-facebook/facebook_graph/page_feed_fields_page1.json")))
    since = int(dt.datetime(2021, 6, 29, tzinfo=UTC).timestamp())

    page1 = adapter(page="4").fetch({"since": since})

    assert [e.external_id for e in page1.events] == ["4_10113477241177441", "4_10113449068715281",
                                                      "4_10113400535556121"]
    assert page1.has_more is True
    assert page1.cursor["stage"] == "feed"
    assert page1.cursor["page"] == {"until": "1624385168", "__paging_token": "__paging_token"}
    assert "access_token" not in json.dumps(page1.cursor)

    first.respond(200, json={"data": []})
    page2 = adapter(page="4").fetch(page1.cursor)

    request = first.calls.last.request
    assert (request.url.params["until"], request.url.params["__paging_token"]) == ("1624385168", "__paging_token")
    assert (page2.events, page2.has_more, page2.cursor["stage"]) == ([], True, "conversations")
    assert "page" not in page2.cursor


def test_feed_comments_already_seen_or_older_than_since_are_left_out(graph: respx.MockRouter, now: dt.datetime) -> None:
    comment = json.loads(recorded("python-facebook/facebook_graph/comment_full_fields.json"))
    older = {**comment, "id": "2954961744718970_1", "created_time": "2021-07-20T00:00:00+0000"}  # derived
    seen = {**comment, "id": "2954961744718970_2", "created_time": "2021-07-23T09:00:00+0000"}  # derived
    post = {"id": f"{MYLIFE}_2954961744718970", "created_time": "2021-07-19T08:00:00+0000",
            "comments": {"data": [comment, seen, older]}}
    graph.get(f"/{MYLIFE}/feed").respond(200, json={"data": [post]})
    since = int(dt.datetime(2021, 7, 22, tzinfo=UTC).timestamp())

    result = adapter().fetch({"since": since, "seen": {"2954961744718970_2": 1627030800}})

    assert [e.external_id for e in result.events] == ["2954961744718970_2966313500250461"]
    assert result.cursor["seen"] == {"2954961744718970_2": 1627030800, "2954961744718970_2966313500250461": 1627029318}


def test_conversations_page_ends_the_run_and_sets_the_next_since(graph: respx.MockRouter, now: dt.datetime) -> None:
    conversation = json.loads(recorded("python-facebook/facebook_graph/conversation_full_fields.json"))
    conversation["messages"] = {"data": [json.loads(recorded(
        "python-facebook/facebook_graph/message_with_image_attachment.json"))]}
    route = graph.get(f"/{MYLIFE}/conversations").respond(200, json={"data": [conversation]})
    started = int(now.timestamp()) - 60
    cursor = {"since": started - 86400, "started": started, "stage": "conversations",
              "seen": {"old-comment": started - 3600, "fresh-comment": started - 30}}

    result = adapter().fetch(cursor)

    [event] = result.events
    assert (event.kind, event.thread_key, event.author.external_id) == (
        EventKind.DIRECT_MESSAGE, f"psid:{CUSTOMER}", CUSTOMER)
    assert result.has_more is False
    # The next run starts 5 minutes before this one began and remembers only what it may see again.
    assert result.cursor == {"since": started - 300, "seen": {"fresh-comment": started - 30}}
    assert route.calls.last.request.url.params["fields"].startswith("id,updated_time,messages.limit(25){")


def test_first_run_looks_one_day_back(graph: respx.MockRouter, now: dt.datetime) -> None:
    route = graph.get(f"/{MYLIFE}/feed").respond(200, json={"data": []})

    result = adapter().fetch({})

    one_day_back = int((now - dt.timedelta(days=1)).timestamp())
    assert result.cursor["since"] == one_day_back
    assert route.calls.last.request.url.params["since"] == str(one_day_back - 7 * 86400)


def test_polling_needs_the_page_id_and_a_token() -> None:
    with pytest.raises(PermanentError, match="page id"):
        FacebookAdapter(credentials={"page_access_token": TOKEN}).fetch({})
    with pytest.raises(PermanentError, match="no page_access_token"):
        FacebookAdapter(external_id=MYLIFE).fetch({})


@pytest.mark.parametrize(("code", "header", "minutes"), [
    (32, {"x-business-use-case-usage": json.dumps({MYLIFE: [
        {"type": "pages", "call_count": 100, "total_cputime": 12, "total_time": 14,
         "estimated_time_to_regain_access": 17}]})}, 17),
    (80001, {"x-business-use-case-usage": json.dumps({MYLIFE: [
        {"type": "pages", "call_count": 100, "total_cputime": 1, "total_time": 1, "estimated_time_to_regain_access": 3},
        {"type": "messenger", "call_count": 100, "total_cputime": 1, "total_time": 1,
         "estimated_time_to_regain_access": 41}]})}, 41),
    (4, {"x-app-usage": json.dumps({"call_count": 100, "total_cputime": 20, "total_time": 20,
                                    "estimated_time_to_regain_access": 9})}, 9),
])
def test_graph_throttling_is_rate_limited_until_meta_says(
        graph: respx.MockRouter, now: dt.datetime, code: int, header: dict, minutes: int) -> None:
    graph.get(f"/{MYLIFE}/feed").respond(400, json=graph_error(code, "(#32) Page request limit reached"),
                                         headers=header)

    with pytest.raises(RateLimited, match=f"Graph error {code}") as caught:
        adapter().fetch({})

    assert caught.value.reset_at == now + dt.timedelta(minutes=minutes)


def test_graph_throttling_without_an_estimate_waits_the_default(graph: respx.MockRouter, now: dt.datetime) -> None:
    graph.get(f"/{MYLIFE}/feed").respond(403, json=graph_error(17, "(#17) User request limit reached"),
                                         headers={"x-app-usage": '{"call_count":100,"total_cputime":5,"total_time":5}'})

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({})

    assert caught.value.reset_at == now + dt.timedelta(minutes=5)


def test_http_429_uses_retry_after(graph: respx.MockRouter) -> None:
    graph.get(f"/{MYLIFE}/feed").respond(429, text="slow down", headers={"retry-after": "120"})
    before = dt.datetime.now(UTC)

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({})

    assert dt.timedelta(seconds=120) <= caught.value.reset_at - before < dt.timedelta(seconds=125)


@pytest.mark.parametrize(("status", "body"), [
    (500, graph_error(2, "An unexpected error has occurred. Please retry your request later.", is_transient=True)),
    (503, {"text": "Service Unavailable"}),
    (400, graph_error(1, "An unknown error occurred")),
])
def test_server_errors_and_transient_graph_errors_are_transient(
        graph: respx.MockRouter, status: int, body: dict) -> None:
    graph.get(f"/{MYLIFE}/feed").respond(status, json=body)

    with pytest.raises(TransientError) as caught:
        adapter().fetch({})

    assert not isinstance(caught.value, RateLimited)


def test_expired_token_is_permanent(graph: respx.MockRouter) -> None:
    graph.get(f"/{MYLIFE}/feed").respond(400, json=graph_error(190, "Error validating access token",
                                                                error_subcode=463))

    with pytest.raises(PermanentError, match="HTTP 400"):
        adapter().fetch({})


def test_fetch_timeout_is_transient(graph: respx.MockRouter) -> None:
    graph.get(f"/{MYLIFE}/feed").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(TransientError, match="timed out"):
        adapter().fetch({})


# -- sending -------------------------------------------------------------------------------------------------------

def dm(text: str = "Thanks, we are on it!", **kwargs: object) -> OutboundMessage:
    return OutboundMessage(idempotency_key="reply-1", text=text, thread_key=f"psid:{CUSTOMER}", private=True,
                           recipient=Author(platform="facebook", external_id=CUSTOMER, scope=MYLIFE), **kwargs)


def test_messenger_reply(graph: respx.MockRouter) -> None:
    route = graph.post(f"/{MYLIFE}/messages").respond(200, json={"recipient_id": CUSTOMER, "message_id": "m_AG5Hz2"})

    result = adapter().send(dm())

    assert (result.external_id, result.thread_key) == ("m_AG5Hz2", f"psid:{CUSTOMER}")
    assert result.raw == {"recipient_id": CUSTOMER, "message_id": "m_AG5Hz2"}
    request = route.calls.last.request
    assert json.loads(request.content) == {"recipient": {"id": CUSTOMER}, "messaging_type": "RESPONSE",
                                           "message": {"text": "Thanks, we are on it!"}}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_public_reply_to_a_comment(graph: respx.MockRouter) -> None:
    route = graph.post("/2954961744718970_2966313500250461/comments").respond(
        200, json={"id": "2954961744718970_2966400000000001"})
    message = OutboundMessage(idempotency_key="reply-2", text="Glad you like it!",
                              thread_key=f"{MYLIFE}_2954961744718970", reply_to_id="2954961744718970_2966313500250461")

    result = adapter().send(message)

    assert (result.external_id, result.thread_key) == ("2954961744718970_2966400000000001",
                                                        f"{MYLIFE}_2954961744718970")
    assert json.loads(route.calls.last.request.content) == {"message": "Glad you like it!"}


def test_public_reply_to_a_visitor_post_comments_on_the_post(graph: respx.MockRouter) -> None:
    route = graph.post("/1234567890321_7293787835232/comments").respond(200, json={"id": "7293787835232_1"})
    message = OutboundMessage(idempotency_key="reply-3", text="Hi John", thread_key="1234567890321_7293787835232")

    assert adapter().send(message).external_id == "7293787835232_1"
    assert route.called


@pytest.mark.parametrize(("reply_to", "recipient"), [
    ("2954961744718970_2966313500250461", {"comment_id": "2954961744718970_2966313500250461"}),
    ("", {"post_id": f"{MYLIFE}_2954961744718970"}),
])
def test_private_reply_to_a_comment_or_visitor_post(graph: respx.MockRouter, reply_to: str, recipient: dict) -> None:
    route = graph.post(f"/{MYLIFE}/messages").respond(200, json={"recipient_id": CUSTOMER, "message_id": "m_priv"})
    message = OutboundMessage(idempotency_key="reply-4", text="Sent you the details in private",
                              thread_key=f"{MYLIFE}_2954961744718970", reply_to_id=reply_to, private=True)

    result = adapter().send(message)

    assert (result.external_id, result.thread_key) == ("m_priv", f"psid:{CUSTOMER}")
    assert json.loads(route.calls.last.request.content) == {
        "recipient": recipient, "message": {"text": "Sent you the details in private"}}


def test_send_timeout_is_outcome_unknown(graph: respx.MockRouter) -> None:
    graph.post(f"/{MYLIFE}/messages").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(OutcomeUnknown, match="may have been posted"):
        adapter().send(dm())


def test_send_rate_limited(graph: respx.MockRouter, now: dt.datetime) -> None:
    graph.post(f"/{MYLIFE}/messages").respond(
        400, json=graph_error(613, "Calls to this api have exceeded the rate limit."))

    with pytest.raises(RateLimited) as caught:
        adapter().send(dm())

    assert caught.value.reset_at == now + facebook.DEFAULT_THROTTLE_WAIT


def test_send_outside_the_messaging_window_is_permanent(graph: respx.MockRouter) -> None:
    graph.post(f"/{MYLIFE}/messages").respond(400, json=graph_error(
        10, "(#10) This message is sent outside of allowed window.", error_subcode=2018278))

    with pytest.raises(PermanentError, match="outside of allowed window"):
        adapter().send(dm())


def test_accepted_send_without_an_id_is_outcome_unknown(graph: respx.MockRouter) -> None:
    graph.post(f"/{MYLIFE}/messages").respond(200, text="OK")

    with pytest.raises(OutcomeUnknown, match="not a JSON object"):
        adapter().send(dm())


@pytest.mark.parametrize(("message", "error"), [
    (dm(text="x" * 2001), "limited to 2000 characters"),
    (dm(text="   "), "needs text"),
    (dm(attachments=({"type": "image", "url": "https://example.com/a.png"},)), "attachments"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="psid:1/../me/feed", private=True), "Graph object id"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key=f"psid:{CUSTOMER}"), "needs the post or comment"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="", private=True), "private reply needs"),
])
def test_replies_refused_before_any_request(graph: respx.MockRouter, message: OutboundMessage, error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        adapter().send(message)

    assert not graph.calls


def test_messenger_limits() -> None:
    assert FacebookAdapter.max_reply_length == 2000
    assert FacebookAdapter.private_reply_window == dt.timedelta(hours=24)
    assert FacebookAdapter.pollable is True
    assert FacebookAdapter.api_base_url == GRAPH

