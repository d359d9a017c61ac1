"""Mastodon polling, replies and admin webhooks, against recorded bodies served by respx (no network)."""

import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import pathlib
from typing import Any

import httpx
import pytest
import respx

from channels.adapters.base import (
    Author,
    Direction,
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
from channels.adapters.mastodon import MastodonAdapter, status_length

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded" / "mastodon-py"
UTC = dt.UTC
BASE = "http://localhost:3000"  # the Mastodon 4.6 server the local_instance recordings come from
NOTIFICATIONS = f"{BASE}/api/v1/notifications"
STATUSES = f"{BASE}/api/v1/statuses"
ADMIN = "117020565693913441"  # the account that posted the recorded reply (and the recorded mention)
MENTIONED = "117020565966271181"  # mastodonpy_test: the account the recorded mention notification is for
TEST_2 = Author(platform="mastodon", external_id="117020566092212359", scope="localhost:3000",
                handle="mastodonpy_test_2@localhost:3000")


def exchange(name: str, index: int) -> Any:
    data = json.loads((RECORDED / "local_instance" / f"{name}.exchanges.json").read_bytes())
    return data["exchanges"][index]["response_body"]


def stream_notifications() -> dict[str, dict[str, Any]]:
    """The two mention notifications of the recorded user stream, by notification id ("14", "16")."""
    text = (RECORDED / "local_instance" / "streaming_user.sse.txt").read_text()
    items = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: {")]
    return {item["id"]: item for item in items if item.get("type") == "mention"}


def adapter(external_id: str = ADMIN, **config: Any) -> MastodonAdapter:
    return MastodonAdapter(external_id=external_id, credentials={"access_token": "token-1"},
                           config={"instance": "localhost:3000", "api_base_url": BASE, **config},
                           webhook_secret={"secret": "hook-secret"})


def link(rels: dict[str, str]) -> str:
    """A `Link` header as Mastodon writes it: `<url>; rel="next", <url>; rel="prev"`."""
    return ", ".join(
        f'<{NOTIFICATIONS}?{param}&types%5B%5D=mention>; rel="{rel}"' for rel, param in rels.items()
    )


REPLY = OutboundMessage(idempotency_key="reply-7f3c", text="same!", thread_key="117020583245459824",
                        reply_to_id="117020583245459824", recipient=TEST_2)


# -- polling --------------------------------------------------------------------------------------------

@respx.mock
def test_first_poll_takes_the_newest_page_and_sets_the_cursor() -> None:
    route = respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(
        200, json=exchange("notifications_mentions_only", 1), headers={"Link": link({"next": "max_id=21",
                                                                                      "prev": "min_id=21"})}))

    page = adapter(MENTIONED).fetch({})

    request = route.calls.last.request
    assert request.url.params.get_list("types[]") == ["mention"]
    assert request.url.params["limit"] == "40"
    assert "min_id" not in request.url.params
    assert request.headers["Authorization"] == "Bearer token-1"
    assert route.call_count == 1  # no cursor: nothing older is back-filled, nothing newer exists
    [event] = page.events
    assert (event.external_id, event.kind, event.text) == ("117020577157693549", EventKind.MENTION,
                                                          "@mastodonpy_test hello!")
    assert (page.cursor, page.has_more) == ({"min_id": "21"}, False)


@respx.mock
def test_poll_follows_the_prev_link_while_pages_are_full() -> None:
    by_id = stream_notifications()
    pages = {
        "13": httpx.Response(200, json=[by_id["16"], by_id["14"]],
                             headers={"Link": link({"next": "max_id=14", "prev": "min_id=16"})}),
        "16": httpx.Response(200, json=exchange("notifications_mentions_only", 1),
                             headers={"Link": link({"next": "max_id=21", "prev": "min_id=21"})}),
    }
    route = respx.get(NOTIFICATIONS).mock(side_effect=lambda request: pages[request.url.params["min_id"]])

    page = adapter(MENTIONED, page_size=2).fetch({"min_id": "13"})

    assert [call.request.url.params["min_id"] for call in route.calls] == ["13", "16"]
    assert [e.external_id for e in page.events] == ["117024236635443611", "117024236408130890", "117020577157693549"]
    assert [e.kind for e in page.events] == [EventKind.DIRECT_MESSAGE, EventKind.MENTION, EventKind.MENTION]
    assert (page.cursor, page.has_more) == ({"min_id": "21"}, False)


@respx.mock
def test_poll_stops_after_max_pages_and_says_more_is_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("channels.adapters.mastodon.MAX_PAGES_PER_FETCH", 1)
    by_id = stream_notifications()
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(
        200, json=[by_id["16"], by_id["14"]], headers={"Link": link({"next": "max_id=14", "prev": "min_id=16"})}))

    page = adapter(page_size=2).fetch({"min_id": "13"})

    assert (page.cursor, page.has_more, len(page.events)) == ({"min_id": "16"}, True, 2)


