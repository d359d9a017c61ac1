"""Reads behind the contacts API, scoped to what the requesting user may see (see `access.selectors`).

A restricted user sees a customer when one of its identities is *in view*, and then all of its identities.
Whether an identity is in view depends on conversations, which live above this app: the apps above
register an `IdentityScope` here (`register_identity_scope`), so contacts imports none of them. With no
scope registered a restricted user sees no customer at all (closed, not open).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connections
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from access.selectors import ChannelScope, channel_scope_for_user
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from socialcrm.errors import NotFound

# Given the channel account ids a user may see, a condition on SocialIdentity rows that are in view.
IdentityScope = Callable[[frozenset[int]], Q]
_identity_scopes: list[IdentityScope] = []

# How many merges deep a tombstone is followed to its survivor.
MAX_MERGE_HOPS = 10

# The shortest text a search matches inside names, handles and e-mail addresses (a trigram's length).
MIN_FRAGMENT = 3

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


def _fragment(field: str, text: str) -> Q:
    """`field` contains `text` (case-insensitive) when `text` is long enough for the trigram index, else equals it.

    The lookups compile to UPPER(field) LIKE / = UPPER(text), the expression the trigram indexes are built on
    (contacts/models.py). A fragment under `MIN_FRAGMENT` characters holds no whole trigram, so a "contains"
    would read the whole index; whole values are still found.
    """
    lookup = "icontains" if len(text) >= MIN_FRAGMENT else "iexact"
    return Q(**{f"{field}__{lookup}": text})


def customers_search(queryset: QuerySet[Customer], text: str) -> QuerySet[Customer]:
    """Customers matching `text`, by any of:

    - names (the customer's and its identities' display names): contains, case-insensitive;
    - handles: contains, case-insensitive, a leading "@" ignored;
    - e-mail addresses: contains, case-insensitive;
    - phone numbers: the digits of `text` (leading zeros dropped, at least 4) end the stored E.164 number,
      so "0170 1234567" finds "+491701234567";
    - customer numbers and platform user ids: exact.

    Names, handles and e-mail addresses need `MIN_FRAGMENT` (3) characters for "contains": shorter text finds
    them only whole ("Li" finds a customer named "li", not "Lisa"), because a fragment without a whole trigram
    cannot use the trigram indexes and would read every row.

    Each way of matching is a query of its own on its own index (trigram GIN indexes for the fragments, B-trees
    for the exact values), and the customer ids they find are combined with UNION ALL: conditions on
    different tables joined by OR would make PostgreSQL read every customer. The caller's filters (the team's
    visibility, tombstones) and the list's order and cursor apply on top, to the matching customers only.
    """
    parts = _search_parts(text)
    if parts is None:
        return queryset
    own, identity, contact = parts
    matching = (
        Customer.objects.filter(own).values("pk")
        .union(SocialIdentity.objects.filter(identity).values("customer_id"),
               ContactPoint.objects.filter(contact).values("customer_id"), all=True)
    )
    return queryset.filter(pk__in=matching)


def _search_parts(text: str) -> tuple[Q, Q, Q] | None:
    """The conditions of `customers_search` on customers, social identities and contact points (None: no search)."""
    text = text.strip()
    if not text:
        return None
    handle = text.lstrip("@") or text
    identity = _fragment("display_name", text) | _fragment("handle", handle) | Q(external_id=text)
    email = text.lower()
    contact = Q(kind=ContactPoint.Kind.EMAIL) & (
        Q(normalized__contains=email) if len(email) >= MIN_FRAGMENT else Q(normalized=email)
    )
    digits = re.sub(r"\D", "", text).lstrip("0")
    if len(digits) >= 4 and not re.search(r"[^\d\s()+\-./]", text):
        contact |= Q(kind=ContactPoint.Kind.PHONE, normalized__endswith=digits)
    return _fragment("display_name", text) | Q(customer_number=text), identity, contact


def customers_search_walk(queryset: QuerySet[Customer], text: str, *, order_by: Sequence[str], limit: int,
                          window: int) -> tuple[list[int], bool]:
    """(ids, exact): the customers matching `text` (exactly as `customers_search`) among the first `window`
    customers of `queryset` in the order `order_by`, up to the `limit`th match (in no particular order).

    `exact` is true when the ids are the first `limit` matches of the whole of `queryset` in that order (or all of
    its matches, when it has fewer): when `limit` were found, or when `queryset` holds fewer than `window`
    customers. Otherwise the matches past the window are unknown and the caller searches with `customers_search`.

    The other way to a page of search results: `customers_search` reads every match on the indexes, then sorts
    them, which for a common name ("Schmid": 7,000 customers) costs 100 ms and more; this walks the list in its
    order (on the index of that order) and checks each customer on the customer_id indexes of identities and
    contact points, stopping at the `limit`th match: it costs what the customers walked cost (about 10 µs each).
    `queryset` is the list before the search, the caller's position (cursor) included. One query.
    """
    parts = _search_parts(text)
    if parts is None:
        raise ValueError("no search text")
    own, identity, contact = parts
    # Correlated per customer. The second, redundant comparison with the outer id keeps PostgreSQL from turning
    # each EXISTS into a hashed subplan, which would read every match, like the UNION.
    outer = {"customer_id": OuterRef("pk"), "customer_id__gte": OuterRef("pk")}
    condition = Customer.objects.filter(
        own | Exists(SocialIdentity.objects.filter(identity, **outer))
        | Exists(ContactPoint.objects.filter(contact, **outer))
    ).query
    where_sql, where_params = condition.get_compiler(using=queryset.db).compile(condition.where)
    meta = Customer._meta
    fields = [meta.pk.name if f.lstrip("-") == "pk" else f.lstrip("-") for f in order_by]
    walked = queryset.order_by(*order_by).values(*dict.fromkeys([meta.pk.name, *fields, "display_name",
                                                                  "customer_number"]))[:window]
    walk_sql, walk_params = walked.query.sql_with_params()
    quote = connections[queryset.db].ops.quote_name
    table = quote(meta.db_table)
    order_sql = ", ".join(f"{table}.{quote(meta.get_field(f).column)}{' DESC' if o.startswith('-') else ''}"
                          for f, o in zip(fields, order_by, strict=True))
    # The matches, then (only when fewer than `limit`) one NULL if the window is full: the walk did not see
    # everything. The hits are materialized so they are walked for once.
    sql = (
        f"WITH hits AS MATERIALIZED (SELECT {table}.{quote(meta.pk.column)} AS id FROM ({walk_sql}) {table} "
        f"WHERE {where_sql} ORDER BY {order_sql} LIMIT %s) "
        f"SELECT id FROM hits UNION ALL "
        f"SELECT NULL FROM (SELECT 1 FROM ({walk_sql}) walked OFFSET %s LIMIT 1) full_window "
        f"WHERE (SELECT count(*) FROM hits) < %s"
    )
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, (*walk_params, *where_params, limit, *walk_params, window - 1, limit))
        rows = [row[0] for row in cursor.fetchall()]
    ids = [pk for pk in rows if pk is not None]
    return ids, len(ids) >= limit or len(ids) == len(rows)


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
