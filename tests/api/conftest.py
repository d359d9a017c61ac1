"""Fixtures of the API tests: two teams that each see one channel account, and tokens to call as them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from rest_framework.test import APIClient

from access.models import Scope, Team
from access.services import api_token_create
from channels.ingest import ingest
from channels.models import ChannelAccount, WebhookDelivery
from contacts.models import ContactPoint, Customer, SocialIdentity
from contacts.search import customers_search_text_refresh
from conversations.models import Conversation, Interaction
from tests.channels.factories import post

ALL_SCOPES = list(Scope.values)


@dataclasses.dataclass
class Side:
    """What one team sees: its channel account, agent, and one customer with a conversation on the account."""

    account: ChannelAccount
    agent: User
    customer: Customer
    identity: SocialIdentity
    conversation: Conversation
    interaction: Interaction
    delivery: WebhookDelivery


@dataclasses.dataclass
class World:
    a: Side
    b: Side
    admin: User


def _side(name: str, external_id: str, author: int) -> Side:
    account = ChannelAccount.objects.create(platform="x", name=f"@{name}", external_id=external_id)
    ingest(account, [post(f"{name}-1", who=author, minutes=1, text=f"Hallo von {name}")])
    identity = SocialIdentity.objects.get(platform="x", external_id=f"u{author}")
    customer = identity.customer
    customer.display_name = f"Kunde {name}"
    customer.customer_number = f"K-{name}"
    customer.save()
    ContactPoint.objects.create(customer=customer, kind="email", value=f"{name}@example.com",
                                normalized=f"{name}@example.com")
    customers_search_text_refresh(customer_ids=[customer.pk])  # written past the services above
    agent = User.objects.create_user(f"agent-{name}")
    team = Team.objects.create(name=f"Team {name}")
    team.members.add(agent)
    team.channel_accounts.add(account)
    delivery = WebhookDelivery.objects.create(channel_account=account, received_at=customer.created_at,
                                              headers={"x-secret": "do-not-show"}, body=b"{}", state="failed")
    return Side(account=account, agent=agent, customer=customer, identity=identity,
                conversation=Conversation.objects.get(channel_account=account),
                interaction=Interaction.objects.get(channel_account=account), delivery=delivery)


@pytest.fixture
def world(db) -> World:
    admin = User.objects.create_user("supervisor")
    admin.user_permissions.add(Permission.objects.get(codename="view_all_channels"))
    return World(a=_side("alpha", "brand-a", 1), b=_side("beta", "brand-b", 2), admin=admin)


@pytest.fixture
def token_for(db) -> Callable[..., str]:
    """token_for(user, scopes=ALL_SCOPES) -> a new token's secret."""

    def make(user: User, scopes: list[str] | None = None, **kwargs: object) -> str:
        _, token = api_token_create(user=user, name="test", scopes=scopes or ALL_SCOPES, **kwargs)
        return token

    return make


@pytest.fixture
def client_for(token_for: Callable[..., str]) -> Callable[..., APIClient]:
    """client_for(user, scopes=ALL_SCOPES) -> an APIClient authenticated by a new token of that user."""

    def make(user: User, scopes: list[str] | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user, scopes)}")
        return client

    return make


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


def ids(response: HttpResponse) -> list[int]:
    """The ids of a list response's results."""
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def assert_error(response: HttpResponse, status: int, code: str | None = None, field: str | None = None) -> dict:
    """The response is an error of the one shape, with this status (and code, and a message for `field`)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "detail", "fields"}, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if code is not None:
        assert body["code"] == code, body
    if field is not None:
        assert body["fields"].get(field), body
    return body
