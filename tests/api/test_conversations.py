"""Conversations: filters, assign, status, notes, tags, replies and reply retries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from access.models import Team
from conversations.models import Conversation, ConversationTag, Interaction
from tests.api.conftest import World, assert_error, ids

pytestmark = pytest.mark.django_db


def url(world: World, suffix: str = "") -> str:
    return f"/api/v1/conversations/{world.a.conversation.pk}/{suffix}"


def test_conversations_filter_by_status_account_assignee_customer_tag_and_change_time(world, client_for):
    Conversation.objects.filter(pk=world.a.conversation.pk).update(status="pending", assignee=world.a.agent)
    Conversation.objects.filter(pk=world.b.conversation.pk).update(updated_at=timezone.now() - dt.timedelta(days=2))
    ConversationTag.objects.create(conversation=world.b.conversation, name="outage")
    client = client_for(world.admin)
    a, b = world.a.conversation.pk, world.b.conversation.pk

    assert ids(client.get("/api/v1/conversations/?status=pending")) == [a]
    assert set(ids(client.get("/api/v1/conversations/?status=pending&status=open"))) == {a, b}
    assert ids(client.get(f"/api/v1/conversations/?channel_account_id={world.b.account.pk}")) == [b]
    assert ids(client.get(f"/api/v1/conversations/?assignee_id={world.a.agent.pk}")) == [a]
    assert ids(client.get("/api/v1/conversations/?unassigned=true")) == [b]
    assert ids(client.get(f"/api/v1/conversations/?customer_id={world.a.customer.pk}")) == [a]
    assert ids(client.get("/api/v1/conversations/?tag=outage")) == [b]
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert ids(client.get("/api/v1/conversations/", {"updated_since": since})) == [a]


@pytest.mark.parametrize(("query", "field"), [
    ("status=closed", "status"), ("channel_account_id=abc", "channel_account_id"),
    ("assignee_id=0", "assignee_id"), ("customer_id=99999999999999999999", "customer_id"),
    ("updated_since=2026-13-01", "updated_since"), ("unassigned=perhaps", "unassigned"),
])
def test_bad_conversation_filters_are_a_400_naming_them(world, client_for, query, field):
    assert_error(client_for(world.admin).get(f"/api/v1/conversations/?{query}"), 400, "invalid", field=field)


def test_a_conversation_shows_its_customer_and_tags(world, client_for):
    ConversationTag.objects.create(conversation=world.a.conversation, name="billing")

    body = client_for(world.a.agent).get(url(world)).json()

    assert body["customer_id"] == world.a.customer.pk
    assert body["identity_id"] == world.a.identity.pk
    assert body["tags"] == ["billing"]


def test_assigning_to_a_team_member_and_unassigning(world, client_for):
    client = client_for(world.a.agent)

    assigned = client.post(url(world, "assign/"), {"assignee_id": world.a.agent.pk})
    before = Conversation.objects.get(pk=world.a.conversation.pk)
    unassigned = client.post(url(world, "assign/"), {"assignee_id": None})

    assert assigned.status_code == 200, assigned.content
    assert assigned.json()["assignee_id"] == world.a.agent.pk
    assert before.assigned_at is not None
    assert before.updated_at > world.a.conversation.updated_at
    assert unassigned.json()["assignee_id"] is None
    assert unassigned.json()["assigned_at"] is None


@pytest.mark.parametrize(("assignee", "code"), [("other-team", "assignee_cannot_see"), ("nobody", "unknown_user"),
                                               ("inactive", "unknown_user")])
def test_assigning_to_someone_who_cannot_see_it_is_a_400(world, client_for, assignee, code):
    inactive = User.objects.create_user("gone", is_active=False)
    Team.objects.get(name="Team alpha").members.add(inactive)
    assignee_id = {"other-team": world.b.agent.pk, "nobody": 2**31 - 1, "inactive": inactive.pk}[assignee]

    response = client_for(world.a.agent).post(url(world, "assign/"), {"assignee_id": assignee_id})

    assert_error(response, 400, code, field="assignee_id")
    assert Conversation.objects.get(pk=world.a.conversation.pk).assignee_id is None


def test_resolving_and_reopening(world, client_for):
    client = client_for(world.a.agent)

    resolved = client.post(url(world, "status/"), {"status": "resolved"}).json()
    reopened = client.post(url(world, "status/"), {"status": "open"}).json()

    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"] is not None
    assert reopened["status"] == "open"
    assert reopened["resolved_at"] is None
    assert_error(client.post(url(world, "status/"), {"status": "closed"}), 400, "invalid", field="status")
    assert_error(client.post(url(world, "status/"), {}), 400, "invalid", field="status")


def test_notes_are_added_and_listed_newest_first(world, client_for):
    client = client_for(world.a.agent)

    first = client.post(url(world, "notes/"), {"text": "Kunde ruft zurück"})
    second = client.post(url(world, "notes/"), {"text": "Techniker beauftragt"})
    listed = client.get(url(world, "notes/"))

    assert first.status_code == 201
    assert second.json()["author_id"] == world.a.agent.pk
    assert [n["text"] for n in listed.json()["results"]] == ["Techniker beauftragt", "Kunde ruft zurück"]
    assert_error(client.post(url(world, "notes/"), {"text": "   "}), 400, "invalid", field="text")
    assert_error(client.post(url(world, "notes/"), {"text": 42}), 400, "invalid", field="text")


def test_tags_are_added_once_and_removed(world, client_for):
    client = client_for(world.a.agent)

    client.post(url(world, "tags/"), {"tag": "outage"})
    twice = client.post(url(world, "tags/"), {"tag": "outage"}).json()
    client.post(url(world, "tags/"), {"tag": "billing"})
    removed = client.delete(url(world, "tags/outage/"))

    assert twice["tags"] == ["outage"]
    assert removed.status_code == 200
    assert removed.json()["tags"] == ["billing"]
    assert_error(client.post(url(world, "tags/"), {"tag": "x" * 65}), 400, "invalid", field="tag")
    assert_error(client.post(url(world, "tags/"), {"tag": "a\nb"}), 400, "invalid", field="tag")


def test_a_reply_is_queued_for_the_outbound_queue(world, client_for):
    response = client_for(world.a.agent).post(url(world, "replies/"), {"text": "Wir kümmern uns! ^AB"})

    assert response.status_code == 201, response.content
    body = response.json()
    reply = Interaction.objects.get(pk=body["id"])
    assert (reply.direction, reply.delivery_state, reply.sent_by_id) == ("out", "queued", world.a.agent.pk)
    assert body["conversation_id"] == world.a.conversation.pk
    assert body["customer_id"] == world.a.customer.pk


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"text": "x" * 281}, "reply_too_long", "text"), ({"text": ""}, "invalid", "text"),
    ({}, "invalid", "text"), ({"text": "hi", "private": "yes"}, "invalid", "private"),
])
def test_a_bad_reply_is_a_400_naming_the_field(world, client_for, body, code, field):
    assert_error(client_for(world.a.agent).post(url(world, "replies/"), body), 400, code, field=field)
    assert not Interaction.objects.filter(direction="out").exists()


def test_a_reply_on_a_disabled_channel_is_a_409(world, client_for):
    type(world.a.account).objects.filter(pk=world.a.account.pk).update(enabled=False)

    assert_error(client_for(world.a.agent).post(url(world, "replies/"), {"text": "hi"}), 409, "channel_disabled")


def test_a_failed_reply_is_retried_and_a_queued_one_is_a_409(world, client_for):
    client = client_for(world.a.agent)
    reply_id = client.post(url(world, "replies/"), {"text": "hi"}).json()["id"]
    retry = f"/api/v1/interactions/{reply_id}/retry/"

    assert_error(client.post(retry), 409, "reply_not_failed")
    Interaction.objects.filter(pk=reply_id).update(delivery_state="failed", send_error="403 from X")
    response = client.post(retry)

    assert response.status_code == 202
    assert response.json()["delivery_state"] == "queued"
    assert_error(client.post(f"/api/v1/interactions/{world.a.interaction.pk}/retry/"), 404)
