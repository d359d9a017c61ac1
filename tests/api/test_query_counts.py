"""Every list costs the same number of queries for 2 rows as for 20 (no N+1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.models import Team
from channels.ingest import ingest
from channels.models import ChannelAccount, WebhookDelivery
from contacts.models import ContactPoint, SocialIdentity
from conversations.models import ConversationNote, ConversationTag
from tests.api.conftest import World
from tests.channels.factories import post

pytestmark = pytest.mark.django_db

# The most any list may cost: authentication (token and user), the user's permissions and teams, the page,
# and one query per prefetched relation.
CEILING = 9


def _grow(world: World, n: int) -> None:
    """Team a's side grows to `n` customers (each with a contact point), conversations (each tagged),
    interactions, notes, deliveries and channel accounts."""
    start = SocialIdentity.objects.count()
    ingest(world.a.account, [post(f"grow-{n}-{i}", who=100 + start + i, minutes=i) for i in range(n - 1)])
    for identity in SocialIdentity.objects.filter(external_id__startswith="u1")[:n]:
        ContactPoint.objects.get_or_create(customer_id=identity.customer_id, kind="email",
                                           normalized=f"c{identity.pk}@example.com",
                                           defaults={"value": f"c{identity.pk}@example.com"})
    for conversation in world.a.account.conversations.all():
        ConversationTag.objects.get_or_create(conversation=conversation, name="grown")
    ConversationNote.objects.bulk_create([ConversationNote(conversation=world.a.conversation, text=f"n{i}")
                                          for i in range(n)])
    WebhookDelivery.objects.bulk_create([WebhookDelivery(channel_account=world.a.account, received_at=world.a.
                                                         delivery.received_at, body=b"{}") for _ in range(n)])
    team = Team.objects.get(name="Team alpha")
    team.channel_accounts.add(*ChannelAccount.objects.bulk_create(
        [ChannelAccount(platform="telegram", name=f"bot {n} {i}", external_id=f"bot-{n}-{i}") for i in range(n)]
    ))


LISTS: list[tuple[str, Callable[[World], str]]] = [
    ("customers", lambda w: "/api/v1/customers/"),
    ("customers-search", lambda w: "/api/v1/customers/?q=user"),
    ("identities", lambda w: "/api/v1/social-identities/"),
    ("conversations", lambda w: "/api/v1/conversations/"),
    ("interactions", lambda w: "/api/v1/interactions/"),
    ("timeline", lambda w: f"/api/v1/customers/{w.a.customer.pk}/timeline/"),
    ("notes", lambda w: f"/api/v1/conversations/{w.a.conversation.pk}/notes/"),
    ("channel-accounts", lambda w: "/api/v1/channel-accounts/"),
    ("deliveries", lambda w: "/api/v1/webhook-deliveries/"),
]


def _count(client: APIClient, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries), len(response.json()["results"])


@pytest.mark.parametrize(("name", "url"), LISTS, ids=[name for name, _ in LISTS])
def test_a_list_costs_the_same_queries_for_2_and_20_rows(world, client_for, django_assert_max_num_queries,
                                                         name, url):
    client = client_for(world.a.agent)
    client.get(url(world))  # the first request of a token records its use: one UPDATE more
    if name == "timeline":
        ingest(world.a.account, [post(f"again-{i}", who=1, minutes=20 + i) for i in range(1)])
    else:
        _grow(world, 2)
    small, small_rows = _count(client, url(world))

    if name == "timeline":
        ingest(world.a.account, [post(f"more-{i}", who=1, minutes=40 + i) for i in range(18)])
    else:
        _grow(world, 20)
    with django_assert_max_num_queries(min(small, CEILING)):
        response = client.get(url(world))

    assert small <= CEILING
    assert small_rows >= 2
    assert len(response.json()["results"]) >= 20
