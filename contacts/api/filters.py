"""Filters of the customers, social identities and audit events lists."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from contacts.models import AuditEvent, Customer, SocialIdentity
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
