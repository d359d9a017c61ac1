"""Every endpoint: success for its own team, 401 without credentials, 403 without its scope, and 404 for
another team's objects. A second team's token never sees the first team's objects in any list, search,
detail or action."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from django.http import HttpResponse
from rest_framework.test import APIClient

from access.models import Scope
from channels.models import ChannelAccount, WebhookDelivery
from contacts.models import Customer
from conversations.models import Conversation, ConversationTag, Interaction
from tests.api.conftest import World, assert_error

pytestmark = pytest.mark.django_db


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # placeholders filled from one team's side of the world
    scope: str
    body: dict | None = None
    unrestricted: bool = False  # creates something no team sees yet: only for users who see everything

    def url(self, world: World, side: str) -> str:
        s = getattr(world, side)
        reply = Interaction.objects.filter(channel_account=s.account, direction="out").first()
        return "/api/v1/" + self.path.format(
            customer=s.customer.pk, identity=s.identity.pk, conversation=s.conversation.pk,
            interaction=s.interaction.pk, account=s.account.pk, delivery=s.delivery.pk,
            reply=reply.pk if reply else 0,
        )

    def body_for(self, world: World, side: str) -> dict | None:
        if self.body is None:
            return None
        account_id = getattr(world, side).account.pk
        return {k: account_id if v == "{account}" else v for k, v in self.body.items()}


ENDPOINTS = [
    Endpoint("customers-list", "get", "customers/", "read"),
    Endpoint("customers-create", "post", "customers/", "write", {"display_name": "Neu"}, unrestricted=True),
    Endpoint("customer-detail", "get", "customers/{customer}/", "read"),
    Endpoint("customer-update", "patch", "customers/{customer}/", "write", {"notes": "geändert"}),
    Endpoint("customer-timeline", "get", "customers/{customer}/timeline/", "read"),
    Endpoint("identities-list", "get", "social-identities/", "read"),
    Endpoint("identity-detail", "get", "social-identities/{identity}/", "read"),
    Endpoint("conversations-list", "get", "conversations/", "read"),
    Endpoint("conversation-detail", "get", "conversations/{conversation}/", "read"),
    Endpoint("conversation-assign", "post", "conversations/{conversation}/assign/", "write", {"assignee_id": None}),
    Endpoint("conversation-status", "post", "conversations/{conversation}/status/", "write", {"status": "pending"}),
    Endpoint("conversation-notes", "get", "conversations/{conversation}/notes/", "read"),
    Endpoint("conversation-note-add", "post", "conversations/{conversation}/notes/", "write", {"text": "Notiz"}),
    Endpoint("conversation-tag-add", "post", "conversations/{conversation}/tags/", "write", {"tag": "neu"}),
    Endpoint("conversation-tag-remove", "delete", "conversations/{conversation}/tags/alt/", "write"),
    Endpoint("conversation-reply", "post", "conversations/{conversation}/replies/", "write", {"text": "Hallo"}),
    Endpoint("interactions-list", "get", "interactions/", "read"),
    Endpoint("interaction-detail", "get", "interactions/{interaction}/", "read"),
    Endpoint("reply-retry", "post", "interactions/{reply}/retry/", "write"),
    Endpoint("channel-accounts-list", "get", "channel-accounts/", "read"),
    Endpoint("channel-accounts-create", "post", "channel-accounts/", "admin", {"platform": "x", "name": "n"},
             unrestricted=True),
    Endpoint("channel-account-detail", "get", "channel-accounts/{account}/", "read"),
    Endpoint("channel-account-update", "patch", "channel-accounts/{account}/", "admin", {"name": "umbenannt"}),
    Endpoint("channel-account-delete", "delete", "channel-accounts/{account}/", "admin"),
    Endpoint("deliveries-list", "get", "webhook-deliveries/", "read"),
    Endpoint("delivery-detail", "get", "webhook-deliveries/{delivery}/", "read"),
    Endpoint("delivery-replay", "post", "webhook-deliveries/{delivery}/replay/", "admin"),
    Endpoint("deliveries-replay-account", "post", "webhook-deliveries/replay/", "admin",
             {"channel_account_id": "{account}"}),
]
BY_NAME = {e.name: e for e in ENDPOINTS}
LISTS = [e for e in ENDPOINTS if e.method == "get" and "{" not in e.path]
OBJECT_ENDPOINTS = [e for e in ENDPOINTS if "{" in e.path or e.body and "{account}" in str(e.body)]


@pytest.fixture
def full_world(world: World) -> World:
    """The world plus what the actions need on both sides: a tag, a failed reply, an account without history."""
    for side in (world.a, world.b):
        ConversationTag.objects.create(conversation=side.conversation, name="alt")
        Interaction.objects.create(
            channel_account=side.account, conversation=side.conversation, identity=side.identity, direction="out",
            kind="reply", external_id=f"queued:{side.account.pk}", occurred_at=side.interaction.occurred_at,
            received_at=side.interaction.received_at, delivery_state="failed", idempotency_key=uuid.uuid4(),
        )
    return world


def call(client: APIClient, endpoint: Endpoint, world: World, side: str) -> HttpResponse:
    return getattr(client, endpoint.method)(endpoint.url(world, side), endpoint.body_for(world, side))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_refuses_a_request_without_credentials(full_world, anonymous, endpoint):
    assert_error(call(anonymous, endpoint, full_world, "a"), 401, "not_authenticated")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_refuses_a_token_without_its_scope(full_world, client_for, endpoint):
    others = [s for s in Scope.values if s != endpoint.scope]

    response = call(client_for(full_world.admin, others), endpoint, full_world, "a")

    body = assert_error(response, 403, "scope_missing")
    assert endpoint.scope in body["detail"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_serves_its_own_team(full_world, client_for, endpoint):
    _prepare_success(full_world, endpoint)
    user = full_world.admin if endpoint.unrestricted else full_world.a.agent

    response = call(client_for(user), endpoint, full_world, "a")

    assert 200 <= response.status_code < 300, response.content


def _prepare_success(world: World, endpoint: Endpoint) -> None:
    if endpoint.name == "channel-account-delete":  # only an account without history can be deleted
        Interaction.objects.filter(channel_account=world.a.account).delete()
        Conversation.objects.filter(channel_account=world.a.account).delete()


@pytest.mark.parametrize("endpoint", [e for e in OBJECT_ENDPOINTS if not e.unrestricted], ids=lambda e: e.name)
def test_another_teams_object_is_a_404_in_every_detail_and_action(full_world, client_for, endpoint):
    before = _state(full_world)

    response = call(client_for(full_world.b.agent), endpoint, full_world, "a")

    assert_error(response, 404, "not_found")
    assert _state(full_world) == before


def _state(world: World) -> tuple:
    """What a refused action must leave alone on team a's side."""
    conversation = Conversation.objects.get(pk=world.a.conversation.pk)
    return (
        Customer.objects.filter(pk=world.a.customer.pk).values_list("notes", "updated_at").get(),
        (conversation.status, conversation.assignee_id, conversation.updated_at,
         sorted(conversation.tags.values_list("name", flat=True)), conversation.notes.count()),
        list(Interaction.objects.filter(channel_account=world.a.account).values_list("id", "delivery_state")),
        ChannelAccount.objects.filter(pk=world.a.account.pk).values_list("name", "updated_at").first(),
        list(WebhookDelivery.objects.filter(channel_account=world.a.account).values_list("id", "state")),
    )


