"""Reads of conversations and interactions."""

from __future__ import annotations

import datetime as dt

from .models import Interaction

# One LATERAL index scan per identity of the customer over (identity, occurred_at DESC, id DESC), then one
# ORDER BY ... LIMIT over at most `limit` rows per identity: a merge of newest-first streams that costs the
# same whether the customer's identities hold a hundred interactions or a hundred thousand. A plain
# `identity_id IN (...) ORDER BY ...` has to read and sort every row of every identity instead.
_TIMELINE_SQL = """
SELECT i.* FROM contacts_socialidentity si
CROSS JOIN LATERAL (
    SELECT * FROM conversations_interaction x
    WHERE x.identity_id = si.id AND NOT x.is_stub
      AND (%(before_at)s::timestamptz IS NULL OR (x.occurred_at, x.id) < (%(before_at)s, %(before_id)s))
    ORDER BY x.occurred_at DESC, x.id DESC
    LIMIT %(limit)s
) i
WHERE si.customer_id = %(customer_id)s
ORDER BY i.occurred_at DESC, i.id DESC
LIMIT %(limit)s
"""


def customer_timeline(
    *, customer_id: int, limit: int = 50, before: tuple[dt.datetime, int] | None = None
) -> list[Interaction]:
    """A customer's interactions across every channel and identity, newest first.

    `before` is the (occurred_at, id) of the last row of the previous page: keyset pagination, so a page
    10,000 rows deep costs what the first page costs.
    """
    before_at, before_id = before if before is not None else (None, 0)
    rows = Interaction.objects.raw(
        _TIMELINE_SQL,
        {"customer_id": customer_id, "limit": limit, "before_at": before_at, "before_id": before_id},
    )
    return list(rows.prefetch_related("identity", "conversation__channel_account"))
