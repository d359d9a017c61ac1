"""Telegram Bot API: webhook secret, getUpdates polling and sendMessage, mocked at the transport with respx.

The answers are Telegram's envelope `{"ok": true, "result": ...}` around recorded objects: getUpdates results
are recorded Updates (channels/recorded/nutgram), and the sendMessage result is the recorded message our bot
sent in `callback_query.json` (a Message from the bot, which is what sendMessage returns). Error answers follow
the Bot API documentation: `{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`.
"""

import datetime as dt
import json
import logging
import pathlib

import httpx
import pytest
import respx

from channels.adapters.base import (
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
from channels.adapters.telegram import ALLOWED_UPDATES, TelegramAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded" / "nutgram" / "telegram_bot_api"
UTC = dt.UTC
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
API = f"https://api.telegram.org/bot{TOKEN}"


def update(name: str) -> dict:
    return json.loads((RECORDED / name).read_bytes())


def adapter(**kwargs: object) -> TelegramAdapter:
    defaults = {"external_id": "111111111", "credentials": {"bot_token": TOKEN},
                "webhook_secret": {"secret_token": "s3cr3t-T0ken_value"}}
    return TelegramAdapter(**(defaults | kwargs))


def ok(result: object) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": result})


def failed(code: int, description: str, **parameters: object) -> httpx.Response:
    body: dict = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(code, json=body)


def window(seconds: float) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(UTC)
    return now + dt.timedelta(seconds=seconds - 5), now + dt.timedelta(seconds=seconds + 5)


# -- webhook secret --------------------------------------------------------------------------------------------


def webhook(headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="POST", headers=headers, query={}, body=(RECORDED / "text.json").read_bytes())


def test_matching_secret_token_is_accepted() -> None:
    assert adapter().verify_webhook(webhook({"x-telegram-bot-api-secret-token": "s3cr3t-T0ken_value"})) is None


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "header is missing"),
    ({"x-telegram-bot-api-secret-token": ""}, "header is missing"),
    ({"x-telegram-bot-api-secret-token": "s3cr3t-T0ken_valuE"}, "does not match"),
    ({"x-telegram-bot-api-secret-token": "s3cr3t-T0ken_value "}, "does not match"),
])
def test_missing_or_wrong_secret_token_is_refused(headers: dict, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        adapter().verify_webhook(webhook(headers))


@pytest.mark.parametrize("secrets", [{}, {"secret_token": ""}])
def test_account_without_secret_token_refuses_every_webhook(secrets: dict) -> None:
    with pytest.raises(SignatureError, match="no webhook secret 'secret_token'"):
        adapter(webhook_secret=secrets).verify_webhook(webhook({"x-telegram-bot-api-secret-token": ""}))


# -- polling ---------------------------------------------------------------------------------------------------

PAGE = [update("edited_message.json"), update("photo.json"), update("command.json")]  # update_ids increasing


def test_fetch_asks_for_the_updates_after_the_offset_and_advances_it(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(f"{API}/getUpdates").mock(return_value=ok(PAGE))

    result = adapter().fetch({"offset": 62257549})

    params = route.calls.last.request.url.params
    assert dict(params) == {"timeout": "0", "limit": "100", "offset": "62257549",
                            "allowed_updates": json.dumps(ALLOWED_UPDATES)}
    assert set(json.loads(params["allowed_updates"])) == {
        "message", "edited_message", "channel_post", "edited_channel_post", "business_message",
        "edited_business_message", "deleted_business_messages"}
    assert [(e.kind, e.external_id) for e in result.events] == [
        (EventKind.EDIT, "999999999:23762"), (EventKind.DIRECT_MESSAGE, "11111111:456901"),
        (EventKind.DIRECT_MESSAGE, "10081232:428640")]
    assert (result.cursor, result.has_more) == ({"offset": 144064962}, False)


def test_first_poll_sends_no_offset(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(f"{API}/getUpdates").mock(return_value=ok([update("text.json")]))

    result = adapter().fetch({})

    assert "offset" not in route.calls.last.request.url.params
    assert result.cursor == {"offset": 123456790}


def test_empty_page_keeps_the_cursor(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(return_value=ok([]))

    result = adapter().fetch({"offset": 144064962})

    assert (result.events, result.cursor, result.has_more) == ([], {"offset": 144064962}, False)


def test_full_page_means_more_is_waiting(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.get(f"{API}/getUpdates").mock(return_value=ok(PAGE))

    result = adapter(config={"page_size": 3}).fetch({"offset": 1})

    assert route.calls.last.request.url.params["limit"] == "3"
    assert (result.has_more, result.cursor) == (True, {"offset": 144064962})


def test_offset_moves_past_updates_that_give_no_event(respx_mock: respx.MockRouter) -> None:
    page = [update("callback_query.json"), update("text.json"), update("pinned_message.json")]  # ids 2, 123456789 x2
    respx_mock.get(f"{API}/getUpdates").mock(return_value=ok(page))
    polling = adapter()

    result = polling.fetch({"offset": 2})

    assert [e.external_id for e in result.events] == ["12345678:123456"]
    assert result.cursor == {"offset": 123456790}
    assert [where for where, _ in polling.skipped] == ["getUpdates.result[0]", "getUpdates.result[2].message"]


def test_an_unreadable_update_is_skipped_and_does_not_block_the_channel(respx_mock: respx.MockRouter) -> None:
    """photo.json with its `date` removed (derived here): Telegram keeps unconfirmed updates only 24 hours."""
    broken = update("photo.json")
    del broken["message"]["date"]
    respx_mock.get(f"{API}/getUpdates").mock(return_value=ok([update("edited_message.json"), broken,
                                                              update("command.json")]))
    polling = adapter()

    result = polling.fetch({"offset": 62257549})

    assert [e.external_id for e in result.events] == ["999999999:23762", "10081232:428640"]
    assert result.cursor == {"offset": 144064962}
    assert polling.skipped == [("getUpdates.result[1]",
                                "update 144011148 cannot be read: Telegram getUpdates.result[1].message has no date")]


def test_updates_without_update_id_cannot_advance_the_offset(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(return_value=ok([update("text.json")["message"]]))

    with pytest.raises(PayloadError, match="without update_id"):
        adapter().fetch({"offset": 5})


def test_flood_control_is_rate_limited_until_retry_after(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(
        return_value=failed(429, "Too Many Requests: retry after 42", retry_after=42))
    earliest, latest = window(42)

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({"offset": 1})

    assert earliest <= caught.value.reset_at <= latest


def test_flood_control_answered_with_http_200_is_rate_limited_too(respx_mock: respx.MockRouter) -> None:
    body = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7}}
    respx_mock.get(f"{API}/getUpdates").mock(return_value=httpx.Response(200, json=body))
    earliest, latest = window(7)

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({"offset": 1})

    assert earliest <= caught.value.reset_at <= latest


@pytest.mark.parametrize(("response", "error", "message"), [
    (failed(502, "Bad Gateway"), TransientError, "HTTP 502"),
    (httpx.Response(200, text="<html>proxy error</html>"), TransientError, "not a JSON object"),
    (failed(401, "Unauthorized"), PermanentError, "Unauthorized"),
    (failed(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                 "the webhook first"), PermanentError, "webhook is active"),
])
def test_fetch_errors_are_mapped_by_code(respx_mock: respx.MockRouter, response: httpx.Response,
                                         error: type[Exception], message: str) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(return_value=response)

    with pytest.raises(error, match=message) as caught:
        adapter().fetch({"offset": 1})

    assert not isinstance(caught.value, RateLimited)


def test_fetch_timeout_is_transient_not_unknown(respx_mock: respx.MockRouter) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(TransientError) as caught:
        adapter().fetch({"offset": 1})

    assert not isinstance(caught.value, OutcomeUnknown)


@pytest.mark.parametrize(("cursor", "config", "message"), [
    ({"offset": "5"}, {}, "offset must be an integer"),
    ({"offset": True}, {}, "offset must be an integer"),
    ({}, {"page_size": 0}, "page_size"),
    ({}, {"page_size": "50"}, "page_size"),
])
def test_bad_cursor_or_page_size_is_refused(respx_mock: respx.MockRouter, cursor: dict, config: dict,
                                            message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        adapter(config=config).fetch(cursor)

    assert respx_mock.calls.call_count == 0


@pytest.mark.parametrize("credentials", [{}, {"bot_token": ""}, {"bot_token": "123/../../x"},
                                         {"bot_token": f"{TOKEN}/getMe?"}])
def test_missing_or_malformed_token_is_refused_before_any_request(respx_mock: respx.MockRouter,
                                                                  credentials: dict) -> None:
    with pytest.raises(PermanentError, match="no valid bot_token") as caught:
        adapter(credentials=credentials).fetch({})

    assert respx_mock.calls.call_count == 0
    assert "getMe" not in str(caught.value)


@pytest.mark.parametrize("response", [
    failed(401, "Unauthorized"), failed(429, "Too Many Requests: retry after 3", retry_after=3),
    failed(500, "Internal Server Error"), httpx.ReadTimeout("timed out"), httpx.ConnectError("refused"),
])
def test_the_token_is_never_in_errors_or_logs(respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture,
                                              response: object) -> None:
    route = respx_mock.get(f"{API}/getUpdates")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    caplog.set_level(logging.DEBUG)

    with pytest.raises((TransientError, PermanentError)) as caught:
        adapter().fetch({"offset": 1})

    secret_part = TOKEN.split(":")[1]
    assert secret_part not in str(caught.value)
    assert secret_part not in caplog.text


def test_request_log_lines_show_the_url_without_the_token(respx_mock: respx.MockRouter,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    respx_mock.get(f"{API}/getUpdates").mock(return_value=ok([]))
    caplog.set_level(logging.INFO, logger="httpx")

    adapter().fetch({})

    assert "https://api.telegram.org/bot<redacted>/getUpdates" in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


# -- sending ---------------------------------------------------------------------------------------------------

BOT_MESSAGE = update("callback_query.json")["callback_query"]["message"]  # chat 222222222, message 69587


def reply(text: str = "Thanks, it is on its way.", **kwargs: object) -> OutboundMessage:
    fields = {"idempotency_key": "reply-1", "text": text, "thread_key": "chat:222222222",
              "reply_to_id": "222222222:69580", "private": True}
    return OutboundMessage(**(fields | kwargs))


def test_reply_is_sent_to_the_chat_answering_the_message(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(return_value=ok(BOT_MESSAGE))

    result = adapter().send(reply())

    assert json.loads(route.calls.last.request.content) == {
        "chat_id": 222222222, "text": "Thanks, it is on its way.",
        "reply_parameters": {"message_id": 69580, "allow_sending_without_reply": True}}
    assert (result.external_id, result.thread_key) == ("222222222:69587", "chat:222222222")
    # The id is the one the parser gives the same message when Telegram shows it to us.
    [seen] = adapter().parse({"update_id": 9, "message": result.raw})
    assert seen.external_id == result.external_id


def test_reply_without_reply_to_and_in_a_forum_topic(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(
        return_value=ok(BOT_MESSAGE | {"chat": {"id": -1001234567890, "type": "supergroup"}, "message_thread_id": 7}))

    result = adapter().send(reply(thread_key="chat:-1001234567890:topic:7", reply_to_id=""))

    assert json.loads(route.calls.last.request.content) == {
        "chat_id": -1001234567890, "text": "Thanks, it is on its way.", "message_thread_id": 7}
    assert result.external_id == "-1001234567890:69587"


def test_reply_to_a_message_of_another_chat_names_that_chat(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post(f"{API}/sendMessage").mock(return_value=ok(BOT_MESSAGE))

    adapter().send(reply(reply_to_id="-1009876543210:12"))

    assert json.loads(route.calls.last.request.content)["reply_parameters"] == {
        "message_id": 12, "chat_id": -1009876543210, "allow_sending_without_reply": True}


def test_send_flood_control_is_rate_limited(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(
        return_value=failed(429, "Too Many Requests: retry after 15", retry_after=15))
    earliest, latest = window(15)

    with pytest.raises(RateLimited) as caught:
        adapter().send(reply())

    assert earliest <= caught.value.reset_at <= latest


def test_send_server_error_is_transient(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(return_value=failed(500, "Internal Server Error"))

    with pytest.raises(TransientError) as caught:
        adapter().send(reply())

    assert not isinstance(caught.value, OutcomeUnknown | RateLimited)


def test_send_timeout_is_outcome_unknown(respx_mock: respx.MockRouter) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(OutcomeUnknown) as caught:
        adapter().send(reply())

    assert TOKEN.split(":")[1] not in str(caught.value)


@pytest.mark.parametrize(("response", "message"), [
    (failed(400, "Bad Request: chat not found"), "chat not found"),
    (failed(403, "Forbidden: bot was blocked by the user"), "blocked"),
])
def test_send_refusals_are_permanent(respx_mock: respx.MockRouter, response: httpx.Response, message: str) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(return_value=response)

    with pytest.raises(PermanentError, match=message):
        adapter().send(reply())


@pytest.mark.parametrize("response", [httpx.Response(200, text="OK"), ok({"chat": {"id": 222222222}}), ok(True)])
def test_accepted_send_without_a_message_is_outcome_unknown(respx_mock: respx.MockRouter,
                                                            response: httpx.Response) -> None:
    respx_mock.post(f"{API}/sendMessage").mock(return_value=response)

    with pytest.raises(OutcomeUnknown):
        adapter().send(reply())


@pytest.mark.parametrize(("built", "message", "error"), [
    (adapter(), reply(thread_key="wa:972987654321"), "cannot send to thread"),
    (adapter(), reply(thread_key="chat:abc"), "cannot send to thread"),
    (adapter(), reply(reply_to_id="69580"), "is not <chat id>:<message id>"),
    (adapter(), reply(text=""), "empty"),
    (adapter(), reply(text="x" * 4097), "longer than 4096"),
    (adapter(credentials={}), reply(), "no valid bot_token"),
])
def test_unsendable_replies_fail_before_any_request(respx_mock: respx.MockRouter, built: TelegramAdapter,
                                                    message: OutboundMessage, error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        built.send(message)

    assert respx_mock.calls.call_count == 0


def test_platform_facts() -> None:
    assert (TelegramAdapter.platform, TelegramAdapter.pollable) == ("telegram", True)
    assert (TelegramAdapter.api_base_url, TelegramAdapter.max_reply_length) == ("https://api.telegram.org", 4096)
    assert TelegramAdapter.private_reply_window is None