@pytest.mark.parametrize("endpoint", LISTS, ids=lambda e: e.name)
def test_a_second_teams_lists_never_hold_the_first_teams_objects(full_world, client_for, endpoint):
    a_ids = _ids_of_side(full_world, "a", endpoint.name)
    b_ids = _ids_of_side(full_world, "b", endpoint.name)
    client = client_for(full_world.b.agent)

    listed = {row["id"] for row in client.get(endpoint.url(full_world, "b")).json()["results"]}
    by_filter = set()
    for param, value in [("channel_account_id", full_world.a.account.pk), ("customer_id", full_world.a.customer.pk),
                         ("conversation_id", full_world.a.conversation.pk), ("identity_id", full_world.a.identity.pk),
                         ("q", "alpha"), ("q", "@user1"), ("q", "alpha@example.com"), ("q", "K-alpha"),
                         ("external_id", "u1"), ("handle", "user1")]:
        response = client.get(endpoint.url(full_world, "b"), {param: value})
        if response.status_code == 200:
            by_filter |= {row["id"] for row in response.json()["results"]}

    assert b_ids <= listed
    assert not listed & a_ids
    assert not by_filter & a_ids


def _ids_of_side(world: World, side: str, name: str) -> set[int]:
    s = getattr(world, side)
    return {
        "customers-list": {s.customer.pk},
        "identities-list": {s.identity.pk},
        "conversations-list": {s.conversation.pk},
        "interactions-list": set(Interaction.objects.filter(channel_account=s.account).values_list("pk", flat=True)),
        "channel-accounts-list": {s.account.pk},
        "deliveries-list": {s.delivery.pk},
    }[name]


def test_a_restricted_user_cannot_create_what_it_would_not_see(full_world, client_for):
    for endpoint in (BY_NAME["customers-create"], BY_NAME["channel-accounts-create"]):
        assert_error(call(client_for(full_world.a.agent), endpoint, full_world, "a"), 403, "restricted_user")


def test_a_user_in_no_team_sees_nothing(full_world, client_for, django_user_model):
    loner = django_user_model.objects.create_user("loner")
    client = client_for(loner)

    for endpoint in LISTS:
        assert client.get(endpoint.url(full_world, "a")).json()["results"] == [], endpoint.name
