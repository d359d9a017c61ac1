import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from channels import services, tasks
from channels.adapters.base import BaseAdapter, FetchResult, RateLimited, TransientError
from channels.models import ChannelAccount, WebhookDelivery
from contacts.models import SocialIdentity
from conversations.models import Interaction

from .factories import post

pytestmark = pytest.mark.django_db
RECORDED = Path(__file__).resolve().parents[2] / "channels" / "recorded"


@pytest.fixture
def demo(db) -> ChannelAccount:
    return ChannelAccount.objects.create(platform="demo", name="Demo", external_id="demo")


def test_demo_sync_stores_real_payloads_and_advances_cursor(demo):
    outcome = tasks.sync_account(demo.pk)

    demo.refresh_from_db()
    assert outcome["error"] == ""
    assert demo.sync_cursor == {"position": outcome["pages"]}
    assert outcome["inserted"] == Interaction.objects.filter(channel_account=demo).count() > 20
    assert set(SocialIdentity.objects.values_list("platform", flat=True)) == {"x", "facebook", "telegram", "mastodon"}
    assert (demo.health, demo.lease_token, demo.lease_until) == ("ok", "", None)
    assert demo.next_sync_at > timezone.now()


def test_demo_replayed_from_the_start_stores_nothing_twice(demo):
    tasks.sync_account(demo.pk)
    before = Interaction.objects.count()
    ChannelAccount.objects.filter(pk=demo.pk).update(sync_cursor={})

    outcome = tasks.sync_account(demo.pk)

    assert outcome["inserted"] == 0
    assert Interaction.objects.count() == before


def test_sync_skips_when_another_run_holds_the_lease(demo):
    assert services.account_claim_lease(account_id=demo.pk) is not None

    outcome = services.account_sync(account_id=demo.pk)

    assert outcome.skipped.startswith("lease held")
    assert Interaction.objects.count() == 0


class _FakeAdapter(BaseAdapter):
    platform = "x"
    pollable = True
    pages: list = []

    def fetch(self, cursor):
        item = self.pages.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def fake(monkeypatch, account):
    monkeypatch.setattr(services, "adapter_for", lambda account: _FakeAdapter())
    _FakeAdapter.pages = []
    return _FakeAdapter


def test_rate_limit_pauses_account_until_reset_and_keeps_stored_pages(fake, account):
    reset = timezone.now() + dt.timedelta(minutes=15)
    fake.pages = [FetchResult([post("a1")], {"since_id": "a1"}, has_more=True), RateLimited("429", reset_at=reset)]

    outcome = services.account_sync(account_id=account.pk)

    account.refresh_from_db()
    assert outcome.inserted == 1
    assert account.sync_cursor == {"since_id": "a1"}
    assert account.paused_until == reset
    assert account.next_sync_at == reset
    assert "rate limited" in account.last_error
    assert services.accounts_due_for_sync() == []  # paused: beat does not enqueue it


def test_transient_error_releases_lease_and_propagates_for_retry(fake, account):
    fake.pages = [TransientError("HTTP 503")]

    with pytest.raises(TransientError):
        services.account_sync(account_id=account.pk)

    account.refresh_from_db()
    assert account.lease_token == ""
    assert account.health == "degraded"
    assert account.sync_cursor == {}


def test_due_accounts_are_claimed_once(demo):
    assert services.accounts_due_for_sync() == [demo.pk]
    assert services.accounts_due_for_sync() == []


def telegram_account() -> ChannelAccount:
    return ChannelAccount.objects.create(platform="telegram", name="@TelekomHilfeBot", external_id="bot-1")


def test_pending_deliveries_are_ingested_and_a_bad_one_fails_with_reason(db):
    bot = telegram_account()
    good = (RECORDED / "nutgram" / "telegram_bot_api" / "text.json").read_bytes()
    now = timezone.now()
    ok = WebhookDelivery.objects.create(channel_account=bot, received_at=now, headers={}, body=good)
    bad = WebhookDelivery.objects.create(channel_account=bot, received_at=now, headers={}, body=b'{"update_id": ')

    for _ in range(services.MAX_DELIVERY_ATTEMPTS):
        tasks.process_deliveries()

    ok.refresh_from_db()
    bad.refresh_from_db()
    assert ok.state == "processed"
    assert Interaction.objects.filter(channel_account=bot).count() == 1
    assert bad.state == "failed"
    assert bad.attempts == services.MAX_DELIVERY_ATTEMPTS
    assert "not valid JSON" in bad.last_error or "Expecting" in bad.last_error
    assert bytes(bad.body) == b'{"update_id": '  # the raw body is kept for a replay