@respx.mock
def test_empty_poll_keeps_the_cursor() -> None:
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(200, json=[]))

    page = adapter().fetch({"min_id": "21"})

    assert (page.events, page.cursor, page.has_more) == ([], {"min_id": "21"}, False)


@respx.mock
def test_rate_limit_pauses_until_x_ratelimit_reset() -> None:
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(
        429, json={"error": "Too many requests"},
        headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
                 "X-RateLimit-Reset": "2026-08-01T14:05:00.123456Z"}))

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({"min_id": "21"})

    assert caught.value.reset_at == dt.datetime(2026, 8, 1, 14, 5, 0, 123456, tzinfo=UTC)


@respx.mock
def test_rate_limit_without_a_readable_reset_falls_back_to_retry_after() -> None:
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(
        429, headers={"X-RateLimit-Reset": "soon", "Retry-After": "120"}))
    before = dt.datetime.now(UTC)

    with pytest.raises(RateLimited) as caught:
        adapter().fetch({})

    assert before + dt.timedelta(seconds=119) <= caught.value.reset_at <= before + dt.timedelta(seconds=125)


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    respx.get(NOTIFICATIONS).mock(return_value=httpx.Response(status, text="<html>Bad gateway</html>"))

    with pytest.raises(TransientError, match=f"HTTP {status}"):
        adapter().fetch({})


