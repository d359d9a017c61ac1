"""Customer writes behind the API, in the conventions of services.py: keyword-only, one transaction each,
returning what they wrote. Merge, unmerge and GDPR workflows are not here (they belong to contacts/services.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from contacts.models import Customer
from contacts.search import customers_search_text_refresh
from socialcrm.errors import Conflict, NotFound
from socialcrm.events import emit

# The fields of a customer the API may write.
WRITABLE_FIELDS = ("display_name", "language", "customer_number", "postal_address", "birth_date", "tags", "notes")


def customer_create(
    *, display_name: str = "", language: str = "", customer_number: str = "", postal_address: str = "",
    birth_date: dt.date | None = None, tags: list[str] | None = None, notes: str = "",
) -> Customer:
    """A new customer with no identities yet; announced as `customer.created` (like a batch of ingest's, with the
    ids in `customer_ids`) once committed."""
    with transaction.atomic():
        customer = Customer.objects.create(
            display_name=display_name, language=language, customer_number=customer_number,
            postal_address=postal_address, birth_date=birth_date, tags=list(tags or []), notes=notes,
        )
        customers_search_text_refresh(customer_ids=[customer.pk])
        emit("customer.created", {"customer_ids": [customer.pk]})
    return customer


def customer_update(*, customer_id: int, changes: dict[str, Any]) -> Customer:
    """Change the given fields of a live customer; a tombstone refuses with 409 `customer_merged`."""
    unknown = set(changes) - set(WRITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    with transaction.atomic():
        customer = Customer.objects.select_for_update().filter(pk=customer_id).first()
        if customer is None:
            raise NotFound("No such customer.", code="not_found")
        if customer.merged_into_id is not None:
            raise Conflict(f"Customer {customer_id} was merged into customer {customer.merged_into_id}; "
                           "change the surviving customer instead.", code="customer_merged")
        for name, value in changes.items():
            setattr(customer, name, value)
        customer.save(update_fields=[*changes, "updated_at"])
        if "display_name" in changes:
            customers_search_text_refresh(customer_ids=[customer.pk])
    return customer
