"""Instagram webhook authenticity, handshake, polling and replies (HTTP mocked at the transport with respx).

Comment bodies are recorded Graph responses (python-facebook/instagram_graph). The rest follow Meta's documented
shapes: a Direct send answers `{"recipient_id", "message_id"}` (Instagram Messaging, "Send a Message"), a comment
reply `{"id"}` (IG Comment Replies reference), errors `{"error": {...}}` (Graph API, "Handling Errors").
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
from channels.adapters.instagram import InstagramAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
GRAPH = "https://graph.facebook.com/v21.0"
UTC = dt.UTC
ACCOUNT = "17841406338772941"
CUSTOMER = "5614879045272581"
TOKEN = "ig-page-token"
SECRETS = {"app_secret": "ig-app-secret", "verify_token": "ig-verify"}


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def adapter(**kwargs: object) -> InstagramAdapter:
    return InstagramAdapter(external_id=ACCOUNT, credentials={"page_access_token": TOKEN}, webhook_secret=SECRETS,
                            **kwargs)


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> dt.datetime:
    frozen = dt.datetime(2020, 6, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(facebook, "utc_now", lambda: frozen)
    return frozen


@pytest.fixture
def graph() -> respx.MockRouter:
    with respx.mock(base_url=GRAPH, assert_all_called=False) as router:
        yield router


# -- webhooks ------------------------------------------------------------------------------------------------------

BODY = recorded("restfb/instagram/wh-comments-2021.json")


def signed(body: bytes, secret: str = "ig-app-secret") -> WebhookRequest:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(method="POST", headers={"x-hub-signature-256": signature}, query={}, body=body)


def test_signature_ok_wrong_missing_and_unconfigured() -> None:
    adapter().verify_webhook(signed(BODY))
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify_webhook(signed(BODY, secret="facebook-app-secret"))
    with pytest.raises(SignatureError, match="missing"):
        adapter().verify_webhook(WebhookRequest(method="POST", headers={}, query={}, body=BODY))
    with pytest.raises(SignatureError, match="no webhook secret 'app_secret'"):
        InstagramAdapter(external_id=ACCOUNT).verify_webhook(signed(BODY))


def test_handshake_ok_wrong_and_not_a_handshake() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "ig-verify", "hub.challenge": "15f3c"}
    assert adapter().handshake(WebhookRequest("GET", {}, query)) == HandshakeResponse(body="15f3c")
    with pytest.raises(SignatureError, match="does not match"):
        adapter().handshake(WebhookRequest("GET", {}, {**query, "hub.verify_token": "ig-verify-2"}))
    assert adapter().handshake(WebhookRequest("POST", {}, {}, BODY)) is None


# -- polling -------------------------------------------------------------------------------------------------------

def media_page() -> dict:
    """The media poll's page: recorded comments under media (the Graph shape for `media?fields=comments{...}`)."""
    page = json.loads(recorded("python-facebook/instagram_graph/media_comments_page1.json"))
    replied = json.loads(recorded("python-facebook/instagram_graph/comment_with_replies.json"))
    del replied["media"]
    return {"data": [
        {"id": "17846368219941692", "timestamp": "2020-05-30T08:00:00+0000", "media_type": "IMAGE",
         "comments": {"data": [*page["data"], replied], "paging": page["paging"]}},
    ]}


def test_media_poll_returns_new_comments_and_ends_the_run(graph: respx.MockRouter, now: dt.datetime) -> None:
    route = graph.get(f"/{ACCOUNT}/media").respond(200, json=media_page())
    since = int(dt.datetime(2020, 6, 1, 10, 30, tzinfo=UTC).timestamp())
    started = int(now.timestamp())

    result = adapter().fetch({"since": since, "started": started})

    # Only the comment after `since`; the February comment and its reply are older.
    assert [(e.external_id, e.kind, e.thread_key) for e in result.events] == [
        ("17858154961981086", EventKind.COMMENT, "17846368219941692")]
    assert result.has_more is False
    assert result.cursor == {"since": started - 300, "seen": {}}
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert "since" not in request.url.params
    assert request.url.params["fields"].startswith("id,timestamp,media_type,comments.limit(50){id,text,timestamp,")


def test_media_poll_pages_while_media_are_recent_enough(graph: respx.MockRouter, now: dt.datetime) -> None:
    page = media_page()
    page["paging"] = {"cursors": {"before": "QVFIUk1", "after": "QVFIUkxq"},
                      "next": f"{GRAPH}/{ACCOUNT}/media?access_token=ig-page-token&limit=25&after=QVFIUkxq"}
    graph.get(f"/{ACCOUNT}/media").respond(200, json=page)

    result = adapter().fetch({"since": int(dt.datetime(2020, 6, 1, tzinfo=UTC).timestamp())})

    assert result.has_more is True
    assert (result.cursor["stage"], result.cursor["page"]) == ("media", {"after": "QVFIUkxq"})
    assert [e.external_id for e in result.events] == ["17858154961981086", "17874875428706419"]


