"""Filters of the customers, social identities, audit events and duplicate suggestions lists."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema_field

from contacts.models import AuditEvent, Customer, DuplicateSuggestion, SocialIdentity
from socialcrm.api.filters import BooleanFilter, ChoiceFilter, DateTimeFilter, IdFilter

from .selectors import customers_search


class CustomerFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(
        method="search", max_length=200,
        help_text="Free text over names, handles, e-mail addresses, phone numbers and customer numbers.",
    )
    updated_since = DateTimeFilter(field_name="updated_at", lookup_expr="gte",
                                   help_text="Changed at or after this time (ISO 8601), for incremental sync.")
    customer_number = django_filters.CharFilter(max_length=64, help_text="Exact customer number.")
    tag = django_filters.CharFilter(method="has_tag", max_length=64, help_text="Customers carrying this tag.")
    include_merged = BooleanFilter(
        method="noop", help_text="Also list merged-away customers (tombstones, with `merged_into` set).",
    )

    class Meta:
        model = Customer
        fields = ["q", "updated_since", "customer_number", "tag", "include_merged"]

    def search(self, queryset: QuerySet[Customer], name: str, value: str) -> QuerySet[Customer]:
        return customers_search(queryset, value)

    def has_tag(self, queryset: QuerySet[Customer], name: str, value: str) -> QuerySet[Customer]:
        return queryset.filter(tags__contains=[value])

    def noop(self, queryset: QuerySet[Customer], name: str, value: bool) -> QuerySet[Customer]:
        return queryset  # applied by the view's selector (tombstones are out of the base queryset)


class SocialIdentityFilterSet(django_filters.FilterSet):
    platform = django_filters.CharFilter(max_length=32)
    handle = django_filters.CharFilter(method="by_handle", max_length=255,
                                       help_text="Exact handle, case-insensitive; a leading @ is ignored.")
    external_id = django_filters.CharFilter(max_length=255, help_text="The platform's user id.")
    scope = django_filters.CharFilter(max_length=255)
    customer_id = IdFilter(field_name="customer_id")

    class Meta:
        model = SocialIdentity
        fields = ["platform", "handle", "external_id", "scope", "customer_id"]

    def by_handle(self, queryset: QuerySet[SocialIdentity], name: str, value: str) -> QuerySet[SocialIdentity]:
        return queryset.filter(handle__iexact=value.lstrip("@"))


class AuditEventFilterSet(django_filters.FilterSet):
    customer_id = IdFilter(method="by_customer",
                           help_text="Events with this customer on either side (target or source).")
    kind = ChoiceFilter(choices=AuditEvent.Kind.choices, help_text="Only events of this kind.")
    created_since = DateTimeFilter(field_name="created_at", lookup_expr="gte",
                                   help_text="Written at or after this time (ISO 8601).")

    class Meta:
        model = AuditEvent
        fields = ["customer_id", "kind", "created_since"]

    def by_customer(self, queryset: QuerySet[AuditEvent], name: str, value: int) -> QuerySet[AuditEvent]:
        return queryset.filter(Q(customer_id=value) | Q(source_customer_id=value))


class ScoreField(forms.FloatField):
    """A finite number; a parameter given with no value is refused, not ignored."""

    def to_python(self, value: Any) -> float | None:
        if value == "":
            raise forms.ValidationError("Give a value or leave the parameter out.", code="empty")
        return super().to_python(value)


@extend_schema_field({"type": "number"})
class ScoreFilter(django_filters.NumberFilter):
    """A score in bits (any finite number)."""

    field_class = ScoreField


# `status=all` lists every status; without `status` only open suggestions are listed.
ALL_STATUSES = "all"


class DuplicateSuggestionFilterSet(django_filters.FilterSet):
    status = ChoiceFilter(method="by_status", choices=[*DuplicateSuggestion.Status.choices, (ALL_STATUSES, "All")],
                          help_text="Only suggestions in this status (default `open`; `all` for every status).")
    customer_id = IdFilter(method="by_customer", help_text="Suggestions with this customer on either side.")
    min_score = ScoreFilter(field_name="score", lookup_expr="gte", help_text="Score at least this many bits.")

    class Meta:
        model = DuplicateSuggestion
        fields = ["status", "customer_id", "min_score"]

    def filter_queryset(self, queryset: QuerySet[DuplicateSuggestion]) -> QuerySet[DuplicateSuggestion]:
        if self.form.cleaned_data.get("status") in (None, ""):
            queryset = queryset.filter(status=DuplicateSuggestion.Status.OPEN)
        return super().filter_queryset(queryset)

    def by_status(self, queryset: QuerySet[DuplicateSuggestion], name: str,
                  value: str) -> QuerySet[DuplicateSuggestion]:
        return queryset if value == ALL_STATUSES else queryset.filter(status=value)

    def by_customer(self, queryset: QuerySet[DuplicateSuggestion], name: str,
                    value: int) -> QuerySet[DuplicateSuggestion]:
        return queryset.filter(Q(customer_low=value) | Q(customer_high=value))
