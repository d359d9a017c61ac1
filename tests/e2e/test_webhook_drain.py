"""End to end: webhooks posted to the web app are stored, and the worker drains them into interactions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from django.test import Client

from channels.models import ChannelAccount, WebhookDelivery

from .fakeplatform import RECORDED

if TYPE_CHECKING:
    from pytest_django.fixtures import SettingsWrapper

    from .conftest import CeleryWorker, Crm

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET = "telegram-webhook-secret-token"
UPDATES = ("text", "photo", "voice")  # recorded Telegram Updates (nutgram), three private chats


def test_a_burst_of_telegram_webhooks_is_stored_at_once_and_drained_by_the_worker(
        worker: CeleryWorker, crm: Crm, settings: SettingsWrapper) -> None:
    # The web process schedules one drain per window through the cache: the broker's database here, so that another
    # test run's cache entries on this machine never delay it.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": worker.broker.url}}
    account = ChannelAccount.objects.create(platform="telegram", name="@support_bot", external_id="123456",
                                            webhook_secret={"secret_token": SECRET})
    client = Client()

    answers = [
        client.post(f"/webhooks/telegram/{account.pk}/", data=(RECORDED / f"nutgram/telegram_bot_api/{name}.json")
                    .read_bytes(), content_type="application/json", HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET)
        for name in UPDATES
    ]

    assert [a.status_code for a in answers] == [200, 200, 200]
    delivered = [json.loads(a.content)["received"] for a in answers]
    assert WebhookDelivery.objects.filter(pk__in=delivered).count() == 3  # stored before any parsing
    worker.wait_for(
        lambda: not WebhookDelivery.objects.filter(pk__in=delivered).exclude(state="processed").exists(),
        what="the worker to drain the three deliveries",
    )
    stored = crm.interactions(account)
    assert {external_id: (s.kind, s.thread_key, s.identity) for external_id, s in stored.items()} == {
        "12345678:123456": ("dm", "chat:12345678", ("telegram", "", "12345678")),
        "11111111:456901": ("dm", "chat:11111111", ("telegram", "", "11111111")),
        "12345:123456": ("dm", "chat:12345", ("telegram", "", "12345")),
    }
    assert all(s.customer_id is not None for s in stored.values())
    assert crm.counts() == {"interactions": 3, "conversations": 3, "identities": 3, "customers": 3}

