"""The duplicate-suggestion queue on real PostgreSQL: ingest queues new customers, the drain scores them."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.ingest import ingest
from contacts.models import AuditEvent, ContactPoint, Customer, DedupeOutbox, DuplicateSuggestion, SocialIdentity
from contacts.suggestions import (
    dedupe_outbox_drain,
    dedupe_outbox_enqueue,
    suggestion_accept,
    suggestion_reject,
    suggestions_sweep_merged,
)
from tests.channels.factories import author, post
from tests.contacts.builders import new_author

pytestmark = pytest.mark.django_db


def ingested(account, name: str, handle: str) -> Customer:
    """A customer created by ingest for a new author with this name and handle."""
    who = new_author()
    ingest(account, [post(who=who, author=author(who, display_name=name, handle=handle))])
    return SocialIdentity.objects.get(platform="x", external_id=f"u{who}").customer


def verified_email(customer: Customer, email: str) -> None:
    ContactPoint.objects.create(customer=customer, kind="email", value=email, normalized=email,
                                verified_at=timezone.now(), verified_by="double-opt-in")


def suggestion_for(a: Customer, b: Customer) -> DuplicateSuggestion | None:
    low, high = sorted([a.pk, b.pk])
    return DuplicateSuggestion.objects.filter(customer_low=low, customer_high=high).first()


@pytest.fixture
def crowd(db) -> None:
    """Background customers, so that a name held by two of them is rare (term frequencies) as in a real base."""
    Customer.objects.bulk_create(Customer(display_name=f"Background {i}") for i in range(2000))


@pytest.fixture
def strong_pair(account) -> tuple[Customer, Customer]:
    a = ingested(account, "Anna Schmidt", "anna_s")
    b = ingested(account, "Anna Schmidt", "schmidt_a_1990")
    verified_email(a, "anna.schmidt@example.de")
    verified_email(b, "anna.schmidt@example.de")
    return a, b


def test_ingest_fills_dedupe_keys_and_queues_new_customers(account):
    customer = ingested(account, "Jürgen Müller", "jm_42")

    customer.refresh_from_db()
    assert {"n:jurgen", "n:muller", "k:657"} <= set(customer.dedupe_keys)
    assert DedupeOutbox.objects.filter(customer_id=customer.pk).exists()


def test_strong_pair_becomes_an_open_explained_suggestion_and_the_outbox_row_goes(strong_pair, settings):
    settings.DEDUPE_AUTO_LINK = False
    a, b = strong_pair

    outcome = dedupe_outbox_drain()

    assert set(outcome.scored) == {a.pk, b.pk}
    suggestion = suggestion_for(a, b)
    assert suggestion is not None
    assert suggestion.status == "open"
    fields = {e["field"]: e for e in suggestion.explanation}
    assert fields["email"]["level"] == "verified_exact"
    assert fields["email"]["bits"] > 0
    assert fields["name_handle"]["level"] == "name_exact"
    assert suggestion.score == pytest.approx(sum(e["bits"] for e in suggestion.explanation), abs=0.01)
    assert suggestion.model_version.startswith("fs1-")
    assert not DedupeOutbox.objects.filter(customer_id__in=[a.pk, b.pk]).exists()
    assert not Customer.objects.filter(pk__in=[a.pk, b.pk], merged_into__isnull=False).exists()


def test_name_only_pair_is_suggested_but_never_auto_linked(account, crowd, settings):
    settings.DEDUPE_AUTO_LINK = True
    a = ingested(account, "Jürgen Müller", "jm_42")
    b = ingested(account, "Jürgen Müller", "juergen_the_second")

    outcome = dedupe_outbox_drain()

    assert outcome.auto_linked == 0
    suggestion = suggestion_for(a, b)
    assert suggestion is not None
    assert suggestion.status == "open"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.AUTO_LINK).exists()
    assert Customer.objects.filter(pk__in=[a.pk, b.pk], merged_into__isnull=True).count() == 2


def test_strong_pair_with_auto_link_on_is_merged_with_an_audit_event(strong_pair, settings):
    settings.DEDUPE_AUTO_LINK = True
    a, b = strong_pair

    outcome = dedupe_outbox_drain()

    assert outcome.auto_linked == 1
    b.refresh_from_db()
    assert b.merged_into_id == a.pk  # the older customer survives
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.AUTO_LINK)
    suggestion = suggestion_for(a, b)
    assert (event.customer_id, event.source_customer_id) == (a.pk, b.pk)
    assert event.actor_label == suggestion.model_version
    assert AuditEvent.objects.get(pk=event.moved["merge_event_id"]).kind == AuditEvent.Kind.MERGE
    assert suggestion.status == "auto_linked"
    # The survivor is queued again, to be scored on its merged profile.
    assert DedupeOutbox.objects.filter(customer_id=a.pk).exists()
    dedupe_outbox_drain()
    assert not DuplicateSuggestion.objects.filter(status="open").exists()


def test_rejected_pair_is_never_suggested_or_auto_linked_again(strong_pair, agent, settings):
    settings.DEDUPE_AUTO_LINK = False
    a, b = strong_pair
    dedupe_outbox_drain()

    suggestion_reject(suggestion=suggestion_for(a, b), actor=agent, reason="twins")

    event = AuditEvent.objects.get(kind=AuditEvent.Kind.SUGGESTION_REJECTED)
    assert (event.customer_id, event.source_customer_id, event.actor_id) == (a.pk, b.pk, agent.pk)
    settings.DEDUPE_AUTO_LINK = True
    dedupe_outbox_enqueue(customer_ids=[a.pk, b.pk])
    outcome = dedupe_outbox_drain()
    assert set(outcome.scored) == {a.pk, b.pk}
    assert outcome.auto_linked == 0
    assert suggestion_for(a, b).status == "rejected"
    assert DuplicateSuggestion.objects.count() == 1
    assert Customer.objects.filter(pk__in=[a.pk, b.pk], merged_into__isnull=True).count() == 2


def test_accept_merges_into_the_older_customer(strong_pair, agent, settings):
    settings.DEDUPE_AUTO_LINK = False
    a, b = strong_pair
    dedupe_outbox_drain()

    event = suggestion_accept(suggestion=suggestion_for(a, b), actor=agent)

    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert (event.kind, event.customer_id, event.source_customer_id) == ("merge", a.pk, b.pk)
    suggestion = suggestion_for(a, b)
    assert (suggestion.status, suggestion.decided_by_id) == ("accepted", agent.pk)
    assert suggestion.decided_at is not None


def test_sweep_closes_open_suggestions_of_customers_merged_elsewhere(account, crowd):
    a = ingested(account, "Jürgen Müller", "jm_42")
    b = ingested(account, "Jürgen Müller", "juergen_two")
    c = ingested(account, "Jürgen Müller", "juergen_three")
    dedupe_outbox_drain(auto_link=False)
    assert suggestion_for(a, c) is not None
    Customer.objects.filter(pk=c.pk).update(merged_into=b)  # a merge these services did not see

    assert suggestions_sweep_merged() == 2
    assert suggestion_for(a, c) is None
    assert suggestion_for(b, c) is None
    assert DedupeOutbox.objects.filter(customer_id=b.pk).exists()


def test_drain_costs_two_statements_per_customer(account):
    def queries(n: int) -> int:
        for _ in range(n):
            ingested(account, "Maria Weber", f"mw_{new_author()}")
        with CaptureQueriesContext(connection) as ctx:
            outcome = dedupe_outbox_drain(auto_link=False)
        assert len(outcome.scored) == n
        return len(ctx.captured_queries)

    small, large = queries(3), queries(6)

    assert large - small == 2 * 3
    # Lock, subjects' profiles, cannot-link pairs, stale deletes, upsert, outbox delete, and the savepoint pair.
    assert small - 2 * 3 <= 8


@pytest.mark.django_db(transaction=True)
def test_two_drains_at_once_never_score_the_same_customer():
    customers = Customer.objects.bulk_create(Customer(display_name=f"Maria Weber {i}") for i in range(12))
    dedupe_outbox_enqueue(customer_ids=[c.pk for c in customers])
    scored: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def drain(slot: int) -> None:
        try:
            start.wait()
            while True:
                outcome = dedupe_outbox_drain(limit=2, auto_link=False)
                if not outcome.taken:
                    return
                scored[slot].extend(outcome.scored)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = scored[0] + scored[1]
    assert sorted(everything) == sorted(c.pk for c in customers)  # each exactly once
    assert not DedupeOutbox.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_drain_skips_rows_another_drain_holds():
    customers = Customer.objects.bulk_create(Customer(display_name=f"Eva Braun {i}") for i in range(4))
    dedupe_outbox_enqueue(customer_ids=[c.pk for c in customers])
    held: list[int] = []
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        from django.db import transaction

        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT customer_id FROM contacts_dedupeoutbox ORDER BY enqueued_at, id LIMIT 2 "
                               "FOR UPDATE SKIP LOCKED")
                held.extend(row[0] for row in cursor.fetchall())
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    try:
        outcome = dedupe_outbox_drain(auto_link=False)
    finally:
        release.set()
        thread.join()

    assert set(outcome.scored) == {c.pk for c in customers} - set(held)
    assert set(DedupeOutbox.objects.values_list("customer_id", flat=True)) == set(held)
