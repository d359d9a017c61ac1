"""Fault tests with a real Celery worker and the fake platform server: a rate limit with a reset time, a worker
killed in the middle of a sync, and a reply whose send timed out after the platform had posted it."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from channels.models import ChannelAccount
from channels.services import accounts_due_for_sync, reply_queue
from channels.tasks import sync_account, sync_due_accounts
from conversations.models import Conversation, Interaction

from .fakeplatform import FakeMastodon, FakeX
from .test_polled_platforms import X_NEWEST, X_NEXT_TOKEN, X_USER, view, x_account, x_expected

if TYPE_CHECKING:
    from .conftest import CeleryWorker, Crm
    from .fakeplatform import FakePlatform

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OTHER_X_USER = "783214"  # @Twitter: a second brand account, served the same recorded timeline


def mentions_of(user: str) -> str:
    return rf"/2/users/{user}/mentions"


def test_429_with_a_reset_time_pauses_only_that_account_until_the_reset(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    limited, other = x_account(fake_platform), x_account(fake_platform, OTHER_X_USER)
    reset = int(time.time()) + 15 * 60
    fake_platform.rule("GET", mentions_of(X_USER), answer=FakeX.rate_limited(reset))

    sync_due_accounts.delay()  # beat: one sync_account per due account
    worker.wait_for(lambda: ChannelAccount.objects.filter(pk=limited.pk, last_error_at__isnull=False).exists(),
                    what="the rate-limited sync to end")
    worker.wait_for(lambda: ChannelAccount.objects.filter(pk=other.pk, last_synced_at__isnull=False).exists(),
                    what="the other account's sync to end")

    limited.refresh_from_db()
    reset_at = dt.datetime.fromtimestamp(reset, dt.UTC)
    assert (limited.paused_until, limited.next_sync_at) == (reset_at, reset_at)
    assert limited.health == "degraded"
    assert limited.last_error.startswith("rate limited")
    assert not Interaction.objects.filter(channel_account=limited).exists()
    assert view(crm.interactions(other)) == x_expected()  # the other account got everything
    assert len(fake_platform.seen("GET", mentions_of(X_USER))) == 1  # asked once: no retry loop

    # Both accounts are due by their schedule again: beat enqueues only the one that is not paused ...
    ChannelAccount.objects.update(next_sync_at=None)
    worker.sync(other, via_beat=True)
    assert worker.wait_idle()
    assert len(fake_platform.seen("GET", mentions_of(X_USER))) == 1
    assert len(fake_platform.seen("GET", mentions_of(OTHER_X_USER))) == 3  # two pages, then since_id
    # ... and a sync_account enqueued for it anyway (an agent's "sync now") does not call X either.
    sync_account.delay(limited.pk)
    assert worker.wait_idle()
    assert len(fake_platform.seen("GET", mentions_of(X_USER))) == 1
    # It is due again at the reset time, not before.
    assert limited.pk not in accounts_due_for_sync()
    assert limited.pk in accounts_due_for_sync(now=reset_at + dt.timedelta(seconds=1))


def test_a_worker_killed_mid_sync_loses_and_doubles_nothing_after_restart(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    # A clean run of the same recorded timeline on another account: what the interrupted one must end with.
    clean = worker.sync(x_account(fake_platform, OTHER_X_USER))
    account = x_account(fake_platform)
    held = fake_platform.rule("GET", mentions_of(X_USER), when=lambda r: r.param("pagination_token") is not None,
                              times=1, hold=True)

    sync_account.delay(account.pk)
    assert held.arrived.wait(20), "the sync never asked for the second page"
    worker.kill()  # SIGKILL while the request for the second page is waiting for its answer
    held.release()

    # The first page was stored with its cursor; the dead run's lease is still on the account.
    account.refresh_from_db()
    assert Interaction.objects.filter(channel_account=account).count() == 5
    assert account.sync_cursor == {"newest_id": X_NEWEST, "pagination_token": X_NEXT_TOKEN}
    dead_lease = account.lease_token
    assert dead_lease
    assert account.lease_until > timezone.now()

    worker.start()
    # The message of the killed task stays unacknowledged in Redis (for its visibility timeout of an hour): a sync
    # enqueued again right away finds the lease taken and leaves the account alone ...
    sync_account.delay(account.pk)
    assert worker.wait_idle()
    account.refresh_from_db()
    assert account.lease_token == dead_lease
    assert len(fake_platform.seen("GET", mentions_of(X_USER))) == 2
    # ... and once the lease has expired, beat's next round resumes the run from the stored cursor.
    worker.wait_for(lambda: ChannelAccount.objects.filter(pk=account.pk, lease_until__lte=timezone.now()).exists(),
                    what="the dead run's lease to expire")
    account = worker.sync(account, via_beat=True)

    assert (account.health, account.last_error) == ("ok", "")
    assert view(crm.interactions(account)) == view(crm.interactions(clean)) == x_expected()
    assert crm.counts() == {"interactions": 20, "conversations": 14, "identities": 4, "customers": 4}
    assert {k: account.sync_cursor[k] for k in ("since_id", "dm_since_id")} == {
        k: clean.sync_cursor[k] for k in ("since_id", "dm_since_id")}
    requests = fake_platform.seen("GET", mentions_of(X_USER))
    assert [(r.param("since_id"), r.param("pagination_token")) for r in requests] == [
        (None, None), (None, X_NEXT_TOKEN),  # the run that was killed
        (None, X_NEXT_TOKEN),  # the resumed run: the second page again, the first one not fetched twice
    ]


def test_a_reply_whose_send_timed_out_is_retried_and_posted_once(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="mastodon", name="@mastodonpy_test", external_id=FakeMastodon.account_id,
        credentials={"access_token": FakeMastodon.token},
        config={"instance": "localhost:3000", "api_base_url": fake_platform.url, "http_timeout": 1},
    )
    worker.sync(account)
    conversation = Conversation.objects.get(channel_account=account)
    # Mastodon posts the first status, but its answer comes after the account's HTTP timeout of one second.
    fake_platform.rule("POST", "/api/v1/statuses", times=1, delay=3.0)

    reply = reply_queue(conversation=conversation, text="Danke, wir kümmern uns darum!")  # send_outbound on commit

    reply = worker.wait_for(
        lambda: Interaction.objects.filter(pk=reply.pk, delivery_state="sent").first(),
        what="the reply to be sent (a timeout, then a retry with backoff of at most 5 s)", timeout=30,
    )
    posts = fake_platform.seen("POST", "/api/v1/statuses")
    assert len(posts) == 2  # the timed-out attempt and the retry
    assert {p.headers["idempotency-key"] for p in posts} == {str(reply.idempotency_key)}
    [status] = fake_platform.mastodon.posted  # Mastodon answered the retry with the status of the first attempt
    assert reply.external_id == status["id"]
    assert (reply.send_attempts, reply.send_error) == (2, "")
    assert posts[0].json()["status"] == "@admin Danke, wir kümmern uns darum!"
    assert Interaction.objects.filter(channel_account=account, direction="out").count() == 1
