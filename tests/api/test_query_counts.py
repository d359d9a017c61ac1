"""Every list costs the same number of queries for 2 rows as for 20, and every detail and action the same for a
customer or conversation with 2 related rows as with 20 (no N+1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from access.models import Team
from channels.ingest import ingest
from channels.models import ChannelAccount, WebhookDelivery
from contacts.models import AuditEvent, ContactPoint, DuplicateSuggestion, SocialIdentity
from contacts.search import customers_search_text_refresh
from conversations.models import Conversation, ConversationNote, ConversationTag
from hooks.models import OutboundEvent, WebhookSubscription
from tests.api.conftest import World
from tests.channels.factories import post

pytestmark = pytest.mark.django_db

# The most any list may cost: authentication (token and user), the user's permissions and teams, the page,
# and one query per prefetched relation.
CEILING = 9


def _grow(world: World, n: int) -> None:
    """Team a's side grows by `n` customers (each with a contact point), conversations (each tagged),
    interactions, notes, deliveries, channel accounts, audit events and duplicate suggestions; and `n` webhook
    subscriptions and outbound deliveries."""
    start = SocialIdentity.objects.count()
    ingest(world.a.account, [post(f"grow-{n}-{i}", who=100 + start + i, minutes=i) for i in range(n)])
    grown = SocialIdentity.objects.filter(external_id__startswith="u1")[:n]
    for identity in grown:
        ContactPoint.objects.get_or_create(customer_id=identity.customer_id, kind="email",
                                           normalized=f"c{identity.pk}@example.com",
                                           defaults={"value": f"c{identity.pk}@example.com"})
    customers_search_text_refresh(customer_ids=[identity.customer_id for identity in grown])
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
    customers = list(SocialIdentity.objects.filter(external_id__startswith="u1").values_list("customer_id", flat=True))
    AuditEvent.objects.bulk_create([AuditEvent(kind="link", customer_id=customers[i % len(customers)],
                                               actor_label="test", moved={}) for i in range(n)])
    start = DuplicateSuggestion.objects.count()
    DuplicateSuggestion.objects.bulk_create([
        DuplicateSuggestion(customer_low=world.a.customer.pk, customer_high=high, score=10.0 + i, model_version="t",
                            explanation=[{"field": "name", "level": "exact", "bits": 4.0}])
        for i, high in enumerate(sorted(set(customers) - {world.a.customer.pk})[start:start + n])
    ])
    subscription = WebhookSubscription.objects.get_or_create(
        name="billing", defaults={"url": "https://hooks.example.com/in", "event_types": ["customer.merged"],
                                  "secret": {"key": "0123456789abcdef0123"}})[0]
    WebhookSubscription.objects.bulk_create([
        WebhookSubscription(name=f"s{n}-{i}", url="https://hooks.example.com/in", event_types=["ping"],
                            secret={"key": "0123456789abcdef0123"}) for i in range(n)
    ])
    OutboundEvent.objects.bulk_create([OutboundEvent(subscription=subscription, event_type="customer.merged",
                                                     payload={"i": i}, status_codes=[500, 200]) for i in range(n)])


def _subscription_id(world: World) -> int:
    return WebhookSubscription.objects.get(name="billing").pk


LISTS: list[tuple[str, Callable[[World], str]]] = [
    ("customers", lambda w: "/api/v1/customers/"),
    ("customers-search", lambda w: "/api/v1/customers/?q=user"),
    ("customers-search-email", lambda w: "/api/v1/customers/?q=example.com"),
    ("customers-next-page", lambda w: "/api/v1/customers/?page_size=1"),
    ("identities", lambda w: "/api/v1/social-identities/"),
    ("conversations", lambda w: "/api/v1/conversations/"),
    ("interactions", lambda w: "/api/v1/interactions/"),
    ("timeline", lambda w: f"/api/v1/customers/{w.a.customer.pk}/timeline/"),
    ("timeline-deep", lambda w: f"/api/v1/customers/{w.a.customer.pk}/timeline/?page_size=1"),
    ("notes", lambda w: f"/api/v1/conversations/{w.a.conversation.pk}/notes/"),
    ("channel-accounts", lambda w: "/api/v1/channel-accounts/"),
    ("deliveries", lambda w: "/api/v1/webhook-deliveries/"),
    ("audit-events", lambda w: "/api/v1/audit-events/"),
    ("duplicate-suggestions", lambda w: "/api/v1/duplicate-suggestions/"),
    ("webhook-subscriptions", lambda w: "/api/v1/webhook-subscriptions/"),
    ("webhook-subscription-deliveries",
     lambda w: f"/api/v1/webhook-subscriptions/{_subscription_id(w)}/deliveries/"),
]
# Lists whose measured page is the one behind the first page's `next` link (a cursor taken from a real page).
FOLLOW_NEXT = {"customers-next-page", "timeline-deep"}


def _count(client: APIClient, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries), len(response.json()["results"])


def _next(client: APIClient, url: str) -> str:
    """The `next` link of the page at `url` (the walk to a deeper page)."""
    link = client.get(url).json()["next"]
    assert link, url
    return link


@pytest.mark.parametrize(("name", "url"), LISTS, ids=[name for name, _ in LISTS])
def test_a_list_costs_the_same_queries_for_2_and_20_rows(world, client_for, django_assert_max_num_queries,
                                                         name, url):
    # Webhook subscriptions are for unrestricted users; everything else is read as team alpha's agent.
    client = client_for(world.admin if name.startswith("webhook-subscription") else world.a.agent)
    timeline = name.startswith("timeline")
    client.get("/api/v1/channel-accounts/")  # the first request of a token records its use: one UPDATE more
    if timeline:
        ingest(world.a.account, [post(f"again-{i}", who=1, minutes=20 + i) for i in range(2)])
    else:
        _grow(world, 2)
    first = _next(client, url(world)) if name in FOLLOW_NEXT else url(world)
    small, small_rows = _count(client, first)

    if timeline:
        ingest(world.a.account, [post(f"more-{i}", who=1, minutes=40 + i) for i in range(18)])
    else:
        _grow(world, 20)
    if name in FOLLOW_NEXT:  # 20 pages deep
        page = url(world)
        for _ in range(20):
            page = _next(client, page)
        with django_assert_max_num_queries(min(small, CEILING)):
            response = client.get(page)
        assert len(response.json()["results"]) == 1
    else:
        page = url(world)
        with django_assert_max_num_queries(min(small, CEILING)):
            response = client.get(page)
        assert len(response.json()["results"]) >= 20

    assert small <= CEILING
    assert small_rows >= (1 if name in FOLLOW_NEXT else 2)


# ---------------------------------------------------------------------------------------------- details, actions

# The most a detail view or an action may cost: authentication, permissions and teams, the object's visibility,
# the rows it reads or writes, and the answer's prefetched relations.
DETAIL_CEILING = 30
_authors = itertools.count(5000)  # authors of the identities made for these tests


def _customer_with_identities(world: World, n: int, tag: str) -> int:
    """A customer of team alpha's account with `n` identities (each with a conversation), `n` contact points."""
    authors = [next(_authors) for _ in range(n)]
    ingest(world.a.account, [post(f"{tag}-{i}", who=who, minutes=i) for i, who in enumerate(authors)])
    identities = SocialIdentity.objects.filter(external_id__in=[f"u{who}" for who in authors])
    customer_id = identities.order_by("pk").first().customer_id
    identities.update(customer_id=customer_id)
    ContactPoint.objects.bulk_create([ContactPoint(customer_id=customer_id, kind="email", value=f"{tag}{i}@example.org",
                                                   normalized=f"{tag}{i}@example.org") for i in range(n)])
    return customer_id


