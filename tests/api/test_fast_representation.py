"""The API's direct renderings give exactly what the declared DRF fields give."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone
from rest_framework import serializers

from conversations.api.serializers import InteractionSerializer
from conversations.models import Interaction

pytestmark = pytest.mark.django_db


class GenericInteractionSerializer(InteractionSerializer):
    def to_representation(self, instance):
        return serializers.ModelSerializer.to_representation(self, instance)


def _variants(world) -> list[Interaction]:
    base = world.a.interaction
    full = Interaction.objects.get(pk=base.pk)
    full.edited_at = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)
    full.deleted_at = dt.datetime(2026, 10, 25, 1, 15, 7, 123456, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    full.attachments = [{"type": "image", "url": "https://example.com/a.png", "size": 12}, None, {"n": None}]
    full.delivery_state = Interaction.DeliveryState.choices[0][0]
    full.send_attempts = 3
    full.send_error = "timeout"
    full.sent_by_id = world.admin.pk
    full.reply_to_external_id = "x-1"
    full.customer_id = world.a.customer.pk
    bare = Interaction.objects.get(pk=base.pk)  # no customer_id attribute at all: rendered as null
    return [full, bare, Interaction.objects.get(pk=world.b.interaction.pk)]


@pytest.mark.parametrize("zone", [None, "UTC", "Asia/Kolkata"])
def test_the_direct_interaction_rendering_matches_the_fields(world, zone):
    rows = _variants(world)
    if zone is None:
        fast, generic = InteractionSerializer(rows, many=True).data, GenericInteractionSerializer(rows, many=True).data
    else:
        with timezone.override(zoneinfo.ZoneInfo(zone)):
            fast = InteractionSerializer(rows, many=True).data
            generic = GenericInteractionSerializer(rows, many=True).data
    assert [dict(r) for r in fast] == [dict(r) for r in generic]
    assert [list(r) for r in fast] == [list(r) for r in generic]  # same keys in the same order
    assert fast[0]["customer_id"] == world.a.customer.pk
    assert fast[1]["customer_id"] is None


def test_a_naive_datetime_takes_the_generic_path(world):
    row = Interaction.objects.get(pk=world.a.interaction.pk)
    row.edited_at = dt.datetime(2026, 1, 2, 3, 4, 5)  # noqa: DTZ001 - naive on purpose
    assert InteractionSerializer(row).data == GenericInteractionSerializer(row).data