def test_media_poll_rate_limited(graph: respx.MockRouter, now: dt.datetime) -> None:
    usage = {ACCOUNT: [{"type": "instagram", "call_count": 100, "total_cputime": 3, "total_time": 3,
                        "estimated_time_to_regain_access": 60}]}
    graph.get(f"/{ACCOUNT}/media").respond(400, json={"error": {
        "message": "Application request limit reached", "type": "OAuthException", "code": 80002,
        "fbtrace_id": "A1"}}, headers={"x-business-use-case-usage": json.dumps(usage)})

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({})

    assert caught.value.reset_at == now + dt.timedelta(hours=1)


def test_media_poll_server_error_is_transient(graph: respx.MockRouter) -> None:
    graph.get(f"/{ACCOUNT}/media").respond(502, text="Bad Gateway")

    with pytest.raises(TransientError, match="HTTP 502"):
        adapter().fetch({})


# -- sending -------------------------------------------------------------------------------------------------------

def test_direct_message(graph: respx.MockRouter) -> None:
    route = graph.post("/me/messages").respond(200, json={"recipient_id": CUSTOMER, "message_id": "aWdfZAG1"})
    message = OutboundMessage(idempotency_key="r1", text="Yes, in stock!", thread_key=f"igsid:{CUSTOMER}",
                              private=True)

    result = adapter().send(message)

    assert (result.external_id, result.thread_key) == ("aWdfZAG1", f"igsid:{CUSTOMER}")
    assert json.loads(route.calls.last.request.content) == {"recipient": {"id": CUSTOMER},
                                                            "message": {"text": "Yes, in stock!"}}


def test_private_reply_to_a_comment(graph: respx.MockRouter) -> None:
    route = graph.post("/me/messages").respond(200, json={"recipient_id": CUSTOMER, "message_id": "aWdfZAG2"})
    message = OutboundMessage(idempotency_key="r2", text="Details in your inbox", thread_key="17846368219941692",
                              reply_to_id="17858154961981086", private=True)

    result = adapter().send(message)

    assert (result.external_id, result.thread_key) == ("aWdfZAG2", f"igsid:{CUSTOMER}")
    assert json.loads(route.calls.last.request.content)["recipient"] == {"comment_id": "17858154961981086"}


def test_public_reply_to_a_comment(graph: respx.MockRouter) -> None:
    route = graph.post("/17858154961981086/replies").respond(200, json={"id": "17873440459141021"})
    message = OutboundMessage(idempotency_key="r3", text="Thank you!", thread_key="17846368219941692",
                              reply_to_id="17858154961981086")

    result = adapter().send(message)

    assert (result.external_id, result.thread_key) == ("17873440459141021", "17846368219941692")
    assert json.loads(route.calls.last.request.content) == {"message": "Thank you!"}
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


def test_public_comment_on_the_media(graph: respx.MockRouter) -> None:
    route = graph.post("/17846368219941692/comments").respond(200, json={"id": "17873440459141022"})
    message = OutboundMessage(idempotency_key="r4", text="New colours next week", thread_key="17846368219941692",
                              reply_to_id="17846368219941692")

    assert adapter().send(message).external_id == "17873440459141022"
    assert route.called


def test_send_timeout_is_outcome_unknown(graph: respx.MockRouter) -> None:
    graph.post("/17858154961981086/replies").mock(side_effect=httpx.WriteTimeout("write timed out"))
    message = OutboundMessage(idempotency_key="r5", text="Thanks", thread_key="17846368219941692",
                              reply_to_id="17858154961981086")

    with pytest.raises(OutcomeUnknown):
        adapter().send(message)


def test_reply_to_a_hidden_comment_is_permanent(graph: respx.MockRouter) -> None:
    graph.post("/17858154961981086/replies").respond(400, json={"error": {
        "message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2534023,
        "fbtrace_id": "A2"}})
    message = OutboundMessage(idempotency_key="r6", text="Thanks", thread_key="17846368219941692",
                              reply_to_id="17858154961981086")

    with pytest.raises(PermanentError, match="HTTP 400"):
        adapter().send(message)


@pytest.mark.parametrize(("message", "error"), [
    # 501 characters, but 1,002 bytes of UTF-8: Instagram counts bytes.
    (OutboundMessage(idempotency_key="k", text="é" * 501, thread_key=f"igsid:{CUSTOMER}", private=True),
     "1000 bytes"),
    (OutboundMessage(idempotency_key="k", text="x" * 2201, thread_key="1784", reply_to_id="1785"), "2200 characters"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key=f"igsid:{CUSTOMER}"), "needs the comment or media"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="1784", reply_to_id="1784", private=True),
     "private reply needs"),
    (OutboundMessage(idempotency_key="k", text="hi", thread_key="", reply_to_id=""), "needs the comment or media"),
])
def test_replies_refused_before_any_request(graph: respx.MockRouter, message: OutboundMessage, error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        adapter().send(message)

    assert not graph.calls


def test_limits() -> None:
    assert InstagramAdapter.platform == "instagram"
    assert InstagramAdapter.max_reply_length == 1000
    assert InstagramAdapter.private_reply_window == dt.timedelta(hours=24)
    assert InstagramAdapter.pollable is True
