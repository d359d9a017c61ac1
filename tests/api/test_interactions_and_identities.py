"""Interactions and social identities: filters, details, bad input."""

from __future__ import annotations

import pytest

from channels.ingest import ingest
from contacts.models import SocialIdentity
from tests.api.conftest import assert_error, ids
from tests.channels.factories import T0, edit, post

pytestmark = pytest.mark.django_db


def test_interactions_filter_by_account_customer_conversation_and_time(world, client_for):
    ingest(world.a.account, [post("a-later", who=1, minutes=90, thread="alpha-1")])
    later = world.a.conversation.interactions.get(external_id="a-later").pk
    client = client_for(world.admin)
    a, b = world.a.interaction.pk, world.b.interaction.pk

    assert set(ids(client.get(f"/api/v1/interactions/?channel_account_id={world.a.account.pk}"))) == {a, later}
    assert ids(client.get(f"/api/v1/interactions/?customer_id={world.b.customer.pk}")) == [b]
    assert set(ids(client.get(f"/api/v1/interactions/?conversation_id={world.a.conversation.pk}"))) == {a, later}
    after = (T0.replace(minute=30)).isoformat()
    assert ids(client.get("/api/v1/interactions/", {"occurred_after": after})) == [later]
    assert set(ids(client.get("/api/v1/interactions/", {"occurred_before": after}))) == {a, b}
    assert ids(client.get("/api/v1/interactions/?ordering=-occurred_at&channel_account_id="
                          f"{world.a.account.pk}")) == [later, a]


def test_stub_interactions_are_not_listed(world, client_for):
    ingest(world.a.account, [edit("never-seen", minutes=5, text="edit first")])

    assert "never-seen" not in [r["external_id"] for r in
                                client_for(world.admin).get("/api/v1/interactions/").json()["results"]]


def test_an_interaction_detail_leaves_out_the_raw_payload(world, client_for):
    body = client_for(world.a.agent).get(f"/api/v1/interactions/{world.a.interaction.pk}/").json()

    assert body["text"] == "Hallo von alpha"
    assert body["customer_id"] == world.a.customer.pk
    assert "raw" not in body


@pytest.mark.parametrize(("query", "field"), [
    ("occurred_after=last-week", "occurred_after"), ("direction=sideways", "direction"),
    ("kind=", "kind"), ("conversation_id=-1", "conversation_id"),
])
def test_bad_interaction_filters_are_a_400_naming_them(world, client_for, query, field):
    assert_error(client_for(world.admin).get(f"/api/v1/interactions/?{query}"), 400, "invalid", field=field)


def test_identities_filter_by_platform_handle_external_id_and_customer(world, client_for):
    client = client_for(world.admin)
    a, b = world.a.identity.pk, world.b.identity.pk

    assert set(ids(client.get("/api/v1/social-identities/?platform=x"))) == {a, b}
    assert ids(client.get("/api/v1/social-identities/?handle=@USER2")) == [b]
    assert ids(client.get("/api/v1/social-identities/?external_id=u1")) == [a]
    assert ids(client.get(f"/api/v1/social-identities/?customer_id={world.b.customer.pk}")) == [b]
    assert ids(client.get("/api/v1/social-identities/?platform=mastodon")) == []
    assert_error(client.get("/api/v1/social-identities/?customer_id=x"), 400, "invalid", field="customer_id")


def test_a_team_sees_every_identity_of_the_customers_it_sees(world, client_for):
    other = SocialIdentity.objects.create(customer=world.a.customer, platform="mastodon", external_id="m1",
                                          first_seen_at=T0, last_seen_at=T0)

    assert set(ids(client_for(world.a.agent).get("/api/v1/social-identities/"))) == {world.a.identity.pk, other.pk}
    detail = client_for(world.a.agent).get(f"/api/v1/social-identities/{other.pk}/").json()
    assert detail["customer_id"] == world.a.customer.pk
    assert_error(client_for(world.b.agent).get(f"/api/v1/social-identities/{other.pk}/"), 404)
