"""Reads behind the console's search: customers (names, handles, e-mails, phones, customer numbers) and message text.

Customers come from `contacts.api.selectors.customers_search` over `customer_list_for_user`, the API's own search, so
the console and `GET /api/v1/customers/?q=` find the same people. Messages come from `interaction_list_for_user`
matching `UPPER(text) LIKE UPPER('%q%')`: by walking the newest rows for a common word, else through the trigram
index `interaction_text_trgm_idx` on `UPPER(text)` (conversations migration 0006; see `_MESSAGE_IDS_SQL`), which
needs at least three characters of query (a trigram), so shorter queries search customers only.

Both lists are capped (no pagination): search is for finding someone, the profile and the inbox are for reading.
Each costs a fixed number of queries: customers with their identities and contact points (three), messages in two
(their ids, then the rows with their channel account, author and customer).
"""

from __future__ import annotations

import dataclasses

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import F

from access.selectors import channel_scope_for_user
from contacts.api.selectors import customer_list_for_user, customers_search
from contacts.models import Customer, SocialIdentity
from conversations.models import Interaction
from conversations.selectors import interaction_list_for_user

from .customers import KIND_LABELS, conversation_url, initials

User = AbstractBaseUser | AnonymousUser

MIN_QUERY = 2
MIN_MESSAGE_QUERY = 3  # a trigram: what the text index can answer
MAX_QUERY = 200
CUSTOMER_LIMIT = 25
MESSAGE_LIMIT = 50
# Characters of message text shown around the first match.
SNIPPET_BEFORE = 80
SNIPPET_LENGTH = 300


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a snippet; `match` pieces are marked. Templates escape every piece."""

    text: str
    match: bool


def snippet(text: str, query: str) -> list[Segment]:
    """The part of `text` around the first occurrence of `query` (ignoring case), cut into marked segments."""
    folded, needle = text.lower(), query.lower()
    at = folded.find(needle) if needle and len(folded) == len(text) else -1
    if at < 0:
        cut = text[:SNIPPET_LENGTH]
        return [Segment(cut + ("…" if len(text) > SNIPPET_LENGTH else ""), False)]
    start = max(0, at - SNIPPET_BEFORE)
    end = min(len(text), start + SNIPPET_LENGTH)
    segments = []
    if start > 0:
        segments.append(Segment("…", False))
    position = start
    while position < end:
        found = folded.find(needle, position, end)
        if found < 0 or found + len(needle) > end:
            segments.append(Segment(text[position:end], False))
            break
        if found > position:
            segments.append(Segment(text[position:found], False))
        segments.append(Segment(text[found:found + len(needle)], True))
        position = found + len(needle)
    if end < len(text):
        segments.append(Segment("…", False))
    return segments


def _identity_matches(identity: SocialIdentity, query: str) -> bool:
    needle = query.casefold()
    handle = needle.lstrip("@") or needle
    return (handle in identity.handle.casefold() or needle in identity.display_name.casefold()
            or identity.external_id == query)


def customer_results(*, user: User, query: str) -> list[Customer]:
    """Customers `user` sees matching `query`, most recently changed first, each with `matching_identities` (the
    identities whose handle, name or platform id matched) and `initials`: three queries."""
    rows = list(customers_search(customer_list_for_user(user=user), query)
                .order_by("-updated_at", "-id")[:CUSTOMER_LIMIT])
    for customer in rows:
        identities = list(customer.identities.all())
        customer.matching_identities = [i for i in identities if _identity_matches(i, query)]
        customer.other_identities = [i for i in identities if i not in customer.matching_identities]
        customer.initials = initials(customer.display_name)
        customer.contact_values = [p.value for p in customer.contact_points.all()]
    return rows


# The newest matches by arrival (primary key), which leaves the plan to PostgreSQL's estimate of how many rows
# match: a word in many messages ("Rechnung" in one of eight) walks the primary key backwards and stops at the
# 50th match (the trigram index would hand over hundreds of thousands of candidates to check and sort: 0.8 to
# 1.2 s at 2,000,000 interactions); a rare word goes through the trigram index, which is fast exactly when
# matches are few. The page then shows them by the platform's time.
_MESSAGE_IDS_SQL = f"""
SELECT id FROM {Interaction._meta.db_table}
WHERE UPPER(text) LIKE UPPER(%(pattern)s) AND NOT is_stub
  AND (%(accounts)s::bigint[] IS NULL OR channel_account_id = ANY(%(accounts)s::bigint[]))
ORDER BY id DESC
LIMIT %(limit)s
"""


def _like_pattern(query: str) -> str:
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def message_results(*, user: User, query: str) -> list[Interaction]:
    """Interactions `user` sees whose text contains `query` (ignoring case), newest first: two queries."""
    if len(query) < MIN_MESSAGE_QUERY:
        return []
    scope = channel_scope_for_user(user)
    with connection.cursor() as cursor:
        cursor.execute(_MESSAGE_IDS_SQL, {
            "accounts": None if scope.unrestricted else sorted(scope.account_ids),
            "pattern": _like_pattern(query), "limit": MESSAGE_LIMIT,
        })
        ids = [row[0] for row in cursor.fetchall()]
    rows = list(
        interaction_list_for_user(user=user).filter(pk__in=ids)
        .annotate(platform=F("channel_account__platform"), account_name=F("channel_account__name"),
                  author_handle=F("identity__handle"), author_name=F("identity__display_name"),
                  customer_name=F("identity__customer__display_name"))
        .defer("attachments")
        .order_by("-occurred_at", "-id")
    ) if ids else []
    for row in rows:
        row.segments = snippet(row.text, query)
        row.kind_label = KIND_LABELS.get(row.kind, row.kind)
        row.is_private = row.kind == Interaction.Kind.DIRECT_MESSAGE
        row.conversation_url = conversation_url(row.conversation_id) if row.conversation_id else ""
    return rows