def _enrich(world: World, n: int) -> None:
    """Team alpha's customer and conversation get `n` more identities, contact points, tags and notes."""
    extra = _customer_with_identities(world, n, f"enrich-{n}")
    SocialIdentity.objects.filter(customer_id=extra).update(customer_id=world.a.customer.pk)
    ContactPoint.objects.filter(customer_id=extra).update(customer_id=world.a.customer.pk)
    ConversationTag.objects.bulk_create([ConversationTag(conversation=world.a.conversation, name=f"t{n}-{i}")
                                         for i in range(n)])
    ConversationNote.objects.bulk_create([ConversationNote(conversation=world.a.conversation, text=f"n{i}")
                                          for i in range(n)])


def _merge_source(world: World, n: int) -> dict:
    return {"source": _customer_with_identities(world, n, f"source-{n}"), "reason": "the same person"}


Call = tuple[str, str, Callable[[World, int], dict | None]]
DETAILS: dict[str, Call] = {
    "customer": ("get", "customers/{customer}/", lambda w, n: None),
    "identity": ("get", "social-identities/{identity}/", lambda w, n: None),
    "conversation": ("get", "conversations/{conversation}/", lambda w, n: None),
    "interaction": ("get", "interactions/{interaction}/", lambda w, n: None),
    "merge-preview": ("get", "customers/{customer}/merge-preview/",
                      lambda w, n: {"source": _customer_with_identities(w, n, f"preview-{n}")}),
    "export": ("get", "customers/{customer}/export/", lambda w, n: None),
    "update": ("patch", "customers/{customer}/", lambda w, n: {"notes": f"called {n} times"}),
    "merge": ("post", "customers/{customer}/merge/", _merge_source),
    "assign": ("post", "conversations/{conversation}/assign/", lambda w, n: {"assignee_id": w.a.agent.pk}),
    "status": ("post", "conversations/{conversation}/status/", lambda w, n: {"status": "resolved"}),
    "add-tag": ("post", "conversations/{conversation}/tags/", lambda w, n: {"tag": f"new-{n}"}),
    "add-note": ("post", "conversations/{conversation}/notes/", lambda w, n: {"text": f"note {n}"}),
    "reply": ("post", "conversations/{conversation}/replies/", lambda w, n: {"text": f"Wir helfen gern ({n})"}),
}


def _call(client: APIClient, world: World, method: str, path: str, data: dict | None) -> tuple[int, object]:
    url = "/api/v1/" + path.format(customer=world.a.customer.pk, identity=world.a.identity.pk,
                                   conversation=world.a.conversation.pk, interaction=world.a.interaction.pk)
    with CaptureQueriesContext(connection) as queries:
        response = getattr(client, method)(url, data, format=None if method == "get" else "json")
    assert response.status_code in (200, 201), response.content
    return len(queries), response


@pytest.mark.parametrize("name", list(DETAILS))
def test_a_detail_or_action_costs_the_same_queries_for_2_and_20_related_rows(world, client_for, name):
    # Export is for unrestricted users; everything else is called as team alpha's agent.
    client = client_for(world.admin if name == "export" else world.a.agent)
    method, path, data = DETAILS[name]
    client.get("/api/v1/channel-accounts/")  # the first request of a token records its use: one UPDATE more
    _enrich(world, 2)
    small, _ = _call(client, world, method, path, data(world, 2))
    Conversation.objects.filter(pk=world.a.conversation.pk).update(status="open", assignee=None)

    _enrich(world, 20)
    large, response = _call(client, world, method, path, data(world, 20))

    assert small <= DETAIL_CEILING
    assert large <= small, f"{name}: {small} queries with 2 related rows, {large} with 20"
    if name == "customer":
        body = response.json()
        assert len(body["identities"]) >= 22
        assert len(body["contact_points"]) >= 22
