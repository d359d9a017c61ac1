"""Reads of customers and of the resolution log."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from socialcrm.errors import NotFound

from .models import AuditEvent, Customer

# Follows `merged_into` from a customer to the live customer at the end of the chain (a tombstone's target may
# itself have been merged later). The depth limit only guards against a cycle, which merges cannot create.
_RESOLVE_SQL = """
WITH RECURSIVE chain AS (
    SELECT id, merged_into_id, 0 AS depth FROM contacts_customer WHERE id = %s
    UNION ALL
    SELECT c.id, c.merged_into_id, chain.depth + 1
    FROM contacts_customer c JOIN chain ON c.id = chain.merged_into_id
    WHERE chain.depth < 64
)
SELECT c.* FROM contacts_customer c WHERE c.id = (SELECT id FROM chain WHERE merged_into_id IS NULL LIMIT 1)
"""


def customer_resolve(customer_id: int) -> Customer:
    """The live customer `customer_id` is or was merged into (itself if it is live), in one query.

    For API and console redirects from a tombstone to its survivor. Raises `NotFound` for an unknown id.
    """
    rows = list(Customer.objects.raw(_RESOLVE_SQL, [customer_id]))
    if not rows:
        raise NotFound(f"customer {customer_id} does not exist", code="customer_not_found", field="customer_id")
    return rows[0]


def customer_audit_events(*, customer_id: int) -> QuerySet[AuditEvent]:
    """The resolution log of one customer, newest first: every event with it on either side."""
    return (
        AuditEvent.objects.filter(Q(customer_id=customer_id) | Q(source_customer_id=customer_id))
        .select_related("actor")
        .order_by("-created_at", "-id")
    )