@respx.mock
def test_poll_timeout_and_non_json_answers_are_transient_and_bad_token_is_permanent() -> None:
    route = respx.get(NOTIFICATIONS)

    route.mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(TransientError, match="timed out") as timed_out:
        adapter().fetch({})
    assert not isinstance(timed_out.value, OutcomeUnknown)
    route.mock(return_value=httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(TransientError, match="without JSON"):
        adapter().fetch({})
    route.mock(return_value=httpx.Response(401, json={"error": "The access token is invalid"}))
    with pytest.raises(PermanentError, match="HTTP 401"):
        adapter().fetch({})


def test_polling_needs_a_token_and_a_page_size_mastodon_accepts() -> None:
    with pytest.raises(PermanentError, match="access_token"):
        MastodonAdapter(config={"instance": "localhost:3000", "api_base_url": BASE}).fetch({})
    with pytest.raises(PermanentError, match="page_size"):
        adapter(page_size=81).fetch({})


@respx.mock
def test_without_api_base_url_the_instance_is_called_over_https() -> None:
    route = respx.get("https://mastodon.social/api/v1/notifications").mock(return_value=httpx.Response(200, json=[]))
    social = MastodonAdapter(credentials={"access_token": "t"}, config={"instance": "Mastodon.Social"})

    social.fetch({})

    assert route.called


@pytest.mark.parametrize("instance", [
    "localhost:3000", "127.0.0.1", "http://mastodon.social", "10.0.0.7", "[::1]", "169.254.169.254",
    "[::ffff:192.168.1.1]", "user@mastodon.social", "",
])
def test_internal_or_plain_http_instances_are_refused(instance: str) -> None:
    with pytest.raises(PermanentError, match="instance"):
        MastodonAdapter(credentials={"access_token": "t"}, config={"instance": instance}).fetch({})


# -- replies --------------------------------------------------------------------------------------------

@respx.mock
def test_reply_posts_with_mention_visibility_and_idempotency_key() -> None:
    route = respx.post(STATUSES).mock(return_value=httpx.Response(200, json=exchange("status_reply_and_delete", 2)))

    result = adapter().send(REPLY)

    request = route.calls.last.request
    assert request.headers["Idempotency-Key"] == "reply-7f3c"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert json.loads(request.content) == {"status": "@mastodonpy_test_2 same!", "visibility": "unlisted",
                                           "in_reply_to_id": "117020583245459824"}
    assert result.external_id == "117020583258292382"
    assert result.thread_key == "117020583245459824"
    assert result.raw["in_reply_to_id"] == "117020583245459824"
    # The recorded status is our reply: parsing it as Mastodon reports it back gives the same id, outbound.
    [echo] = adapter().parse(result.raw)
    assert (echo.external_id, echo.direction, echo.kind) == (result.external_id, Direction.OUTBOUND, EventKind.REPLY)


@respx.mock
def test_private_reply_is_direct_and_remote_recipients_keep_their_domain() -> None:
    route = respx.post(STATUSES).mock(return_value=httpx.Response(200, json=exchange("status_reply_and_delete", 2)))
    remote = dataclasses.replace(TEST_2, handle="halcy@icosahedron.website")

    adapter().send(dataclasses.replace(REPLY, private=True, recipient=remote, text="@Halcy@icosahedron.website hi"))

    body = json.loads(route.calls.last.request.content)
    assert body["visibility"] == "direct"
    assert body["status"] == "@Halcy@icosahedron.website hi"  # the agent already wrote the mention


@respx.mock
def test_configured_public_visibility() -> None:
    route = respx.post(STATUSES).mock(return_value=httpx.Response(200, json=exchange("status_reply_and_delete", 2)))

    adapter(reply_visibility="public").send(REPLY)

    assert json.loads(route.calls.last.request.content)["visibility"] == "public"


@respx.mock
def test_timeout_on_send_is_outcome_unknown_and_find_sent_repeats_with_the_same_key() -> None:
    route = respx.post(STATUSES)
    posted = httpx.Response(200, json=exchange("status_reply_and_delete", 2))
    route.side_effect = [httpx.ReadTimeout("no answer"), posted]
    mastodon = adapter()

    with pytest.raises(OutcomeUnknown):
        mastodon.send(REPLY)
    found = mastodon.find_sent(REPLY)

    assert [call.request.headers["Idempotency-Key"] for call in route.calls] == ["reply-7f3c", "reply-7f3c"]
    assert route.calls[0].request.content == route.calls[1].request.content
    assert found is not None
    assert found.external_id == "117020583258292382"


@respx.mock
def test_send_errors() -> None:
    route = respx.post(STATUSES)

    route.mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError, match="cannot connect") as not_sent:
        adapter().send(REPLY)
    assert not isinstance(not_sent.value, OutcomeUnknown)  # nothing left: a plain retry is safe
    route.mock(return_value=httpx.Response(503, text="busy"))
    with pytest.raises(TransientError, match="HTTP 503"):
        adapter().send(REPLY)
    route.mock(return_value=httpx.Response(429, headers={"X-RateLimit-Reset": "2026-08-01T14:05:00Z"}))
    with pytest.raises(RateLimited):
        adapter().send(REPLY)
    route.mock(return_value=httpx.Response(422, json={"error": "Validation failed: Text can't be blank"}))
    with pytest.raises(PermanentError, match="HTTP 422"):
        adapter().send(REPLY)
    route.mock(return_value=httpx.Response(200, text="ok"))
    with pytest.raises(OutcomeUnknown, match="not JSON"):
        adapter().send(REPLY)


def test_replies_refused_before_sending() -> None:
    nobody = dataclasses.replace(REPLY, recipient=None, private=True)
    with pytest.raises(PermanentError, match="needs the recipient's handle"):
        adapter().send(nobody)
    with pytest.raises(PermanentError, match="counts 501 characters; the instance allows 500"):
        adapter().send(dataclasses.replace(REPLY, text="x" * (500 - len("@mastodonpy_test_2 ") + 1)))
    with pytest.raises(PermanentError, match="empty"):
        adapter().send(dataclasses.replace(REPLY, text="  "))
    with pytest.raises(PermanentError, match="idempotency key"):
        adapter().send(dataclasses.replace(REPLY, idempotency_key=""))
    with pytest.raises(PermanentError, match="reply_visibility"):
        adapter(reply_visibility="direct").send(REPLY)


