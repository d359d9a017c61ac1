"""The channel health page: per visible account its state, backlog and failed deliveries; replay by administrators
only (back to pending); other teams' accounts and deliveries out of view; escaping; a fixed number of queries."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.models import ChannelAccount, WebhookDelivery
from tests.api.conftest import World
from tests.console.test_customer import HOSTILE, IMG, SCRIPT, SVG

pytestmark = pytest.mark.django_db

ConsoleFor = Callable[[User], Client]


@pytest.fixture
def admin_user(db) -> User:
    """A member of the "Admins" group: sees every account and may change channel accounts (and so replay)."""
    user = User.objects.create_user("console-admin")
    user.groups.add(Group.objects.get(name="Admins"))
    return user


def deliveries(account: ChannelAccount, n: int, state: str = "pending", **fields: object) -> list[WebhookDelivery]:
    now = timezone.now()
    return WebhookDelivery.objects.bulk_create([
        WebhookDelivery(channel_account=account, received_at=now - dt.timedelta(minutes=i), body=b"{}", state=state,
                        headers={"x-hub-signature": "secret-value"}, **fields)
        for i in range(n)
    ])


def account_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-testid="health-account" data-account-id="(\d+)"', html)]


def test_the_page_shows_each_visible_account_with_backlog_and_failures(world: World, admin_user: User,
                                                                       console_for: ConsoleFor):
    paused = timezone.now() + dt.timedelta(minutes=15)
    ChannelAccount.objects.filter(pk=world.a.account.pk).update(
        health="degraded", last_synced_at=timezone.now(), last_error="429 Too Many Requests", paused_until=paused,
        last_error_at=timezone.now())
    deliveries(world.a.account, 3)
    WebhookDelivery.objects.filter(pk=world.a.delivery.pk).update(last_error="parse error: unexpected field")

    response = console_for(admin_user).get("/channels/health/")

    assert response.status_code == 200
    html = response.content.decode()
    assert set(account_ids(html)) == {world.a.account.pk, world.b.account.pk}
    section = html.split(f'data-account-id="{world.a.account.pk}"', 1)[1].split("</section>", 1)[0]
    assert "@alpha" in section
    assert "degraded" in section
    assert "429 Too Many Requests" in section
    assert "3 pending deliveries" in section
    assert f'data-testid="failed-delivery" data-delivery-id="{world.a.delivery.pk}"' in section
    assert "parse error: unexpected field" in section
    assert 'data-testid="delivery-replay"' in section
    assert 'data-testid="replay-all-failed"' in section
    assert "secret-value" not in html
    assert 'aria-current="page"' in html


def test_agents_see_their_teams_accounts_read_only(world: World, console_for: ConsoleFor):
    html = console_for(world.a.agent).get("/channels/health/").content.decode()
    assert account_ids(html) == [world.a.account.pk]
    assert f'data-delivery-id="{world.b.delivery.pk}"' not in html
    assert 'data-testid="delivery-replay"' not in html
    assert 'data-testid="replay-all-failed"' not in html
    assert "Read only" in html


def test_a_user_without_teams_sees_a_hint(db, console_for: ConsoleFor, world: World):
    loner = User.objects.create_user("loner")
    html = console_for(loner).get("/channels/health/").content.decode()
    assert not account_ids(html)
    assert 'data-testid="health-empty"' in html


def test_replay_puts_the_delivery_back_to_pending(world: World, admin_user: User, console_for: ConsoleFor,
                                                  django_capture_on_commit_callbacks):
    WebhookDelivery.objects.filter(pk=world.a.delivery.pk).update(attempts=3, last_error="boom")

    client = console_for(admin_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/channels/health/deliveries/{world.a.delivery.pk}/replay/")

    assert response.status_code == 302
    assert response["Location"] == "/channels/health/"
    delivery = WebhookDelivery.objects.get(pk=world.a.delivery.pk)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("pending", 0, "")
    assert callbacks  # the drain is scheduled after commit
    assert f"Delivery no. {delivery.pk} is queued again" in client.get("/channels/health/").content.decode()


def test_replay_all_failed_of_one_account(world: World, admin_user: User, console_for: ConsoleFor):
    deliveries(world.a.account, 4, state="failed")
    deliveries(world.a.account, 2, state="processed")

    response = console_for(admin_user).post(f"/channels/health/accounts/{world.a.account.pk}/replay/")

    assert response.status_code == 302
    states = WebhookDelivery.objects.filter(channel_account=world.a.account).values_list("state", flat=True)
    assert sorted(states) == ["pending"] * 5 + ["processed"] * 2
    assert WebhookDelivery.objects.get(pk=world.b.delivery.pk).state == "failed"


def test_replay_is_for_administrators_and_within_view(world: World, staff: User, console_for: ConsoleFor):
    for user in (world.a.agent, staff):
        client = console_for(user)
        assert client.post(f"/channels/health/deliveries/{world.a.delivery.pk}/replay/").status_code == 403
        assert client.post(f"/channels/health/accounts/{world.a.account.pk}/replay/").status_code == 403
    other = console_for(world.b.agent)
    assert other.post(f"/channels/health/deliveries/{world.a.delivery.pk}/replay/").status_code == 404
    assert other.post(f"/channels/health/accounts/{world.a.account.pk}/replay/").status_code == 404
    assert WebhookDelivery.objects.get(pk=world.a.delivery.pk).state == "failed"


def test_a_restricted_admin_replays_only_their_teams_deliveries(world: World, console_for: ConsoleFor):
    from django.contrib.auth.models import Permission

    world.b.agent.user_permissions.add(Permission.objects.get(codename="change_channelaccount"))
    client = console_for(User.objects.get(pk=world.b.agent.pk))
    assert client.post(f"/channels/health/deliveries/{world.a.delivery.pk}/replay/").status_code == 404
    assert client.post(f"/channels/health/deliveries/{world.b.delivery.pk}/replay/").status_code == 302
    assert WebhookDelivery.objects.get(pk=world.b.delivery.pk).state == "pending"


@pytest.mark.parametrize("url", ["/channels/health/deliveries/999999999/replay/",
                                 "/channels/health/deliveries/99999999999999999999999/replay/",
                                 "/channels/health/accounts/999999999/replay/",
                                 "/channels/health/accounts/99999999999999999999999/replay/"])
def test_unknown_ids_are_not_found(world: World, admin_user: User, console_for: ConsoleFor, url: str):
    response = console_for(admin_user).post(url)
    assert response.status_code == 404
    assert 'data-testid="error-message"' in response.content.decode()


def test_replay_is_not_a_get(world: World, admin_user: User, console_for: ConsoleFor):
    assert console_for(admin_user).get(
        f"/channels/health/deliveries/{world.a.delivery.pk}/replay/").status_code == 405


def test_hostile_text_is_escaped(world: World, admin_user: User, console_for: ConsoleFor):
    ChannelAccount.objects.filter(pk=world.a.account.pk).update(name=f"@alpha {SCRIPT}", last_error=HOSTILE)
    WebhookDelivery.objects.filter(pk=world.a.delivery.pk).update(last_error=f"{IMG} {SVG}")

    html = console_for(admin_user).get("/channels/health/").content.decode()

    for raw in (SCRIPT, IMG, SVG, "<iframe"):
        assert raw not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_the_page_costs_a_fixed_number_of_queries(world: World, admin_user: User, console_for: ConsoleFor):
    client = console_for(admin_user)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/channels/health/").status_code == 200
        return len(captured)

    small = count()
    for i in range(12):
        account = ChannelAccount.objects.create(platform="telegram", name=f"bot {i}", external_id=f"bot-{i}")
        deliveries(account, 5)
        deliveries(account, 25, state="failed", last_error="bad signature")
    deliveries(world.a.account, 30, state="processed")
    large = count()
    assert large == small <= 8
    html = client.get("/channels/health/").content.decode()
    assert html.count('data-testid="failed-delivery"') == 2 + 12 * 20
