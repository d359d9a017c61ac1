"""X adapter over HTTP: webhook signatures, the CRC handshake, polling, sending and finding a sent reply.

The platform is faked at the transport level with respx. Its answers are recorded X responses
(channels/recorded/) wherever one exists: mention pages, DM event pages, the `POST /2/tweets` and DM send
answers. Where none was recorded (errors, rate limits) the body follows X's documentation (xdevplatform/docs,
x-api/fundamentals/rate-limits.mdx and response-codes-and-errors.mdx), as each test says.
"""

import base64
import datetime as dt
import hashlib
import hmac
import json
import pathlib

import httpx
import pytest
import respx

from channels.adapters import x as x_module
from channels.adapters.base import (
    Author,
    EventKind,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
    WebhookRequest,
)
from channels.adapters.x import XAdapter, comparable_text

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
API = "https://api.x.com"
ME = "2244994945"  # @TwitterDev: the recorded python-twitter mention pages mention it
SECRET = "consumer-secret-of-the-app"
TOKEN = "oauth2-user-access-token"
NOW = dt.datetime(2022, 10, 27, 12, 0, tzinfo=dt.UTC)

MENTIONS_PAGE = "python-twitter/x_api_v2/users_mentions_with_created_at.json"  # has meta.next_token
LAST_PAGE = "python-twitter/x_api_v2/search_recent_reply_thread_with_includes.json"  # no next_token
DM_PAGE = "python-twitter/x_api_v2/dm_events_by_conversation.json"
TWEEPY_DMS = "tweepy/x_api_v2/dm_manage_and_lookup.exchanges.json"
TWEEPY_CREATE = "tweepy/x_api_v2/create_and_delete_tweet.exchanges.json"
# X's documented rate-limit answer (x-api/fundamentals/rate-limits.mdx, "Handling rate limits").
RATE_LIMITED_BODY = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}
# X's documented error shape (x-api/fundamentals/response-codes-and-errors.mdx, "Error response format").
UNAVAILABLE_BODY = {"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank"}


def recorded(path: str) -> dict:
    return json.loads((RECORDED / path).read_bytes())


def exchange(path: str, index: int) -> dict:
    return recorded(path)["exchanges"][index]


def make_adapter(**config: object) -> XAdapter:
    return XAdapter(external_id=ME, credentials={"access_token": TOKEN}, config=config,
                    webhook_secret={"consumer_secret": SECRET})


@pytest.fixture
def api():
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(x_module, "utc_now", lambda: NOW)


