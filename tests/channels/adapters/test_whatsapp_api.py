"""WhatsApp Cloud API: webhook signature, subscription handshake and sending, mocked at the transport with respx.

No Graph send answer is among the recorded payloads, so the answers below follow Meta's documented shapes: the
Cloud API messages reference (`{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}`)
and the Graph API error-handling guide (`{"error": {"message", "type", "code", "error_data", "fbtrace_id"}}`,
codes from the WhatsApp error-code list: 130429 throughput, 131056 pair rate, 80007 account rate limit,
131047 outside the 24-hour window, 190 expired token).
"""

import datetime as dt
import hashlib
import hmac
import json
import pathlib

import httpx
import pytest
import respx

from channels.adapters.base import (
    Author,
    HandshakeResponse,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RateLimited,
    SignatureError,
    TransientError,
    WebhookRequest,
)
from channels.adapters.whatsapp import WhatsAppAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded" / "restfb" / "whatsapp"
UTC = dt.UTC
APP_SECRET = "6f1c0a3e9b2d4c8e"
NUMBER = "106540352242922"
SEND_URL = f"https://graph.facebook.com/v21.0/{NUMBER}/messages"
SENT_ID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"


def adapter(**kwargs: object) -> WhatsAppAdapter:
    defaults = {"external_id": NUMBER, "credentials": {"access_token": "EAAG-test-token"},
                "webhook_secret": {"app_secret": APP_SECRET, "verify_token": "verify-me"}}
    return WhatsAppAdapter(**(defaults | kwargs))


def post(body: bytes, signature: str | None) -> WebhookRequest:
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["x-hub-signature-256"] = signature
    return WebhookRequest(method="POST", headers=headers, query={}, body=body)


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BODY = (RECORDED / "webhook-incoming-message-text.json").read_bytes()

# -- webhook signature ----------------------------------------------------------------------------------------


def test_signature_over_the_raw_body_is_accepted() -> None:
    assert adapter().verify_webhook(post(BODY, sign(BODY))) is None


@pytest.mark.parametrize(("signature", "message"), [
    (None, "missing"),
    ("", "missing"),
    (sign(BODY, "another-secret"), "does not match"),
    (sign(BODY)[len("sha256="):], "does not start with 'sha256='"),
    ("sha1=" + hmac.new(APP_SECRET.encode(), BODY, hashlib.sha1).hexdigest(), "does not start with 'sha256='"),
    # The same JSON re-serialised is other bytes: Meta signs what it sent, so this must fail.
    (sign(json.dumps(json.loads(BODY)).encode()), "does not match"),
    (sign(BODY.replace(b'"Test"', b'"Tost"')), "does not match"),
])
def test_wrong_or_missing_signature_is_refused(signature: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        adapter().verify_webhook(post(BODY, signature))


@pytest.mark.parametrize("secrets", [{}, {"app_secret": ""}, {"verify_token": "verify-me"}])
def test_account_without_app_secret_refuses_every_webhook(secrets: dict) -> None:
    with pytest.raises(SignatureError, match="no webhook secret 'app_secret'"):
        adapter(webhook_secret=secrets).verify_webhook(post(BODY, sign(BODY)))


# -- subscription handshake ------------------------------------------------------------------------------------


def get(**query: str) -> WebhookRequest:
    return WebhookRequest(method="GET", headers={}, query=query)


SUBSCRIBE = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "1158201444"}


def test_handshake_echoes_the_challenge() -> None:
    assert adapter().handshake(get(**SUBSCRIBE)) == HandshakeResponse(body="1158201444", status=200,
                                                                      content_type="text/plain")


