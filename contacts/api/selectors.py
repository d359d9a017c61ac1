"""Reads behind the contacts API, scoped to what the requesting user may see (see `access.selectors`).

A restricted user sees a customer when one of its identities is *in view*, and then all of its identities.
Whether an identity is in view depends on conversations, which live above this app: the apps above
register an `IdentityScope` here (`register_identity_scope`), so contacts imports none of them. With no
scope registered a restricted user sees no customer at all (closed, not open).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, QuerySet, Subquery

from access.selectors import ChannelScope, channel_scope_for_user
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.search import search_text_condition
from socialcrm.errors import NotFound

# Given the channel account ids a user may see, a condition on SocialIdentity rows that are in view.
IdentityScope = Callable[[frozenset[int]], Q]
_identity_scopes: list[IdentityScope] = []

# How many merges deep a tombstone is followed to its survivor.
MAX_MERGE_HOPS = 10

User = AbstractBaseUser | AnonymousUser


def register_identity_scope(scope: IdentityScope) -> None:
    """Called by an app above contacts: `scope(account_ids)` says which identities those accounts show."""
    if scope not in _identity_scopes:
        _identity_scopes.append(scope)


def identities_in_view(channel_scope: ChannelScope) -> Q | None:
    """The condition on SocialIdentity for identities in view; None when everything is."""
    if channel_scope.unrestricted:
        return None
    if not channel_scope.account_ids or not _identity_scopes:
        return Q(pk__in=[])
    condition = Q()
    for scope in _identity_scopes:
        condition |= scope(channel_scope.account_ids)
    return condition


def _customer_visible(in_view: Q, customer_ref: str) -> Exists:
    return Exists(SocialIdentity.objects.filter(in_view, customer_id=OuterRef(customer_ref)))


def customer_list_for_user(*, user: User, include_merged: bool = False,
                           with_related: bool = True) -> QuerySet[Customer]:
    """Customers `user` may see, with identities and contact points prefetched (unless not `with_related`).

    Tombstones (merged-away customers) only with `include_merged`; a restricted user sees a tombstone
    when they see the customer it was merged into.
    """
    queryset = Customer.objects.all()
    if with_related:
        queryset = queryset.prefetch_related("identities", "contact_points")
    in_view = identities_in_view(channel_scope_for_user(user))
    if not include_merged:
        queryset = queryset.filter(merged_into__isnull=True)
        if in_view is not None:
            queryset = queryset.filter(_customer_visible(in_view, "pk"))
    elif in_view is not None:
        queryset = queryset.filter(_customer_visible(in_view, "pk") | _customer_visible(in_view, "merged_into_id"))
    return queryset


def customer_survivor_id(*, customer_id: int) -> int | None:
    """The live customer a tombstone was (perhaps over several merges) merged into; None if not a tombstone."""
    survivor = None
    current = customer_id
    for _ in range(MAX_MERGE_HOPS):
        merged_into = Customer.objects.filter(pk=current).values_list("merged_into_id", flat=True).first()
        if merged_into is None:
            return survivor
        survivor = current = merged_into
    return survivor


def customer_get_for_user(*, user: User, customer_id: int,
                          with_related: bool = True) -> tuple[Customer | None, int | None]:
    """(customer, None) for a live customer in view, or (None, survivor id) for a tombstone whose survivor
    is in view. NotFound for anything else, including customers the user may not see."""
    customer = customer_list_for_user(user=user, with_related=with_related).filter(pk=customer_id).first()
    if customer is not None:
        return customer, None
    survivor_id = customer_survivor_id(customer_id=customer_id)
    if survivor_id is not None and customer_list_for_user(user=user, with_related=False).filter(
        pk=survivor_id
    ).exists():
        return None, survivor_id
    raise NotFound("No such customer.", code="not_found")


def identity_list_for_user(*, user: User) -> QuerySet[SocialIdentity]:
    """Social identities `user` may see: all identities of the customers in view."""
    queryset = SocialIdentity.objects.all()
    in_view = identities_in_view(channel_scope_for_user(user))
    if in_view is not None:
        queryset = queryset.filter(_customer_visible(in_view, "customer_id"))
    return queryset


def customers_search(queryset: QuerySet[Customer], text: str) -> QuerySet[Customer]:
    """Customers matching `text`, by any of:

    - names (the customer's and its identities' display names): contains, case-insensitive;
    - handles: contains, case-insensitive, a leading "@" ignored;
    - e-mail addresses: contains, case-insensitive;
    - phone numbers: the digits of `text` (leading zeros dropped, at least 4) end the stored E.164 number,
      so "0170 1234567" finds "+491701234567";
    - customer numbers and platform user ids: exact.

    Names, handles and e-mail addresses need `contacts.search.MIN_FRAGMENT` (3) characters for "contains": shorter
    text finds them only whole ("Li" finds a customer named "li", not "Lisa"), because a fragment without a whole
    trigram cannot use the trigram index and would read every row.

    One condition on the customer row: names, handles and e-mail addresses are one LIKE on the customer's search
    text (`contacts.search`), the exact values are the ids their B-tree (and, for phone endings, trigram) indexes
    find, compared with `= ANY(ARRAY(...))`. So PostgreSQL may answer a page either way: for rare matches it ORs
    the indexes' bitmaps and sorts what they found, for common ones it reads the list in its order (on the index
    of that order) and stops at the page's end, checking each customer's text, a few microseconds apiece. The
    caller's filters (the team's visibility, tombstones) and the list's order and cursor apply as to any filter.
    """
    condition = _search_condition(text)
    return queryset if condition is None else queryset.filter(condition)


def _among(matching: QuerySet) -> Q:
    """The customer is among the ids `matching` (one column) finds, as `id = ANY(ARRAY(...))`, which an index scan
    of the primary key can answer (an `id IN (SELECT ...)` ORed with other conditions cannot)."""
    return Q(Func(F("pk"), ArraySubquery(matching), arg_joiner=" = ANY(", template="%(expressions)s)",
                  output_field=BooleanField()))


def _search_condition(text: str) -> Q | None:
    """The condition of `customers_search` on customers (None: no search)."""
    text = text.strip()
    if not text:
        return None
    condition = search_text_condition(text) | Q(customer_number=text)
    condition |= _among(SocialIdentity.objects.filter(external_id=text).values("customer_id"))
    digits = re.sub(r"\D", "", text).lstrip("0")
    if len(digits) >= 4 and not re.search(r"[^\d\s()+\-./]", text):
        condition |= _among(ContactPoint.objects.filter(kind=ContactPoint.Kind.PHONE, normalized__endswith=digits)
                            .values("customer_id"))
    return condition


def customer_in_view_or_404(*, user: User, customer_id: int, field: str | None = None) -> int:
    """`customer_id` if `user` may see it (live, or a tombstone of a customer in view), else NotFound naming
    `field` (the input it came from, if any). Tombstones pass: the services refuse them with a 409."""
    if not customer_list_for_user(user=user, include_merged=True, with_related=False).filter(
        pk=customer_id
    ).exists():
        raise NotFound("No such customer.", code="not_found", field=field)
    return customer_id


def identity_in_view_or_404(*, user: User, identity_id: int) -> int:
    """`identity_id` if `user` may see that social identity, else NotFound."""
    if not identity_list_for_user(user=user).filter(pk=identity_id).exists():
        raise NotFound("No such social identity.", code="not_found")
    return identity_id


def audit_event_list_for_user(*, user: User) -> QuerySet[AuditEvent]:
    """Audit events `user` may see: all for an unrestricted user; for a restricted one, the events whose
    customer or source customer (live or tombstone) is in view. Events of erased customers are then gone."""
    queryset = AuditEvent.objects.all()
    if channel_scope_for_user(user).unrestricted:
        return queryset
    visible = customer_list_for_user(user=user, include_merged=True, with_related=False)
    return queryset.filter(
        Exists(visible.filter(pk=OuterRef("customer_id"))) | Exists(visible.filter(pk=OuterRef("source_customer_id")))
    )


def merge_event_get_for_user(*, user: User, event_id: int) -> AuditEvent:
    """The merge audit event `event_id` if `user` sees its target customer; NotFound otherwise (also for an event
    of another kind)."""
    event = audit_event_list_for_user(user=user).filter(pk=event_id, kind=AuditEvent.Kind.MERGE).first()
    if event is None:
        raise NotFound("No such merge.", code="not_found")
    return event


def suggestion_list_for_user(*, user: User) -> QuerySet[DuplicateSuggestion]:
    """Duplicate suggestions `user` may see, with both customers' display names (`customer_low_display_name`,
    `customer_high_display_name`; null for an erased customer) annotated in the same statement.

    An unrestricted user sees all; a restricted one only those whose two customers (live, or tombstones of
    customers in view) are both in view.
    """
    names = Customer.objects.values("display_name")
    queryset = DuplicateSuggestion.objects.annotate(
        customer_low_display_name=Subquery(names.filter(pk=OuterRef("customer_low"))[:1]),
        customer_high_display_name=Subquery(names.filter(pk=OuterRef("customer_high"))[:1]),
    )
    if channel_scope_for_user(user).unrestricted:
        return queryset
    visible = customer_list_for_user(user=user, include_merged=True, with_related=False)
    return queryset.filter(
        Exists(visible.filter(pk=OuterRef("customer_low"))), Exists(visible.filter(pk=OuterRef("customer_high")))
    )


def suggestion_get_for_user(*, user: User, suggestion_id: int) -> DuplicateSuggestion:
    """The duplicate suggestion `suggestion_id` if `user` sees both its customers; NotFound otherwise."""
    suggestion = suggestion_list_for_user(user=user).filter(pk=suggestion_id).first()
    if suggestion is None:
        raise NotFound("No such duplicate suggestion.", code="not_found")
    return suggestion