def x_signature(body: bytes, secret: str = SECRET) -> str:
    """What X puts in x-twitter-webhooks-signature, computed here independently of the adapter."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def post(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-twitter-webhooks-signature"] = signature
    return WebhookRequest(method="POST", headers=headers, query={}, body=body)


# -- webhook signatures and CRC -------------------------------------------------------------------------------------

WEBHOOK_BODY = (RECORDED / "tweet_parser/x_api_v1_1_original_format/tweets.jsonl").read_bytes().splitlines()[0]


def test_signature_over_the_raw_body_is_accepted() -> None:
    make_adapter().verify_webhook(post(WEBHOOK_BODY, x_signature(WEBHOOK_BODY)))


@pytest.mark.parametrize(("signature", "message"), [
    (x_signature(WEBHOOK_BODY, "another-secret"), "does not match"),
    (x_signature(json.dumps(json.loads(WEBHOOK_BODY)).encode()), "does not match"),  # re-serialised JSON
    (x_signature(WEBHOOK_BODY).removeprefix("sha256="), "does not start with"),
    ("sha256=" + hmac.new(SECRET.encode(), WEBHOOK_BODY, hashlib.sha256).hexdigest(), "does not match"),  # hex
    ("", "missing"),
    (None, "missing"),
])
def test_wrong_or_missing_signature_is_refused(signature: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        make_adapter().verify_webhook(post(WEBHOOK_BODY, signature))


def test_account_without_consumer_secret_refuses_webhooks() -> None:
    adapter = XAdapter(external_id=ME, webhook_secret={})

    with pytest.raises(SignatureError, match="no webhook secret 'consumer_secret'"):
        adapter.verify_webhook(post(WEBHOOK_BODY, x_signature(WEBHOOK_BODY)))
    with pytest.raises(SignatureError, match="no webhook secret"):
        adapter.handshake(WebhookRequest(method="GET", headers={}, query={"crc_token": "abc"}))


def test_crc_answer_is_the_hmac_of_the_token() -> None:
    token = "challenge_string-çé"
    expected = base64.b64encode(hmac.new(SECRET.encode(), token.encode(), hashlib.sha256).digest()).decode()

    answer = make_adapter().handshake(WebhookRequest(method="GET", headers={}, query={"crc_token": token}))

    assert (answer.status, answer.content_type) == (200, "application/json")
    assert json.loads(answer.body) == {"response_token": f"sha256={expected}"}


@pytest.mark.parametrize("request_", [
    WebhookRequest(method="GET", headers={}, query={}),
    WebhookRequest(method="GET", headers={}, query={"crc_token": ""}),
    WebhookRequest(method="POST", headers={}, query={"crc_token": "abc"}, body=WEBHOOK_BODY),
])
def test_requests_without_a_crc_token_are_not_handshakes(request_: WebhookRequest) -> None:
    assert make_adapter().handshake(request_) is None


# -- polling ----------------------------------------------------------------------------------------------------


def test_adapter_settings() -> None:
    assert (XAdapter.pollable, XAdapter.api_base_url, XAdapter.max_reply_length) == (True, API, 280)


def test_first_poll_asks_for_authors_threads_and_media(api: respx.Router) -> None:
    route = api.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(200, json=recorded(MENTIONS_PAGE)))

    page = make_adapter().fetch({})

    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    params = request.url.params
    assert params["max_results"] == "100"
    assert params["expansions"] == ("author_id,referenced_tweets.id,referenced_tweets.id.author_id,"
                                    "in_reply_to_user_id,attachments.media_keys")
    assert {"conversation_id", "author_id", "created_at", "referenced_tweets", "edit_history_tweet_ids"} <= set(
        params["tweet.fields"].split(","))
    assert {"username", "name", "profile_image_url"} <= set(params["user.fields"].split(","))
    assert "since_id" not in params
    assert "pagination_token" not in params
    assert [e.external_id for e in page.events] == [
        "1364398068313903104", "1364377794327633925", "1364377404156772352", "1364373969852366849",
        "1364367885582352386"]
    # More pages wait: the cursor keeps the token and the run's newest id, but no since_id yet.
    assert page.cursor == {"pagination_token": "7140dibdnow9c7btw3w3ixl43r8knib48jsfyzko1h5py",
                           "newest_id": "1364398068313903104"}
    assert page.has_more is True


def test_cursor_advances_only_after_the_last_page_then_polls_dms(api: respx.Router) -> None:
    mentions = api.get(f"/2/users/{ME}/mentions").mock(side_effect=[
        httpx.Response(200, json=recorded(MENTIONS_PAGE)),
        httpx.Response(200, json=recorded(LAST_PAGE)),
        httpx.Response(200, json=exchange(TWEEPY_DMS, 3)["response_body"]),  # {"meta": {"result_count": 0}}
    ])
    dms = api.get("/2/dm_events").mock(return_value=httpx.Response(200, json=recorded(DM_PAGE)))
    adapter = make_adapter()
    start = {"since_id": "1364300000000000000"}

    first = adapter.fetch(start)
    second = adapter.fetch(first.cursor)
    third = adapter.fetch(second.cursor)

    assert mentions.calls[0].request.url.params["since_id"] == "1364300000000000000"
    assert first.cursor == {"since_id": "1364300000000000000", "newest_id": "1364398068313903104",
                            "pagination_token": "7140dibdnow9c7btw3w3ixl43r8knib48jsfyzko1h5py"}
    page_two = mentions.calls[1].request.url.params
    assert (page_two["since_id"], page_two["pagination_token"]) == (
        "1364300000000000000", "7140dibdnow9c7btw3w3ixl43r8knib48jsfyzko1h5py")
    # The older second page ended the run: since_id jumps to the newest id of the whole run, then DMs are due.
    assert len(second.events) == 4
    assert second.cursor == {"since_id": "1364398068313903104", "phase": "dms"}
    assert second.has_more is True
    dm_params = dms.calls.last.request.url.params
    assert dm_params["event_types"] == "MessageCreate"
    assert {"dm_conversation_id", "sender_id", "created_at"} <= set(dm_params["dm_event.fields"].split(","))
    assert dm_params["expansions"] == "sender_id,attachments.media_keys"
    assert [(e.kind, e.external_id, e.thread_key) for e in third.events] == [
        (EventKind.DIRECT_MESSAGE, "1585321444547837956", "dm:1585094756761149440")]
    assert third.cursor == {"since_id": "1364398068313903104", "dm_since_id": "1585321444547837956",
                            "dm_next_at": "2022-10-27T12:05:00+00:00"}
    assert third.has_more is False

    fourth = adapter.fetch(third.cursor)  # nothing new, and DMs are not due again for 5 minutes

    assert mentions.calls[2].request.url.params["since_id"] == "1364398068313903104"
    assert (fourth.events, fourth.cursor, fourth.has_more) == ([], third.cursor, False)
    assert dms.call_count == 1


def test_interrupted_run_resumes_from_its_page_token(api: respx.Router) -> None:
    mentions = api.get(f"/2/users/{ME}/mentions").mock(side_effect=[
        httpx.Response(200, json=recorded(MENTIONS_PAGE)),
        httpx.Response(503, json=UNAVAILABLE_BODY),
        httpx.Response(200, json=recorded(LAST_PAGE)),
    ])
    adapter = make_adapter(poll_dms=False)
    first = adapter.fetch({})

    with pytest.raises(TransientError, match="HTTP 503"):
        adapter.fetch(first.cursor)
    retried = adapter.fetch(first.cursor)  # the stored cursor is still the one after page 1

    assert mentions.calls[2].request.url.params["pagination_token"] == first.cursor["pagination_token"]
    assert (retried.cursor, retried.has_more) == ({"since_id": "1364398068313903104"}, False)


def test_dm_paging_stops_at_events_already_seen(api: respx.Router) -> None:
    page = recorded(DM_PAGE)
    page["meta"] = {"result_count": 1, "next_token": "18LAA5G1SL0NR5OG0G00ZZZZ"}  # derived: one more page exists
    api.get("/2/dm_events").mock(return_value=httpx.Response(200, json=page))
    adapter = make_adapter()

    fresh = adapter.fetch({"phase": "dms", "since_id": "1"})
    again = adapter.fetch({"phase": "dms", "since_id": "1", "dm_since_id": "1585321444547837956"})

    assert [e.external_id for e in fresh.events] == ["1585321444547837956"]
    assert fresh.cursor == {"since_id": "1", "phase": "dms", "dm_newest_id": "1585321444547837956",
                            "dm_pagination_token": "18LAA5G1SL0NR5OG0G00ZZZZ"}
    assert fresh.has_more is True
    # The event at dm_since_id was stored before: no event, and no further page although X offers one.
    assert again.events == []
    assert again.cursor == {"since_id": "1", "dm_since_id": "1585321444547837956",
                            "dm_next_at": "2022-10-27T12:05:00+00:00"}
    assert again.has_more is False


def test_dms_are_polled_again_once_due_and_not_at_all_when_off(api: respx.Router) -> None:
    api.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(200, json={"meta": {"result_count": 0}}))
    due = {"since_id": "5", "dm_since_id": "7", "dm_next_at": "2022-10-27T12:00:00+00:00"}

    assert make_adapter().fetch(due).cursor == {**due, "phase": "dms"}
    assert make_adapter(poll_dms=False).fetch(due).cursor == due


def test_dm_page_without_conversation_ids_is_refused(api: respx.Router) -> None:
    api.get("/2/dm_events").mock(return_value=httpx.Response(200, json=exchange(TWEEPY_DMS, 4)["response_body"]))

    with pytest.raises(PayloadError, match="dm_conversation_id"):
        make_adapter().fetch({"phase": "dms"})


def test_rate_limit_gives_the_reset_time_of_x(api: respx.Router) -> None:
    reset = int((NOW + dt.timedelta(minutes=15)).timestamp())
    api.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(
        429, json=RATE_LIMITED_BODY,
        headers={"x-rate-limit-limit": "300", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}))

    with pytest.raises(RateLimited) as caught:
        make_adapter().fetch({})

    assert caught.value.reset_at == NOW + dt.timedelta(minutes=15)


@pytest.mark.parametrize("headers", [{}, {"x-rate-limit-reset": "1000"}, {"x-rate-limit-reset": "soon"}])
def test_rate_limit_without_a_usable_reset_waits_a_minute(api: respx.Router, headers: dict) -> None:
    api.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(429, json=RATE_LIMITED_BODY, headers=headers))

    with pytest.raises(RateLimited) as caught:
        make_adapter().fetch({})

    assert NOW < caught.value.reset_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)


@pytest.mark.parametrize(("status", "error"), [(503, TransientError), (500, TransientError),
                                               (401, PermanentError), (403, PermanentError)])
def test_http_errors_while_polling(api: respx.Router, status: int, error: type) -> None:
    api.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(status, json=UNAVAILABLE_BODY))

    with pytest.raises(error, match=f"HTTP {status}"):
        make_adapter().fetch({})


def test_timeout_while_polling_is_transient(api: respx.Router) -> None:
    api.get(f"/2/users/{ME}/mentions").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(TransientError) as caught:
        make_adapter().fetch({})

    assert not isinstance(caught.value, OutcomeUnknown)


def test_api_base_url_can_point_at_a_fake_server() -> None:
    with respx.mock(base_url="https://x.test") as router:
        route = router.get(f"/2/users/{ME}/mentions").mock(return_value=httpx.Response(200, json=recorded(LAST_PAGE)))

        make_adapter(api_base_url="https://x.test", poll_dms=False).fetch({})

    assert route.called


@pytest.mark.parametrize(("adapter", "message"), [
    (XAdapter(external_id=ME), "no OAuth 2 user access token"),
    (XAdapter(credentials={"access_token": TOKEN}), "no numeric X user id"),
])
def test_polling_without_token_or_user_id_is_permanent(api: respx.Router, adapter: XAdapter, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        adapter.fetch({})
    assert not api.calls


# -- sending ----------------------------------------------------------------------------------------------------

PUBLIC = OutboundMessage(idempotency_key="k1", text="Test Tweet", thread_key="1455953449422516224",
                         reply_to_id="1455953449422516226")


def test_public_reply_posts_a_tweet_in_reply(api: respx.Router) -> None:
    created = exchange(TWEEPY_CREATE, 0)  # recorded POST /2/tweets: 201 {"data": {"id", "text"}}
    route = api.post("/2/tweets").mock(return_value=httpx.Response(created["status"], json=created["response_body"]))

    result = make_adapter().send(PUBLIC)

    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {"text": "Test Tweet",
                                           "reply": {"in_reply_to_tweet_id": "1455953449422516226"}}
    assert result.external_id == "1456012973835788293"
    assert result.raw == created["response_body"]
    assert result.thread_key == "1455953449422516224"


def test_private_reply_sends_a_dm_to_the_recipient(api: respx.Router) -> None:
    sent = exchange(TWEEPY_DMS, 0)  # recorded POST /2/dm_conversations/with/:id/messages
    route = api.post("/2/dm_conversations/with/750362064426721281/messages").mock(
        return_value=httpx.Response(sent["status"], json=sent["response_body"]))
    message = OutboundMessage(idempotency_key="k2", text="Testing 1", reply_to_id="1585800600000000000",
                              thread_key="dm:750362064426721281-1072250532645998596", private=True,
                              recipient=Author(platform="x", external_id="750362064426721281"))

    result = XAdapter(external_id="1072250532645998596", credentials={"access_token": TOKEN}).send(message)

    assert json.loads(route.calls.last.request.content) == sent["request_body"] == {"text": "Testing 1"}
    assert (result.external_id, result.thread_key) == (
        "1585800613253812228", "dm:750362064426721281-1072250532645998596")
    assert result.raw == sent["response_body"]


def test_private_reply_without_recipient_goes_to_the_thread_conversation(api: respx.Router) -> None:
    sent = exchange(TWEEPY_DMS, 1)  # recorded POST /2/dm_conversations/:dm_conversation_id/messages
    route = api.post("/2/dm_conversations/750362064426721281-1072250532645998596/messages").mock(
        return_value=httpx.Response(sent["status"], json=sent["response_body"]))
    message = OutboundMessage(idempotency_key="k3", text="Testing 2", private=True,
                              thread_key="dm:750362064426721281-1072250532645998596")

    result = make_adapter().send(message)

    assert json.loads(route.calls.last.request.content) == sent["request_body"]
    assert result.external_id == "1585800613752881156"


def test_timeout_on_send_is_outcome_unknown(api: respx.Router) -> None:
    api.post("/2/tweets").mock(side_effect=httpx.ReadTimeout("read timed out"))

    with pytest.raises(OutcomeUnknown):
        make_adapter().send(PUBLIC)


def test_unreadable_success_answer_is_outcome_unknown(api: respx.Router) -> None:
    api.post("/2/tweets").mock(return_value=httpx.Response(201, text="<html>ok</html>"))

    with pytest.raises(OutcomeUnknown, match="not JSON"):
        make_adapter().send(PUBLIC)


@pytest.mark.parametrize(("response", "error"), [
    (httpx.Response(503, json=UNAVAILABLE_BODY), TransientError),
    (httpx.Response(429, json=RATE_LIMITED_BODY, headers={"x-rate-limit-reset": "4102444800"}), RateLimited),
    (httpx.Response(403, json={"title": "Forbidden", "detail": "You are not allowed to create a Tweet with "
                                                              "duplicate content.", "type": "about:blank"}),
     PermanentError),
])
def test_refused_sends(api: respx.Router, response: httpx.Response, error: type) -> None:
    api.post("/2/tweets").mock(return_value=response)

    with pytest.raises(error) as caught:
        make_adapter().send(PUBLIC)

    assert not isinstance(caught.value, OutcomeUnknown)
    if error is RateLimited:
        assert caught.value.reset_at == dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("message", "reason"), [
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="t"), "reply_to_id"),
    (OutboundMessage(idempotency_key="k", text="  ", thread_key="t", reply_to_id="1"), "needs text"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="t", reply_to_id="1",
                     attachments=({"type": "photo"},)), "attachments"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="1", private=True), "recipient"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="dm:../x", private=True), "recipient"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="t", private=True,
                     recipient=Author(platform="x", external_id="../users")), "not a numeric"),
])
def test_unsendable_messages_are_refused_before_any_request(api: respx.Router, message: OutboundMessage,
                                                            reason: str) -> None:
    with pytest.raises(PermanentError, match=reason):
        make_adapter().send(message)
    assert not api.calls


# -- finding a reply after an unknown outcome -------------------------------------------------------------------

# Our own tweets, as `GET /2/users/:id/tweets` gives them: the recorded reply thread holds two replies by
# @snowman (17200003) and one by @happycamper (63046977).
SNOWMAN = "17200003"


def snowman() -> XAdapter:
    return XAdapter(external_id=SNOWMAN, credentials={"access_token": TOKEN})


def test_find_sent_finds_our_reply_with_the_same_text(api: respx.Router) -> None:
    route = api.get(f"/2/users/{SNOWMAN}/tweets").mock(return_value=httpx.Response(200, json=recorded(LAST_PAGE)))
    message = OutboundMessage(
        idempotency_key="k", thread_key="1273733248749690880", reply_to_id="1273733248749690880",
        text="Using Labs Recent search for polling use cases has been 🔥👍. A simple alternative to streaming "
             "in many cases...")

    result = snowman().find_sent(message)

    assert (result.external_id, result.thread_key) == ("1275882613572583424", "1273733248749690880")
    assert result.raw["id"] == "1275882613572583424"
    params = route.calls.last.request.url.params
    assert params["since_id"] == "1273733248749690880"
    assert {"referenced_tweets", "conversation_id", "in_reply_to_user_id"} <= set(params["tweet.fields"].split(","))


def test_find_sent_sees_through_shortened_links_and_added_mentions(api: respx.Router) -> None:
    api.get("/2/users/63046977/tweets").mock(return_value=httpx.Response(200, json=recorded(LAST_PAGE)))
    message = OutboundMessage(
        idempotency_key="k", thread_key="1273733248749690880", reply_to_id="1275653067283759104",
        text="Ooo, thanks error message, public_metircs are not the metrics you’re looking for "
             "https://twitter.com/happycamper/status/1276035977375477760/photo/1")

    result = XAdapter(external_id="63046977", credentials={"access_token": TOKEN}).find_sent(message)

    assert result.external_id == "1276035977375477760"


@pytest.mark.parametrize(("reply_to", "text"), [
    ("1273733248749690880", "Another text altogether"),
    ("1274086728471461889", "Using Labs Recent search for polling use cases has been 🔥👍. A simple alternative to "
                            "streaming in many cases..."),  # right text, but it answers another tweet
])
def test_find_sent_returns_none_when_x_shows_no_such_reply(api: respx.Router, reply_to: str, text: str) -> None:
    api.get(f"/2/users/{SNOWMAN}/tweets").mock(return_value=httpx.Response(200, json=recorded(LAST_PAGE)))

    assert snowman().find_sent(OutboundMessage(idempotency_key="k", text=text, thread_key="t",
                                               reply_to_id=reply_to)) is None


def test_find_sent_reads_further_pages(api: respx.Router) -> None:
    route = api.get(f"/2/users/{SNOWMAN}/tweets").mock(side_effect=[
        httpx.Response(200, json=recorded(MENTIONS_PAGE)),  # a page with a next_token and no match
        httpx.Response(200, json=recorded(LAST_PAGE)),
    ])
    expected = next(t for t in recorded(LAST_PAGE)["data"] if t["id"] == "1275653067283759104")
    message = OutboundMessage(idempotency_key="k", thread_key="", reply_to_id="1274086728471461889",
                              text=expected["text"])

    result = snowman().find_sent(message)

    assert result.external_id == "1275653067283759104"
    assert route.calls[1].request.url.params["pagination_token"] == recorded(MENTIONS_PAGE)["meta"]["next_token"]


def test_find_sent_gives_up_deciding_after_a_few_pages(api: respx.Router) -> None:
    api.get(f"/2/users/{SNOWMAN}/tweets").mock(return_value=httpx.Response(200, json=recorded(MENTIONS_PAGE)))

    with pytest.raises(OutcomeUnknown, match="did not settle"):
        snowman().find_sent(OutboundMessage(idempotency_key="k", text="hi", thread_key="", reply_to_id="1"))


def test_find_sent_cannot_tell_for_a_dm(api: respx.Router) -> None:
    message = OutboundMessage(idempotency_key="k", text="hi", thread_key="dm:1-2", private=True,
                              recipient=Author(platform="x", external_id="2"))

    with pytest.raises(OutcomeUnknown, match="direct message"):
        snowman().find_sent(message)
    assert not api.calls


@pytest.mark.parametrize(("ours", "theirs"), [
    ("Fish &amp; chips <3", "@customer Fish &amp; chips &lt;3"),
    ("see example.com/help for more", "@a @b see https://t.co/AbCdEf for more"),
    ("Café  au lait\n", "Cafe\u0301 au lait"),
])
def test_comparable_text_undoes_what_x_changes(ours: str, theirs: str) -> None:
    assert comparable_text(ours) == comparable_text(theirs)


def test_comparable_text_keeps_real_differences() -> None:
    assert comparable_text("Your ticket is 123") != comparable_text("Your ticket is 124")

