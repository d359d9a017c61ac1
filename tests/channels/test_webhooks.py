"""Webhook intake per platform: signatures checked against the raw body, deliveries stored before parsing,
handshakes answered, replays stored once. Bodies are the recorded payloads (channels/recorded/)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import json
import pathlib
from collections.abc import Callable

import psycopg
import pytest
from django.db import connection
from django.test import Client

from channels.models import ChannelAccount, WebhookDelivery
from channels.services import deliveries_process
from conversations.models import Interaction

RECORDED = pathlib.Path(__file__).resolve().parents[2] / "channels" / "recorded"


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _x_body() -> bytes:
    # An Account Activity delivery wraps v1.1 Tweet objects; the tweet inside is a recorded one.
    tweets = json.loads((RECORDED / "tweepy/x_api_v1_1/user_timeline_twitter_replies.json").read_bytes())
    return json.dumps({"for_user_id": "783214", "tweet_create_events": [tweets[0]]}).encode()


def _mastodon_body() -> bytes:
    # Mastodon's admin webhook body: {"event", "created_at", "object"}; the status inside is a recorded one.
    status = json.loads((RECORDED / "mastodon-py/mastodon_social/status_local_with_poll_edited.json").read_bytes())
    return json.dumps({"event": "status.created", "created_at": status["created_at"], "object": status}).encode()


@dataclasses.dataclass(frozen=True)
class Platform:
    name: str
    external_id: str
    secret: dict[str, str]
    body: Callable[[], bytes]
    sign: Callable[[bytes], dict[str, str]]
    config: dict = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _recorded(path: str) -> Callable[[], bytes]:
    return lambda: (RECORDED / path).read_bytes()


PLATFORMS = [
    Platform("x", "783214", {"consumer_secret": "x-consumer-secret"}, _x_body,
             lambda b: {"HTTP_X_TWITTER_WEBHOOKS_SIGNATURE": "sha256=" + _b64("x-consumer-secret", b)}),
    Platform("facebook", "106789", {"app_secret": "fb-app-secret", "verify_token": "fb-verify"},
             _recorded("restfb/facebook_page_feed/feed-comment-add-211.json"),
             lambda b: {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + _hex("fb-app-secret", b)}),
    Platform("instagram", "17841400000000000", {"app_secret": "ig-app-secret", "verify_token": "ig-verify"},
             _recorded("restfb/instagram/wh-comments-2021.json"),
             lambda b: {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + _hex("ig-app-secret", b)}),
    Platform("whatsapp", "10634295353625", {"app_secret": "wa-app-secret", "verify_token": "wa-verify"},
             _recorded("restfb/whatsapp/webhook-incoming-message-text.json"),
             lambda b: {"HTTP_X_HUB_SIGNATURE_256": "sha256=" + _hex("wa-app-secret", b)}),
    Platform("telegram", "bot-1", {"secret_token": "tg-secret-token"}, _recorded("nutgram/telegram_bot_api/text.json"),
             lambda b: {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "tg-secret-token"}),
    # A Mastodon channel is our account on one instance: its account id there, the instance in config.
    Platform("mastodon", "43", {"secret": "md-secret"}, _mastodon_body,
             lambda b: {"HTTP_X_HUB_SIGNATURE": "sha256=" + _hex("md-secret", b)},
             config={"instance": "mastodon.social"}),
    Platform("email", "support@example.com", {"signing_key": "mail-key"},
             _recorded("chatwoot/email_rfc822/references.eml"),
             lambda b: {"HTTP_X_SOCIALCRM_SIGNATURE": "sha256=" + _hex("mail-key", b)}),
]


def _account(p: Platform, *, secret: bool = True) -> ChannelAccount:
    return ChannelAccount.objects.create(
        platform=p.name, name=f"{p.name} brand", external_id=p.external_id, config=p.config,
        webhook_secret=p.secret if secret else None,
    )


def _post(client: Client, account: ChannelAccount, body: bytes, headers: dict[str, str]):
    content_type = "message/rfc822" if account.platform == "email" else "application/json"
    return client.post(f"/webhooks/{account.platform}/{account.pk}/", data=body, content_type=content_type,
                       **headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("p", PLATFORMS, ids=str)
def test_signed_delivery_is_stored_then_ingested_once_however_often_it_comes(p: Platform, client: Client) -> None:
    account = _account(p)
    body = p.body()

    response = _post(client, account, body, p.sign(body))

    assert response.status_code == 200, response.content
    delivery = WebhookDelivery.objects.get(pk=response.json()["received"])
    assert bytes(delivery.body) == body
    assert delivery.state == WebhookDelivery.State.PENDING
    assert "cookie" not in delivery.headers

    outcome = deliveries_process()
    assert (outcome.processed, outcome.failed) == (1, 0)
    stored = set(Interaction.objects.filter(channel_account=account).values_list("external_id", "text"))
    assert stored, "the delivery produced no interaction"

    for _ in range(10):
        assert _post(client, account, body, p.sign(body)).status_code == 200
    deliveries_process()

    assert WebhookDelivery.objects.filter(channel_account=account, state="processed").count() == 11
    assert set(Interaction.objects.filter(channel_account=account).values_list("external_id", "text")) == stored


@pytest.mark.django_db
@pytest.mark.parametrize("p", PLATFORMS, ids=str)
def test_wrong_or_missing_signature_is_refused_and_nothing_is_stored(p: Platform, client: Client) -> None:
    account = _account(p)
    body = p.body()
    tampered = body.replace(b"}", b" }", 1) if p.name != "email" else body + b"\r\nX-Evil: 1\r\n"
    if p.name == "telegram":  # Telegram signs nothing: it sends the shared secret token itself
        wrong = _post(client, account, body, {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "guessed-token"})
    else:
        wrong = _post(client, account, tampered, p.sign(body))
    missing = _post(client, account, body, {})

    for response in (wrong, missing):
        assert response.status_code == 401
        assert response.json()["code"] == "bad_signature"
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("p", PLATFORMS, ids=str)
def test_channel_without_a_webhook_secret_refuses_webhooks(p: Platform, client: Client) -> None:
    account = _account(p, secret=False)
    body = p.body()

    response = _post(client, account, body, p.sign(body))

    assert response.status_code == 401
    assert "no webhook secret" in response.json()["detail"]
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("p", [p for p in PLATFORMS if p.name in ("facebook", "instagram", "whatsapp")], ids=str)
def test_meta_handshake_echoes_the_challenge_only_for_the_right_token(p: Platform, client: Client) -> None:
    account = _account(p)
    url = f"/webhooks/{p.name}/{account.pk}/"
    token = p.secret["verify_token"]

    ok = client.get(url, {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"})
    wrong = client.get(url, {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"})
    not_one = client.get(url)

    assert (ok.status_code, ok.content) == (200, b"1158201444")
    assert wrong.status_code == 403
    assert not_one.status_code == 400


@pytest.mark.django_db
def test_x_crc_challenge_is_answered_with_the_hmac_of_the_token(client: Client) -> None:
    account = _account(PLATFORMS[0])

    response = client.get(f"/webhooks/x/{account.pk}/", {"crc_token": "challenge-123"})

    assert response.status_code == 200
    expected = "sha256=" + _b64("x-consumer-secret", b"challenge-123")
    assert response.json() == {"response_token": expected}


@pytest.mark.django_db
def test_unknown_disabled_or_mismatched_channel_is_404(client: Client, settings) -> None:
    settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 0  # with reuse, disabling takes effect within that many seconds
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    body = telegram.body()
    headers = telegram.sign(body)

    unknown = client.post("/webhooks/telegram/999999/", body, content_type="application/json", **headers)
    assert unknown.status_code == 404
    assert _post(client, account, body, headers).status_code == 200
    mismatched = client.post(f"/webhooks/facebook/{account.pk}/", body, content_type="application/json", **headers)
    assert mismatched.status_code == 404
    ChannelAccount.objects.filter(pk=account.pk).update(enabled=False)
    assert _post(client, account, body, headers).status_code == 404
    assert WebhookDelivery.objects.count() == 1


@pytest.mark.django_db
def test_oversized_body_is_413_and_not_stored(client: Client, settings) -> None:
    settings.WEBHOOK_MAX_BODY = 1024
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    body = b'{"update_id": 1, "padding": "' + b"x" * 2048 + b'"}'

    response = _post(client, account, body, telegram.sign(body))

    assert response.status_code == 413
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_delivery_that_cannot_be_parsed_fails_with_its_reason_after_retries_and_replays(client: Client) -> None:
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    good = telegram.body()
    poison = b'{"update_id": "not json'
    _post(client, account, poison, telegram.sign(poison))
    _post(client, account, good, telegram.sign(good))

    first = deliveries_process()
    assert (first.processed, first.retried) == (1, 1)
    for _ in range(10):
        deliveries_process()
    failed = WebhookDelivery.objects.get(state=WebhookDelivery.State.FAILED)
    assert bytes(failed.body) == poison
    assert "not valid JSON" in failed.last_error
    assert failed.attempts == 5
    assert Interaction.objects.filter(channel_account=account).count() == 1

    from django.core.management import call_command

    call_command("replay_deliveries", str(failed.pk), "--now")
    failed.refresh_from_db()
    assert failed.state == WebhookDelivery.State.PENDING
    assert failed.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_delivery_on_a_connection_that_died_is_stored_on_a_new_one(client: Client, caplog) -> None:
    # Intake skips Django's per-request health check: a persistent connection that died since its last use (a
    # database restart) must cost neither the delivery nor a 500.
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    body = telegram.body()
    assert _post(client, account, body, telegram.sign(body)).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (old_pid,) = cursor.fetchone()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")},
                         autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [old_pid])

    response = _post(client, account, body, telegram.sign(body))

    assert response.status_code == 200, response.content
    assert "retrying on a new one" in caplog.text
    assert WebhookDelivery.objects.filter(channel_account=account).count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != old_pid


@pytest.mark.django_db
def test_a_delivery_whose_account_was_deleted_fails_with_its_reason(client: Client) -> None:
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    kept = _account(dataclasses.replace(telegram, external_id="bot-2"))
    body = telegram.body()
    for target in (account, kept):
        assert _post(client, target, body, telegram.sign(body)).status_code == 200
    # Stored in the instant the account was deleted: the row outlives Django's cascade.
    WebhookDelivery.objects.filter(channel_account=account).update(channel_account_id=account.pk + 1000)

    outcome = deliveries_process()

    assert (outcome.processed, outcome.failed) == (1, 1)
    orphan = WebhookDelivery.objects.get(channel_account_id=account.pk + 1000)
    assert orphan.state == WebhookDelivery.State.FAILED
    assert orphan.last_error == f"Channel account {account.pk + 1000} was deleted."
    assert Interaction.objects.filter(channel_account=kept).count() == 1


def _wsgi(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          query: str = "") -> tuple[str, dict[str, str], bytes]:
    """One request through the project's WSGI application, as gunicorn makes it: (status, headers, body)."""
    from socialcrm.wsgi import application

    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "testserver",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "testserver", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(), "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", **(headers or {}),
    }
    started = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: object = None) -> None:
        started.update(status=status, headers=dict(response_headers))

    result = application(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    return started["status"], started["headers"], content


@pytest.mark.django_db(transaction=True)  # the entry sends request_finished, as a server does
def test_the_wsgi_entry_stores_signed_deliveries_ahead_of_django() -> None:
    from django.core import signals
    from django.urls import reverse

    from channels.intake import ROUTE

    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    body = telegram.body()
    path = reverse("channels:webhook", kwargs={"platform": "telegram", "account_id": account.pk})
    assert ROUTE.fullmatch(path)
    seen = []
    signals.request_started.connect(started := lambda **kw: seen.append("started"), weak=False)
    signals.request_finished.connect(finished := lambda **kw: seen.append("finished"), weak=False)
    try:
        status, headers, content = _wsgi("POST", path, body, {
            "HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "tg-secret-token", "HTTP_COOKIE": "sessionid=x"})
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)

    assert status == "200 OK"
    delivery = WebhookDelivery.objects.get()
    assert json.loads(content) == {"received": delivery.pk}
    assert headers["Content-Length"] == str(len(content))
    assert headers["Content-Type"] == "application/json"
    assert "X-Frame-Options" not in headers  # Django's middleware did not run
    assert bytes(delivery.body) == body
    assert delivery.headers["x-telegram-bot-api-secret-token"] == "tg-secret-token"
    assert "cookie" not in delivery.headers
    assert seen == ["started", "finished"]


@pytest.mark.django_db(transaction=True)  # the entry sends request_finished, as a server does
def test_the_wsgi_entry_refuses_what_the_view_refuses(settings) -> None:
    settings.WEBHOOK_MAX_BODY = 1024
    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    path = f"/webhooks/telegram/{account.pk}/"
    body = telegram.body()
    good = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "tg-secret-token"}

    wrong = _wsgi("POST", path, body, {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "guessed"})
    unknown = _wsgi("POST", "/webhooks/telegram/999999/", body, good)
    large = _wsgi("POST", path, b"{" + b" " * 2048 + b"}", good)

    assert (wrong[0], json.loads(wrong[2])["code"]) == ("401 Unauthorized", "bad_signature")
    assert (unknown[0], json.loads(unknown[2])["code"]) == ("404 Not Found", "unknown_channel")
    assert (large[0], json.loads(large[2])["code"]) == ("413 Payload Too Large", "body_too_large")
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)  # the entry sends request_finished, as a server does
def test_the_wsgi_entry_leaves_handshakes_and_other_paths_to_django() -> None:
    facebook = next(p for p in PLATFORMS if p.name == "facebook")
    account = _account(facebook)
    path = f"/webhooks/facebook/{account.pk}/"

    handshake = _wsgi("GET", path, query="hub.mode=subscribe&hub.verify_token=fb-verify&hub.challenge=1158201444")
    unrouted = _wsgi("POST", "/webhooks/facebook/not-a-number/", b"{}")

    assert (handshake[0], handshake[2]) == ("200 OK", b"1158201444")
    assert unrouted[0].startswith("404")
    assert unrouted[1]["X-Frame-Options"] == "DENY"  # Django answered


@pytest.mark.django_db(transaction=True)  # the entry sends request_finished, as a server does
def test_an_unexpected_error_in_the_wsgi_entry_is_a_logged_500_with_json(monkeypatch, caplog) -> None:
    from channels import intake

    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)

    def broken(**kwargs: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(intake, "delivery_store", broken)
    status, headers, content = _wsgi("POST", f"/webhooks/telegram/{account.pk}/", telegram.body(),
                                     {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": "tg-secret-token"})

    assert status == "500 Internal Server Error"
    assert json.loads(content)["code"] == "server_error"
    assert "disk on fire" in caplog.text
