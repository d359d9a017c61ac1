"""Reads of conversations and interactions.

The `*_for_user` selectors apply the visibility rule of `access.selectors`: a user restricted to some teams
sees only the conversations, interactions and notes on their teams' channel accounts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet

from access.selectors import channel_scope_for_user
from socialcrm.errors import NotFound

from .models import Conversation, ConversationNote, ConversationTag, Interaction

User = AbstractBaseUser | AnonymousUser

# One LATERAL index scan per identity of the customer over (identity, occurred_at DESC, id DESC), then one
# ORDER BY ... LIMIT over at most `limit` rows per identity: a merge of newest-first streams that costs the
# same whether the customer's identities hold a hundred interactions or a hundred thousand. A plain
# `identity_id IN (...) ORDER BY ...` has to read and sort every row of every identity instead. Only the keys
# travel through the merge; the page's rows are read once at the end, without the raw platform payload.
# For a user who sees some channel accounts, only identities with a conversation on one of them are scanned
# (the rule that makes a customer visible at all, `identities_in_view_of_accounts`): an identity whose history
# lies on hidden accounts would otherwise be read to its end to find nothing (16.8 ms -> 0.8 ms for a customer
# with 50,000 interactions, bench/console.py).
_TIMELINE_COLUMNS = ", ".join(
    f"i.{f.column}" for f in Interaction._meta.concrete_fields if f.name not in ("raw", "text_words")
)
_TIMELINE_SQL = f"""
SELECT {_TIMELINE_COLUMNS}
FROM (
    SELECT x.id, x.occurred_at FROM contacts_socialidentity si
    CROSS JOIN LATERAL (
        SELECT id, occurred_at FROM conversations_interaction x
        WHERE x.identity_id = si.id AND NOT x.is_stub
          AND (%(before_at)s::timestamptz IS NULL OR (x.occurred_at, x.id) < (%(before_at)s, %(before_id)s))
          AND (%(accounts)s::bigint[] IS NULL OR x.channel_account_id = ANY(%(accounts)s::bigint[]))
        ORDER BY x.occurred_at DESC, x.id DESC
        LIMIT %(limit)s
    ) x
    WHERE si.customer_id = %(customer_id)s
      AND (%(accounts)s::bigint[] IS NULL OR EXISTS (
          SELECT 1 FROM conversations_conversation c
          WHERE c.identity_id = si.id AND c.channel_account_id = ANY(%(accounts)s::bigint[])))
    ORDER BY x.occurred_at DESC, x.id DESC
    LIMIT %(limit)s
) page
JOIN conversations_interaction i ON i.id = page.id
ORDER BY i.occurred_at DESC, i.id DESC
"""


def customer_timeline(
    *, customer_id: int, limit: int = 50, before: tuple[dt.datetime, int] | None = None,
    channel_account_ids: Collection[int] | None = None,
) -> list[Interaction]:
    """A customer's interactions across every channel and identity, newest first.

    `before` is the (occurred_at, id) of the last row of the previous page: keyset pagination, so a page
    10,000 rows deep costs what the first page costs. `channel_account_ids`, when given, keeps only the
    interactions on those accounts (what a user restricted to some teams may see). One query: related rows
    are not loaded, and `raw` is deferred (read on access).
    """
    before_at, before_id = before if before is not None else (None, 0)
    accounts = sorted(channel_account_ids) if channel_account_ids is not None else None
    return list(Interaction.objects.raw(
        _TIMELINE_SQL,
        {"customer_id": customer_id, "limit": limit, "before_at": before_at, "before_id": before_id,
         "accounts": accounts},
    ))


def identities_in_view_of_accounts(account_ids: frozenset[int]) -> Q:
    """The condition on SocialIdentity for identities with a conversation on one of `account_ids`.

    Registered with `contacts.api.selectors.register_identity_scope`: it decides which customers a user
    restricted to those accounts sees.
    """
    return Q(Exists(Conversation.objects.filter(identity_id=OuterRef("pk"), channel_account_id__in=account_ids)))


def conversation_list_for_user(*, user: User) -> QuerySet[Conversation]:
    """Conversations on the channel accounts `user` may see, with their customer id and tags."""
    queryset = Conversation.objects.annotate(customer_id=F("identity__customer_id")).prefetch_related(
        Prefetch("tags", queryset=ConversationTag.objects.order_by("name"))
    )
    return channel_scope_for_user(user).limit(queryset)


def conversation_get_for_user(*, user: User, conversation_id: int) -> Conversation:
    """A conversation `user` may see; NotFound (a 404) for any other id."""
    conversation = conversation_list_for_user(user=user).filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("No such conversation.", code="not_found")
    return conversation


def conversation_notes_for_user(*, user: User, conversation_id: int) -> QuerySet[ConversationNote]:
    """The notes of a conversation `user` may see (NotFound otherwise)."""
    conversations = channel_scope_for_user(user).limit(Conversation.objects.filter(pk=conversation_id))
    if not conversations.exists():
        raise NotFound("No such conversation.", code="not_found")
    return ConversationNote.objects.filter(conversation_id=conversation_id)


def interaction_list_for_user(*, user: User) -> QuerySet[Interaction]:
    """Interactions on the channel accounts `user` may see (stubs left out), with their customer id.

    The raw platform payload is not loaded: the API does not return it.
    """
    queryset = (
        Interaction.objects.filter(is_stub=False)
        .annotate(customer_id=F("identity__customer_id"))
        .defer("raw", "text_words")
    )
    return channel_scope_for_user(user).limit(queryset)


def interaction_get_for_user(*, user: User, interaction_id: int) -> Interaction:
    """An interaction `user` may see; NotFound (a 404) for any other id."""
    interaction = interaction_list_for_user(user=user).filter(pk=interaction_id).first()
    if interaction is None:
        raise NotFound("No such interaction.", code="not_found")
    return interaction


# How many of an identity's latest inbound conversations, and how many of a conversation's latest inbound
# interactions, the co-presence lookup reads: index range scans of bounded length whatever the history.
COPRESENCE_THREADS_PER_IDENTITY = 200
COPRESENCE_AUTHORS_PER_THREAD = 200

_COPRESENCE_SQL = """
WITH threads AS (
    SELECT DISTINCT si.customer_id, t.conversation_id
    FROM contacts_socialidentity si
    CROSS JOIN LATERAL (
        SELECT x.conversation_id FROM conversations_interaction x
        WHERE x.identity_id = si.id AND x.direction = 'in' AND NOT x.is_stub AND x.conversation_id IS NOT NULL
        ORDER BY x.occurred_at DESC, x.id DESC
        LIMIT %(threads)s
    ) t
    WHERE si.customer_id = ANY(%(customers)s)
)
SELECT DISTINCT th.customer_id, other.customer_id
FROM threads th
CROSS JOIN LATERAL (
    SELECT y.identity_id FROM conversations_interaction y
    WHERE y.conversation_id = th.conversation_id AND y.direction = 'in' AND NOT y.is_stub
    ORDER BY y.occurred_at DESC, y.id DESC
    LIMIT %(authors)s
) a
JOIN contacts_socialidentity other ON other.id = a.identity_id
WHERE other.customer_id <> th.customer_id
"""


def copresent_customer_pairs(customer_ids: Collection[int]) -> set[frozenset[int]]:
    """Pairs {a, b}, a among `customer_ids` and b any other customer, whose identities both authored inbound
    interactions in one conversation (a group thread): one statement.

    Per identity of the given customers it reads its latest `COPRESENCE_THREADS_PER_IDENTITY` inbound
    interactions (`interaction_timeline_idx`), and per conversation found its latest
    `COPRESENCE_AUTHORS_PER_THREAD` inbound interactions (`interaction_thread_idx`), so the cost is bounded
    whatever the history. Registered with `contacts.copresence` as contrary dedupe evidence.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_COPRESENCE_SQL, {"customers": ids, "threads": COPRESENCE_THREADS_PER_IDENTITY,
                                         "authors": COPRESENCE_AUTHORS_PER_THREAD})
        return {frozenset(row) for row in cursor.fetchall()}
