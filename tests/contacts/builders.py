"""Builders and snapshots for the merge tests: customers with identities, contact points and history."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.db import connection

from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.models import ContactPoint, Customer, SocialIdentity
from conversations.models import Interaction
from conversations.selectors import customer_timeline
from tests.channels.factories import post

_authors = itertools.count(1000)


def new_author() -> int:
    """A number for `tests.channels.factories.author` not used before in this process."""
    return next(_authors)


def customer_with_history(account: ChannelAccount, *, identities: int = 1, posts: int = 1,
                          **fields: Any) -> Customer:
    """A customer with `fields`, owning `identities` identities made by ingest, each with `posts` interactions.

    Ingest makes a customer per new identity; the identities are moved to the customer built here and those
    customers, left empty, are removed (test setup only: services never delete customers).
    """
    customer = Customer.objects.create(**fields)
    authors = [new_author() for _ in range(identities)]
    if authors:
        ingest(account, [post(who=who, minutes=i * 10 + k) for i, who in enumerate(authors) for k in range(posts)])
        made = SocialIdentity.objects.filter(platform="x", external_id__in=[f"u{who}" for who in authors])
        helpers = set(made.values_list("customer_id", flat=True))
        made.update(customer=customer)
        Customer.objects.filter(pk__in=helpers).delete()
    return customer


def author_of(identity: SocialIdentity) -> int:
    """The `who` number the factories used for an identity made by `customer_with_history`."""
    return int(identity.external_id.removeprefix("u"))


def add_contact_point(customer: Customer, kind: str, value: str, *,
                      verified_at: dt.datetime | None = None, verified_by: str = "") -> ContactPoint:
    return ContactPoint.objects.create(customer=customer, kind=kind, value=value, normalized=value.lower(),
                                       verified_at=verified_at, verified_by=verified_by)


def snapshot(customer_ids: Iterable[int]) -> dict[str, Any]:
    """Everything a merge may touch of these customers, without the `updated_at` clocks."""
    ids = sorted(customer_ids)
    return {
        "customers": list(Customer.objects.filter(pk__in=ids).order_by("pk").values(
            "pk", "display_name", "postal_address", "birth_date", "language", "customer_number", "tags", "notes",
            "merged_into_id", "created_at")),
        "contact_points": list(ContactPoint.objects.filter(customer_id__in=ids).order_by("pk").values(
            "pk", "customer_id", "kind", "value", "normalized", "verified_at", "verified_by", "created_at")),
        "identities": list(SocialIdentity.objects.filter(customer_id__in=ids).order_by("pk").values()),
    }


def timeline_ids(customer_id: int, *, page: int = 500) -> list[int]:
    """Every interaction id of a customer's timeline, read page by page."""
    ids: list[int] = []
    before = None
    while True:
        rows = customer_timeline(customer_id=customer_id, limit=page, before=before)
        ids.extend(r.pk for r in rows)
        if len(rows) < page:
            return ids
        before = (rows[-1].occurred_at, rows[-1].pk)


def interactions_of(customer_id: int) -> set[int]:
    """The ids of the interactions (not stubs) whose identity belongs to the customer."""
    return set(Interaction.objects.filter(identity__customer_id=customer_id, is_stub=False)
               .values_list("pk", flat=True))


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until_blocked(pid: int, thread: threading.Thread, *, timeout: float = 10.0) -> bool:
    """Wait until the backend `pid` waits for a lock (True), or `thread` ends first (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and thread.is_alive():
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return True
        time.sleep(0.01)
    return False
