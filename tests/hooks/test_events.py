"""The domain events behind `customer.created` and `interaction.updated` reach a subscription once per write:
a customer created through the API, the customers an ingest batch creates (one event per batch), the edits and
deletes a batch applies, and the delivery state of our replies."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from access.services import api_token_create
from channels.adapters.base import DeliveryStatus, EventKind, InboundEvent
from channels.ingest import ingest
from channels.models import ChannelAccount
from channels.services import reply_queue, reply_send
from contacts.models import Customer, SocialIdentity
from conversations.models import Interaction
from hooks import services
from hooks.models import OutboundEvent
from tests.channels.factories import delete, edit, post
from tests.channels.test_outbound import SEND_URL, _telegram_answer, _telegram_conversation

pytestmark = pytest.mark.django_db


def _subscribe(url: str, *types: str) -> None:
    services.subscription_create(name="crm", url=url, event_types=types, secret="s3cret-s3cret-s3cret")


def _events(event_type: str) -> list[OutboundEvent]:
    return list(OutboundEvent.objects.filter(event_type=event_type).order_by("pk"))


def test_a_customer_created_through_the_api_is_delivered(receiver, enqueued, django_capture_on_commit_callbacks,
                                                         django_user_model) -> None:
    _subscribe(receiver.url, "customer.created")
    user = django_user_model.objects.create_user("billing")
    user.user_permissions.add(Permission.objects.get(codename="view_all_channels"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_create(user=user, name='t', scopes=['write'])[1]}")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/customers/", {"display_name": "Erika Mustermann"}, format="json")

    assert response.status_code == 201, response.content
    [row] = _events("customer.created")
    assert row.payload == {"customer_ids": [response.json()["id"]]}
    assert enqueued == [row.pk]
    assert services.delivery_send(delivery_id=row.pk).state == "delivered"
    body = json.loads(receiver.requests[0].body)
    assert (body["type"], body["data"]) == ("customer.created", {"customer_ids": [response.json()["id"]]})


def test_an_ingest_batch_announces_the_customers_it_created_in_one_event(
    receiver, enqueued, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver.url, "customer.created")
    account = ChannelAccount.objects.create(platform="x", name="@brand", external_id="brand-1")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [post("p1", who=1)])

    with django_capture_on_commit_callbacks(execute=True):
        # Two new authors (one of them twice) and a known one.
        ingest(account, [post("p2", who=2), post("p3", who=3), post("p4", who=2), post("p5", who=1)])
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [post("p6", who=3)])  # nobody new: no event

    first, second = _events("customer.created")
    customer_of = {i.external_id: i.customer_id for i in SocialIdentity.objects.all()}
    assert first.payload == {"channel_account_id": account.pk, "customer_ids": [customer_of["u1"]]}
    assert second.payload == {"channel_account_id": account.pk,
                              "customer_ids": sorted([customer_of["u2"], customer_of["u3"]])}
    assert Customer.objects.count() == 3
    assert services.delivery_send(delivery_id=second.pk).state == "delivered"
    assert json.loads(receiver.requests[0].body)["data"] == second.payload


def test_edits_and_deletes_of_a_batch_are_one_interaction_updated_event(
    receiver, enqueued, django_capture_on_commit_callbacks
) -> None:
    _subscribe(receiver.url, "interaction.updated", "interaction.created")
    account = ChannelAccount.objects.create(platform="x", name="@brand", external_id="brand-1")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [post("p1", who=1), post("p2", who=2), post("p3", who=3)])
    assert _events("interaction.updated") == []

    changes = [edit("p1", minutes=5, text="Router blinkt jetzt grün"), delete("p2", minutes=6)]
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, changes)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, changes)  # a re-delivery changes nothing: no event

    [row] = _events("interaction.updated")
    assert row.payload == {"channel_account_id": account.pk, "external_ids": ["p1", "p2"]}
    assert len(_events("interaction.created")) == 1
    stored = {i.external_id: i for i in Interaction.objects.filter(channel_account=account)}
    assert stored["p1"].text == "Router blinkt jetzt grün"
    assert stored["p2"].deleted_at is not None
    assert services.delivery_send(delivery_id=row.pk).state == "delivered"
    body = json.loads(receiver.requests[0].body)
    assert (body["type"], body["data"]) == ("interaction.updated", row.payload)


def test_a_replys_delivery_state_changes_are_announced(receiver, enqueued,
                                                       django_capture_on_commit_callbacks) -> None:
    _subscribe(receiver.url, "interaction.updated")
    account, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Wir schauen uns das an.")
    report = InboundEvent(platform="telegram", external_id="12345678:9001", kind=EventKind.STATUS,
                          occurred_at=timezone.now(), status=DeliveryStatus.READ)

    with django_capture_on_commit_callbacks(execute=True), respx.mock:
        respx.post(SEND_URL).mock(side_effect=_telegram_answer)
        reply_send(interaction_id=reply.pk)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [report])
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [report])  # already read: nothing moves, no event

    sent, read = _events("interaction.updated")
    assert sent.payload == {"channel_account_id": account.pk, "interaction_ids": [reply.pk],
                            "external_ids": ["12345678:9001"], "delivery_state": "sent"}
    assert read.payload == {"channel_account_id": account.pk, "external_ids": ["12345678:9001"]}
    reply.refresh_from_db()
    assert reply.delivery_state == "read"


def test_a_reply_the_platform_refused_is_announced_as_failed(receiver, enqueued,
                                                             django_capture_on_commit_callbacks) -> None:
    _subscribe(receiver.url, "interaction.updated")
    _, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Hallo")

    with django_capture_on_commit_callbacks(execute=True), respx.mock:
        respx.post(SEND_URL).mock(return_value=httpx.Response(
            403, json={"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}))
        reply_send(interaction_id=reply.pk)

    [row] = _events("interaction.updated")
    assert row.payload == {"interaction_ids": [reply.pk], "delivery_state": "failed"}
    assert services.delivery_send(delivery_id=row.pk).state == "delivered"
    assert json.loads(receiver.requests[0].body)["data"] == row.payload
