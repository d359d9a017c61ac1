"""The channel admin: secrets are write-only and validated, health and backlog are shown, replays work."""

from __future__ import annotations

import pytest
from django.test import Client

from channels.models import ChannelAccount, WebhookDelivery

SECRET = "fb-app-secret-which-must-never-be-shown"


@pytest.fixture
def admin_client_logged_in(admin_user, client: Client) -> Client:
    client.force_login(admin_user)
    return client


def _form(**overrides: str) -> dict[str, str]:
    return {"platform": "facebook", "name": "Brand page", "external_id": "106789", "config": "{}",
            "enabled": "on", "sync_interval": "60", "credentials": "", "webhook_secret": "", **overrides}


@pytest.mark.django_db
def test_secrets_are_stored_encrypted_and_never_shown_again(admin_client_logged_in: Client) -> None:
    response = admin_client_logged_in.post("/admin/channels/channelaccount/add/", _form(
        credentials='{"page_access_token": "EAAB-token"}',
        webhook_secret=f'{{"app_secret": "{SECRET}", "verify_token": "verify-me"}}',
    ))
    assert response.status_code == 302, response.content.decode()[:2000]
    account = ChannelAccount.objects.get()
    assert account.webhook_secret == {"app_secret": SECRET, "verify_token": "verify-me"}
    assert account.credentials == {"page_access_token": "EAAB-token"}

    page = admin_client_logged_in.get(f"/admin/channels/channelaccount/{account.pk}/change/").content.decode()
    listing = admin_client_logged_in.get("/admin/channels/channelaccount/").content.decode()
    for html in (page, listing):
        assert SECRET not in html
        assert "EAAB-token" not in html
    assert "credentials set, webhook secret set" in listing

    # Saving without touching the secrets keeps them.
    admin_client_logged_in.post(f"/admin/channels/channelaccount/{account.pk}/change/", _form(name="Renamed"))
    account.refresh_from_db()
    assert account.name == "Renamed"
    assert account.webhook_secret["app_secret"] == SECRET


@pytest.mark.django_db
@pytest.mark.parametrize(("secret", "message"), [
    ('"just-a-string"', "must be a JSON object"),
    ('{"app_secret": "only-half"}', "needs verify_token"),
])
def test_a_webhook_secret_of_the_wrong_shape_is_refused(admin_client_logged_in: Client, secret: str,
                                                        message: str) -> None:
    response = admin_client_logged_in.post("/admin/channels/channelaccount/add/", _form(webhook_secret=secret))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ChannelAccount.objects.exists()


@pytest.mark.django_db
def test_health_listing_shows_backlog_and_failed_deliveries_and_replays_them(admin_client_logged_in: Client) -> None:
    account = ChannelAccount.objects.create(platform="telegram", name="Support bot", external_id="bot",
                                            last_error="telegram: HTTP 401: Unauthorized")
    WebhookDelivery.objects.bulk_create(
        [WebhookDelivery(channel_account=account, received_at="2026-11-26T10:00:00Z", body=b"{}", state=state)
         for state in ("pending", "pending", "failed")]
    )

    listing = admin_client_logged_in.get("/admin/channels/channelaccount/").content.decode()
    assert '<td class="field-backlog">2</td>' in listing
    assert '<td class="field-failed_deliveries">1</td>' in listing
    assert "HTTP 401: Unauthorized" in listing

    admin_client_logged_in.post("/admin/channels/channelaccount/", {
        "action": "replay_failed", "_selected_action": [account.pk],
    })
    assert not WebhookDelivery.objects.filter(state="failed").exists()