def test_reply_length_follows_the_instance_configuration() -> None:
    assert adapter().max_reply_length == 500
    assert adapter(max_characters=5000).max_reply_length == 5000
    assert adapter(configuration={"statuses": {"max_characters": 1000}}).max_reply_length == 1000
    assert MastodonAdapter.max_reply_length == 500
    assert status_length("@halcy@icosahedron.website see https://example.com/" + "a" * 100) == len(
        "@halcy see ") + 23


# -- admin webhooks -------------------------------------------------------------------------------------

def webhook(event: str, obj: Any, created_at: str = "2026-08-01T13:52:00.000Z") -> bytes:
    return json.dumps({"event": event, "created_at": created_at, "object": obj}).encode()


def signed(body: bytes, secret: str = "hook-secret") -> WebhookRequest:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return WebhookRequest(method="POST", headers={"x-hub-signature": f"sha256={digest}"}, query={}, body=body)


def test_webhook_signature_ok_wrong_missing_and_no_secret() -> None:
    body = webhook("status.created", exchange("status_reply_and_delete", 2))

    adapter().verify_webhook(signed(body))
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify_webhook(signed(body, secret="other"))
    with pytest.raises(SignatureError, match="does not match"):  # the body changed after it was signed
        adapter().verify_webhook(WebhookRequest("POST", signed(body).headers, {}, body + b" "))
    with pytest.raises(SignatureError, match="missing"):
        adapter().verify_webhook(WebhookRequest("POST", {}, {}, body))
    with pytest.raises(SignatureError, match="start with"):
        adapter().verify_webhook(WebhookRequest("POST", {"x-hub-signature": "sha1=abc"}, {}, body))
    with pytest.raises(SignatureError, match="no webhook secret"):
        MastodonAdapter(config={"instance": "localhost:3000"}).verify_webhook(signed(body))


def test_webhook_status_created_and_updated() -> None:
    reply = exchange("status_reply_and_delete", 2)
    edited = exchange("status_edit", 3)

    [created] = adapter().parse(webhook("status.created", reply))
    updated = MastodonAdapter(config={"instance": "localhost:3000"}).parse(webhook("status.updated", edited))

    assert (created.external_id, created.kind, created.direction) == ("117020583258292382", EventKind.REPLY,
                                                                      Direction.OUTBOUND)
    assert [e.kind for e in updated] == [EventKind.MENTION, EventKind.EDIT]
    assert updated[1].occurred_at == dt.datetime(2026, 8, 1, 13, 54, 0, 695000, tzinfo=UTC)  # its edited_at


def test_webhook_update_without_edited_at_is_an_edit_at_the_webhook_time() -> None:
    status = copy.deepcopy(exchange("status_reply_and_delete", 2))
    status["content"] = "<p>@mastodonpy_test_2 same, edited</p>"

    events = adapter().parse(webhook("status.updated", status, created_at="2026-08-01T13:59:00Z"))

    assert [(e.kind, e.occurred_at) for e in events] == [
        (EventKind.REPLY, dt.datetime(2026, 8, 1, 13, 53, 15, 910000, tzinfo=UTC)),
        (EventKind.EDIT, dt.datetime(2026, 8, 1, 13, 59, tzinfo=UTC)),
    ]
    assert events[1].text == "@mastodonpy_test_2 same, edited"


def test_webhook_other_events_and_statuses_not_for_us_are_skipped() -> None:
    ours = adapter()
    account = exchange("status_reply_and_delete", 1)
    stranger = copy.deepcopy(exchange("status_reply_and_delete", 0))  # mastodonpy_test_2's own toot, no mention

    assert ours.parse(webhook("account.created", account)) == []
    assert ours.parse(webhook("report.created", {"id": "1"})) == []
    assert ours.parse(webhook("status.created", stranger)) == []
    assert [where for where, _ in ours.skipped] == [
        "webhook 'account.created'", "webhook 'report.created'", "webhook 'status.created' status 117020583245459824",
    ]
    mentioning = {**stranger, "mentions": [{"id": ADMIN, "acct": "admin"}]}
    assert [e.external_id for e in ours.parse(webhook("status.created", mentioning))] == ["117020583245459824"]
    with pytest.raises(PayloadError, match="object is not a status"):
        ours.parse(webhook("status.created", "117020583245459824"))
