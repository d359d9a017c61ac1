"""Channel accounts (secrets write-only) and webhook deliveries (list, replay)."""

from __future__ import annotations

import pytest

from channels.models import ChannelAccount, WebhookDelivery
from tests.api.conftest import assert_error, ids

pytestmark = pytest.mark.django_db

SECRET = {"consumer_secret": "s3cr3t-consumer"}
TOKENS = {"access_token": "t0k3n"}


def test_a_channel_account_never_shows_its_secrets_only_whether_they_are_set(world, client_for):
    ChannelAccount.objects.filter(pk=world.a.account.pk).update(credentials=TOKENS)
    body = client_for(world.a.agent).get(f"/api/v1/channel-accounts/{world.a.account.pk}/").json()

    assert (body["has_credentials"], body["has_webhook_secret"]) == (True, False)
    assert "credentials" not in body
    assert "webhook_secret" not in body
    assert "t0k3n" not in str(body)


def test_creating_a_channel_account_stores_the_secrets_encrypted_and_returns_none(world, client_for):
    response = client_for(world.admin).post("/api/v1/channel-accounts/", {
        "platform": "x", "name": "@Support", "external_id": "brand-9", "credentials": TOKENS,
        "webhook_secret": SECRET, "config": {"mentions": True}, "sync_interval": 120,
    })

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["has_credentials"], body["has_webhook_secret"]) == (True, True)
    assert "s3cr3t" not in response.content.decode()
    account = ChannelAccount.objects.get(pk=body["id"])
    assert (account.credentials, account.webhook_secret) == (TOKENS, SECRET)
    raw = ChannelAccount.objects.filter(pk=account.pk).values_list("webhook_secret", flat=True).query
    assert "s3cr3t" not in str(raw)


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"platform": "myspace", "name": "x"}, "invalid", "platform"),
    ({"platform": "x"}, "invalid", "name"),
    ({"platform": "x", "name": "x", "webhook_secret": {"wrong_key": "v"}}, "webhook_secret_incomplete",
     "webhook_secret"),
    ({"platform": "telegram", "name": "x", "webhook_secret": SECRET}, "webhook_secret_incomplete", "webhook_secret"),
    ({"platform": "x", "name": "x", "credentials": {"access_token": 5}}, "invalid", "credentials.access_token"),
    ({"platform": "x", "name": "x", "credentials": "token"}, "invalid", "credentials"),
    ({"platform": "x", "name": "x", "sync_interval": 5}, "invalid", "sync_interval"),
    ({"platform": "x", "name": "x", "enabled": "yes"}, "invalid", "enabled"),
    ({"platform": "x", "name": "x", "config": {"k": "nul\x00"}}, "invalid", "config"),
])
def test_creating_a_channel_account_with_bad_input_is_a_400_naming_the_field(world, client_for, body, code, field):
    response = client_for(world.admin).post("/api/v1/channel-accounts/", body)

    assert_error(response, 400, code, field=field)
    assert ChannelAccount.objects.count() == 2


def test_a_second_account_with_the_same_external_id_is_a_409(world, client_for):
    response = client_for(world.admin).post("/api/v1/channel-accounts/",
                                            {"platform": "x", "name": "copy", "external_id": "brand-a"})

    assert_error(response, 409, "duplicate_external_id", field="external_id")


def test_only_an_unrestricted_admin_token_creates_channel_accounts(world, client_for):
    body = {"platform": "x", "name": "x"}

    assert_error(client_for(world.a.agent).post("/api/v1/channel-accounts/", body), 403, "restricted_user")
    assert_error(client_for(world.admin, ["read", "write"]).post("/api/v1/channel-accounts/", body), 403,
                 "scope_missing")


def test_changing_a_channel_account_keeps_omitted_secrets_and_drops_nulled_ones(world, client_for):
    ChannelAccount.objects.filter(pk=world.a.account.pk).update(credentials=TOKENS, webhook_secret=SECRET)
    client = client_for(world.a.agent)
    url = f"/api/v1/channel-accounts/{world.a.account.pk}/"

    renamed = client.patch(url, {"name": "@alpha_support", "enabled": False})
    cleared = client.patch(url, {"webhook_secret": None})

    assert renamed.json()["name"] == "@alpha_support"
    assert cleared.json()["has_credentials"] is True
    assert cleared.json()["has_webhook_secret"] is False
    account = ChannelAccount.objects.get(pk=world.a.account.pk)
    assert (account.credentials, account.webhook_secret, account.enabled) == (TOKENS, None, False)
    assert_error(client.patch(url, {"platform": "mastodon"}), 400, "invalid", field="platform")


def test_deleting_an_account_with_history_is_a_409_and_without_is_a_204(world, client_for):
    client = client_for(world.admin)
    empty = ChannelAccount.objects.create(platform="telegram", name="bot")

    assert_error(client.delete(f"/api/v1/channel-accounts/{world.a.account.pk}/"), 409, "channel_account_in_use")
    assert client.delete(f"/api/v1/channel-accounts/{empty.pk}/").status_code == 204
    assert not ChannelAccount.objects.filter(pk=empty.pk).exists()


def test_deliveries_are_listed_without_body_or_headers_and_filtered(world, client_for):
    WebhookDelivery.objects.filter(pk=world.b.delivery.pk).update(state="processed")
    client = client_for(world.admin)

    rows = client.get("/api/v1/webhook-deliveries/").json()["results"]

    assert {r["id"] for r in rows} == {world.a.delivery.pk, world.b.delivery.pk}
    assert all("headers" not in r and "body" not in r and r["body_size"] == 2 for r in rows)
    assert "do-not-show" not in str(rows)
    assert ids(client.get("/api/v1/webhook-deliveries/?state=failed")) == [world.a.delivery.pk]
    assert ids(client.get(f"/api/v1/webhook-deliveries/?channel_account_id={world.b.account.pk}")) == [
        world.b.delivery.pk]
    assert_error(client.get("/api/v1/webhook-deliveries/?state=lost"), 400, "invalid", field="state")


def test_replaying_a_delivery_puts_it_back_in_the_queue(world, client_for):
    response = client_for(world.a.agent).post(f"/api/v1/webhook-deliveries/{world.a.delivery.pk}/replay/")

    assert response.status_code == 202
    assert response.json()["state"] == "pending"
    assert WebhookDelivery.objects.get(pk=world.a.delivery.pk).state == "pending"


def test_replaying_an_accounts_failed_deliveries(world, client_for):
    client = client_for(world.a.agent)

    response = client.post("/api/v1/webhook-deliveries/replay/", {"channel_account_id": world.a.account.pk})

    assert response.status_code == 202
    assert response.json() == {"queued": 1}
    assert_error(client.post("/api/v1/webhook-deliveries/replay/", {"channel_account_id": world.b.account.pk}),
                 404, "not_found", field="channel_account_id")
    assert_error(client.post("/api/v1/webhook-deliveries/replay/", {"channel_account_id": "1"}), 400,
                 "invalid", field="channel_account_id")
    assert WebhookDelivery.objects.get(pk=world.b.delivery.pk).state == "failed"