@pytest.mark.parametrize(("query", "message"), [
    (SUBSCRIBE | {"hub.verify_token": "guess"}, "hub.verify_token does not match"),
    ({k: v for k, v in SUBSCRIBE.items() if k != "hub.verify_token"}, "hub.verify_token header is missing"),
    (SUBSCRIBE | {"hub.mode": "unsubscribe"}, "hub.mode is not 'subscribe'"),
])
def test_handshake_with_a_wrong_token_or_mode_is_refused(query: dict, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        adapter().handshake(get(**query))


def test_handshake_without_verify_token_configured_is_refused() -> None:
    with pytest.raises(SignatureError, match="no webhook secret 'verify_token'"):
        adapter(webhook_secret={"app_secret": APP_SECRET}).handshake(get(**SUBSCRIBE))


@pytest.mark.parametrize("challenge", [None, "", "<script>alert(1)</script>", "1" * 129])
def test_handshake_echoes_only_a_plain_challenge(challenge: str | None) -> None:
    query = {k: v for k, v in SUBSCRIBE.items() if k != "hub.challenge"}
    if challenge is not None:
        query["hub.challenge"] = challenge

    with pytest.raises(PayloadError, match="hub.challenge"):
        adapter().handshake(get(**query))


def test_requests_that_are_not_a_handshake_get_none() -> None:
    assert adapter().handshake(post(BODY, sign(BODY))) is None
    assert adapter().handshake(get()) is None


# -- sending ---------------------------------------------------------------------------------------------------


def reply(text: str = "Yes, in blue and red.", **kwargs: object) -> OutboundMessage:
    fields = {"idempotency_key": "reply-1", "text": text, "thread_key": "wa:972987654321",
              "reply_to_id": "wamid.xyzxyz", "private": True}
    return OutboundMessage(**(fields | kwargs))


def sent(to: str = "972987654321") -> httpx.Response:
    return httpx.Response(200, json={"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                                     "messages": [{"id": SENT_ID}]})


def graph_error(status: int, code: int, message: str, **extra: object) -> httpx.Response:
    error = {"message": message, "type": "OAuthException", "code": code,
             "error_data": {"messaging_product": "whatsapp", "details": message}, "fbtrace_id": "AbCdEf123"}
    return httpx.Response(status, json={"error": error | extra})


def test_reply_is_posted_as_a_text_message_quoting_the_customer(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SEND_URL).mock(return_value=sent())

    result = adapter().send(reply())

    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer EAAG-test-token"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "972987654321", "type": "text",
        "text": {"body": "Yes, in blue and red."}, "context": {"message_id": "wamid.xyzxyz"}}
    assert (result.external_id, result.thread_key) == (SENT_ID, "wa:972987654321")
    assert result.raw["contacts"] == [{"input": "972987654321", "wa_id": "972987654321"}]


def test_reply_without_reply_to_has_no_context(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(SEND_URL).mock(return_value=sent())

    adapter().send(reply(reply_to_id=""))

    assert "context" not in json.loads(route.calls.last.request.content)


@pytest.mark.parametrize(("message", "addressed"), [
    # A customer known only by business-scoped user id is addressed with `recipient` (Meta's BSUID sending).
    (reply(thread_key="wa:US.13491208655302741918"),
     {"recipient_type": "individual", "recipient": "US.13491208655302741918"}),
    (reply(thread_key="group:120363418770915618@g.us"),
     {"recipient_type": "group", "to": "120363418770915618@g.us"}),
    (reply(thread_key="", recipient=Author(platform="whatsapp", external_id="491234567890", scope=NUMBER)),
     {"recipient_type": "individual", "to": "491234567890"}),
])
def test_recipient_follows_the_thread_key(respx_mock: respx.MockRouter, message: OutboundMessage,
                                          addressed: dict) -> None:
    route = respx_mock.post(SEND_URL).mock(return_value=sent())

    adapter().send(message)

    body = json.loads(route.calls.last.request.content)
    assert {k: body[k] for k in ("recipient_type", "to", "recipient") if k in body} == addressed


def test_api_base_url_can_point_elsewhere(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"http://graph.test/v21.0/{NUMBER}/messages").mock(return_value=sent())

    adapter(config={"api_base_url": "http://graph.test/v21.0"}).send(reply())

    assert route.called


def window(seconds: float) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(UTC)
    return now + dt.timedelta(seconds=seconds - 5), now + dt.timedelta(seconds=seconds + 5)


@pytest.mark.parametrize(("code", "message"), [
    (130429, "(#130429) Rate limit hit"),
    (131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    (80007, "(#80007) Rate limit issues"),
    (4, "(#4) Application request limit reached"),
])
def test_graph_rate_limit_codes_are_rate_limited_for_a_minute(respx_mock: respx.MockRouter, code: int,
                                                               message: str) -> None:
    respx_mock.post(SEND_URL).mock(return_value=graph_error(400, code, message))
    earliest, latest = window(60)

    with pytest.raises(RateLimited, match=f"Graph error {code}") as caught:
        adapter().send(reply())

    assert earliest <= caught.value.reset_at <= latest


def test_rate_limit_waits_for_the_business_use_case_estimate(respx_mock: respx.MockRouter) -> None:
    usage = {NUMBER: [{"type": "whatsapp_business_management", "call_count": 100, "total_cputime": 12,
                       "total_time": 20, "estimated_time_to_regain_access": 7}]}
    response = graph_error(400, 80007, "(#80007) Rate limit issues")
    response.headers["X-Business-Use-Case-Usage"] = json.dumps(usage)
    respx_mock.post(SEND_URL).mock(return_value=response)
    earliest, latest = window(7 * 60)

    with pytest.raises(RateLimited) as caught:
        adapter().send(reply())

    assert earliest <= caught.value.reset_at <= latest


def test_http_429_honours_retry_after(respx_mock: respx.MockRouter) -> None:
    response = graph_error(429, 130429, "(#130429) Rate limit hit")
    response.headers["Retry-After"] = "30"
    respx_mock.post(SEND_URL).mock(return_value=response)
    earliest, latest = window(30)

    with pytest.raises(RateLimited) as caught:
        adapter().send(reply())

    assert earliest <= caught.value.reset_at <= latest


@pytest.mark.parametrize("response", [
    httpx.Response(500, json={"error": {"message": "An unknown error occurred", "code": 1}}),
    httpx.Response(503, text="Service Unavailable"),
    graph_error(400, 2, "Service temporarily unavailable"),
    graph_error(400, 131000, "Something went wrong", is_transient=True),
])
def test_server_errors_and_temporary_graph_errors_are_transient(respx_mock: respx.MockRouter,
                                                                 response: httpx.Response) -> None:
    respx_mock.post(SEND_URL).mock(return_value=response)

    with pytest.raises(TransientError) as caught:
        adapter().send(reply())

    assert not isinstance(caught.value, RateLimited | OutcomeUnknown)


@pytest.mark.parametrize(("response", "message"), [
    (graph_error(400, 131047, "(#131047) Re-engagement message"), "131047"),
    (graph_error(401, 190, "Error validating access token: Session has expired"), "HTTP 401"),
    (httpx.Response(404, text="Not Found"), "HTTP 404"),
])
def test_refusals_are_permanent(respx_mock: respx.MockRouter, response: httpx.Response, message: str) -> None:
    respx_mock.post(SEND_URL).mock(return_value=response)

    with pytest.raises(PermanentError, match=message):
        adapter().send(reply())


def test_timeout_after_sending_is_outcome_unknown(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(SEND_URL).mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(OutcomeUnknown):
        adapter().send(reply())


def test_connection_refused_is_transient_not_unknown(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(SEND_URL).mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(TransientError) as caught:
        adapter().send(reply())

    assert not isinstance(caught.value, OutcomeUnknown)


@pytest.mark.parametrize("answer", [{"messaging_product": "whatsapp", "messages": []}, {"messages": [{}]}, []])
def test_accepted_answer_without_message_id_is_outcome_unknown(respx_mock: respx.MockRouter, answer: object) -> None:
    respx_mock.post(SEND_URL).mock(return_value=httpx.Response(200, json=answer))

    with pytest.raises(OutcomeUnknown, match="names no message id|not JSON"):
        adapter().send(reply())


@pytest.mark.parametrize(("built", "message", "error"), [
    (adapter(credentials={}), reply(), "no access_token"),
    (adapter(external_id=""), reply(), "business phone number id"),
    (adapter(external_id="../me"), reply(), "business phone number id"),
    (adapter(), reply(text="  "), "empty"),
    (adapter(), reply(text="x" * 4097), "longer than 4096"),
    (adapter(), reply(thread_key="psid:123"), "cannot send to thread 'psid:123'"),
    (adapter(), reply(thread_key=""), "cannot send to thread ''"),
])
def test_unsendable_replies_fail_before_any_request(respx_mock: respx.MockRouter, built: WhatsAppAdapter,
                                                    message: OutboundMessage, error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        built.send(message)

    assert respx_mock.calls.call_count == 0


def test_longest_allowed_reply_is_sent(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(SEND_URL).mock(return_value=sent())

    assert adapter().send(reply(text="x" * 4096)).external_id == SENT_ID


def test_platform_facts() -> None:
    assert (WhatsAppAdapter.platform, WhatsAppAdapter.pollable) == ("whatsapp", False)
    assert WhatsAppAdapter.private_reply_window == dt.timedelta(hours=24)
    assert WhatsAppAdapter.max_reply_length == 4096
    assert WhatsAppAdapter.api_base_url == "https://graph.facebook.com/v21.0"
    with pytest.raises(NotImplementedError):
        adapter().fetch({})
    with pytest.raises(OutcomeUnknown):
        adapter().find_sent(reply())
