"""Filters of the channel accounts and webhook deliveries lists."""

from __future__ import annotations

import django_filters

from channels.models import ChannelAccount, WebhookDelivery
from socialcrm.api.filters import BooleanFilter, ChoiceFilter, DateTimeFilter, IdFilter


class ChannelAccountFilterSet(django_filters.FilterSet):
    platform = ChoiceFilter(choices=ChannelAccount.Platform.choices)
    enabled = BooleanFilter()
    health = ChoiceFilter(choices=ChannelAccount.Health.choices)

    class Meta:
        model = ChannelAccount
        fields = ["platform", "enabled", "health"]


class WebhookDeliveryFilterSet(django_filters.FilterSet):
    state = ChoiceFilter(choices=WebhookDelivery.State.choices)
    channel_account_id = IdFilter(field_name="channel_account_id")
    received_after = DateTimeFilter(field_name="received_at", lookup_expr="gte",
                                    help_text="Received at or after this time (ISO 8601).")
    received_before = DateTimeFilter(field_name="received_at", lookup_expr="lt",
                                     help_text="Received before this time (ISO 8601).")

    class Meta:
        model = WebhookDelivery
        fields = ["state", "channel_account_id", "received_after", "received_before"]
