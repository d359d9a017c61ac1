"""Webhook intake per platform: signatures checked against the raw body, deliveries stored before parsing,
handshakes answered, replays stored once. Bodies are the recorded payloads (channels/recorded/)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
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


@pytest.mark.django_db
def test_intake_takes_the_short_path_and_other_paths_the_whole_stack(client: Client) -> None:
    from django.urls import reverse

    from channels.middleware import PREFIX

    telegram = next(p for p in PLATFORMS if p.name == "telegram")
    account = _account(telegram)
    body = telegram.body()
    assert reverse("channels:webhook", kwargs={"platform": "telegram", "account_id": account.pk}).startswith(PREFIX)

    stored = _post(client, account, body, telegram.sign(body))
    unrouted = client.post("/webhooks/telegram/not-a-number/", data=body, content_type="application/json")

    assert stored.status_code == 200
    assert stored["Content-Length"] == str(len(stored.content))
    assert stored.json() == {"received": WebhookDelivery.objects.get().pk}
    assert "X-Frame-Options" not in stored  # the console's middleware did not run
    assert unrouted.status_code == 404
    assert unrouted["X-Frame-Options"] == "DENY"  # it did
