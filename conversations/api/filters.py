"""Filters of the conversations and interactions lists."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from conversations.models import Conversation, Interaction
from socialcrm.api.filters import BooleanFilter, ChoiceFilter, DateTimeFilter, IdFilter


class ConversationFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Conversation.Status.choices,
                                                 help_text="One or more statuses (repeat the parameter).")
    channel_account_id = IdFilter(field_name="channel_account_id")
    assignee_id = IdFilter(field_name="assignee_id")
    unassigned = BooleanFilter(field_name="assignee", lookup_expr="isnull",
                                              help_text="true: only conversations nobody is assigned to.")
    identity_id = IdFilter(field_name="identity_id")
    customer_id = IdFilter(field_name="identity__customer_id")
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte",
                                   help_text="Changed at or after this time (ISO 8601), for incremental sync.")
    tag = django_filters.CharFilter(method="has_tag", max_length=64)

    class Meta:
        model = Conversation
        fields = ["status", "channel_account_id", "assignee_id", "unassigned", "identity_id", "customer_id",
                  "updated_since", "tag"]

    def has_tag(self, queryset: QuerySet[Conversation], name: str, value: str) -> QuerySet[Conversation]:
        return queryset.filter(tags__name=value)


class InteractionFilterSet(django_filters.FilterSet):
    channel_account_id = IdFilter(field_name="channel_account_id")
    conversation_id = IdFilter(field_name="conversation_id")
    identity_id = IdFilter(field_name="identity_id")
    customer_id = IdFilter(field_name="identity__customer_id")
    occurred_after = DateTimeFilter(field_name="occurred_at", lookup_expr="gte",
                                    help_text="At or after this time (ISO 8601).")
    occurred_before = DateTimeFilter(field_name="occurred_at", lookup_expr="lt",
                                     help_text="Before this time (ISO 8601).")
    direction = ChoiceFilter(choices=Interaction.Direction.choices)
    kind = ChoiceFilter(choices=Interaction.Kind.choices)
    delivery_state = ChoiceFilter(
        choices=[c for c in Interaction.DeliveryState.choices if c[0]],
        help_text="Where one of our replies stands.",
    )

    class Meta:
        model = Interaction
        fields = ["channel_account_id", "conversation_id", "identity_id", "customer_id", "occurred_after",
                  "occurred_before", "direction", "kind", "delivery_state"]
