"""Reads behind the console's search: customers (names, handles, e-mails, phones, customer numbers) and message text.

Customers come from `contacts.api.selectors.customers_search` over `customer_list_for_user`, the API's own search, so
the console and `GET /api/v1/customers/?q=` find the same people. Messages come from `interaction_list_for_user`
holding every word of q (as a word or the start of one), through the index of the texts' words (conversations
migration 0008; see `message_ids`); queries shorter than three characters search customers only.

Both lists are capped (no pagination): search is for finding someone, the profile and the inbox are for reading.
Each costs a fixed number of queries: customers with their identities and contact points (three), messages in two
(their ids, then the rows with their channel account, author and customer).
"""

from __future__ import annotations

import dataclasses
import re

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.postgres.search import SearchQuery
from django.db.models import F, QuerySet

from contacts.api.selectors import customer_list_for_user, customers_search
from contacts.models import Customer, SocialIdentity
from conversations.models import Interaction
from conversations.selectors import interaction_list_for_user

from .customers import KIND_LABELS, conversation_url, initials

User = AbstractBaseUser | AnonymousUser

MIN_QUERY = 2
MIN_MESSAGE_QUERY = 3  # shorter prefixes match too many words to be worth it
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


MAX_WORDS = 8


def message_words(query: str) -> list[str]:
    """The words of `query` a message must contain (each as a word or the start of one), lower-cased."""
    return [w for w in re.findall(r"\w+", query.lower()) if w.strip("_")][:MAX_WORDS]


def message_ids(*, user: User, words: list[str], limit: int = MESSAGE_LIMIT) -> QuerySet[Interaction]:
    """The ids of the newest (by arrival: primary key) interactions `user` sees that hold every word of `words`.

    The words of a message are stored and indexed (`Interaction.text_words`, to_tsvector('simple', text)); each query
    word matches a word of the text or the start of one (`rech` finds "Rechnung"). The order by primary key leaves
    the plan to PostgreSQL's estimate of how many rows match: a word in many messages ("Rechnung" in one of eight)
    walks the primary key backwards and stops at the limit, a rare one goes through the index, which is fast
    exactly when matches are few.
    """
    tsquery = " & ".join(f"{word}:*" for word in words)  # only \w characters: nothing of tsquery's syntax
    return (
        interaction_list_for_user(user=user)
        .filter(text_words=SearchQuery(tsquery, search_type="raw", config="simple"))
        .order_by("-pk")
        .values_list("pk", flat=True)[:limit]
    )


def message_results(*, user: User, query: str) -> list[Interaction]:
    """Interactions `user` sees that contain the words of `query` (or words starting so), newest first: two
    queries."""
    words = message_words(query) if len(query) >= MIN_MESSAGE_QUERY else []
    ids = list(message_ids(user=user, words=words)) if words else []
    rows = list(
        interaction_list_for_user(user=user).filter(pk__in=ids)
        .annotate(platform=F("channel_account__platform"), account_name=F("channel_account__name"),
                  author_handle=F("identity__handle"), author_name=F("identity__display_name"),
                  customer_name=F("identity__customer__display_name"))
        .defer("attachments")
        .order_by("-occurred_at", "-id")
    ) if ids else []
    for row in rows:
        row.segments = snippet(row.text, query) if query.lower() in row.text.lower() else snippet(row.text, words[0])
        row.kind_label = KIND_LABELS.get(row.kind, row.kind)
        row.is_private = row.kind == Interaction.Kind.DIRECT_MESSAGE
        row.conversation_url = conversation_url(row.conversation_id) if row.conversation_id else ""
    return rows
