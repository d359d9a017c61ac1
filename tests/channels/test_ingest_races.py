"""Two batches about the same new author or thread, committed by different workers at the same moment.

The first batch holds its transaction open after ingesting; the second one's insert then waits on the first
one's uncommitted row, and finds it taken when the first commits: the race that `identities_resolve` and
`conversations_touch` settle by using the other batch's row. Their statements insert plainly first and run
again with ON CONFLICT when they collide; with `on_conflict_at_once` they run with ON CONFLICT at once, as
their retry does, so that the retry's own lost race (rows skipped by DO NOTHING) is settled too.
"""

from __future__ import annotations

import datetime as dt
import functools

import pytest

import contacts.services
import conversations.services
from channels.ingest import IngestResult, ingest
from contacts.models import Customer, DedupeOutbox, SocialIdentity
from conversations.models import Conversation, Interaction
from socialcrm.sql import ON_CONFLICT
from tests.concurrency import HeldOpen, Worker, wait_until_waiting_on_a_lock

from .factories import T0, author, post, reply_from_us

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.parametrize("on_conflict_at_once", [False, True])]


@pytest.fixture
def race(account, on_conflict_at_once: bool, monkeypatch):
    if on_conflict_at_once:
        def with_on_conflict(cursor, sql, params, *, constraint, on_conflict):
            cursor.execute(sql.replace(ON_CONFLICT, on_conflict), params)
            return cursor.fetchall()

        monkeypatch.setattr(contacts.services, "fetch_inserting_plainly_first", with_on_conflict)
        monkeypatch.setattr(conversations.services, "fetch_inserting_plainly_first", with_on_conflict)
    return functools.partial(_race, account)


def _race(account, first: list, second: list) -> tuple[IngestResult, IngestResult]:
    """Ingest `first` and hold its transaction open until `second`, ingested concurrently, waits on it."""
    second_batch = Worker(lambda: ingest(account, second))
    with HeldOpen(lambda: ingest(account, first)) as first_batch:
        second_batch.start()
        wait_until_waiting_on_a_lock(second_batch)
    return first_batch.outcome(), second_batch.outcome()


def test_two_batches_creating_one_author_make_one_customer(race):
    renamed = author(1, handle="user1_new", display_name="Erika Mustermann")

    first, second = race([post("1", who=1)], [post("2", author=renamed, minutes=30)])

    assert (first.identities_created, second.identities_created) == (1, 0)
    identity = SocialIdentity.objects.get()
    # The customer the second batch made in vain is gone; its profile news still reached the identity.
    assert list(Customer.objects.values_list("id", flat=True)) == [identity.customer_id]
    assert list(DedupeOutbox.objects.values_list("customer_id", flat=True)) == [identity.customer_id]
    assert (identity.handle, identity.display_name) == ("user1_new", "Erika Mustermann")
    assert identity.customer.search_text.count("ERIKA MUSTERMANN") == 1
    assert (identity.first_seen_at, identity.last_seen_at) == (T0, T0 + dt.timedelta(minutes=30))
    assert set(Interaction.objects.values_list("external_id", "identity_id")) == {("1", identity.pk),
                                                                                   ("2", identity.pk)}


def test_two_batches_opening_one_thread_make_one_conversation(race):
    # Our reply has no customer-side author, so the second batch's first wait is on the conversation.
    first, second = race([post("1", who=1, thread="T")], [reply_from_us("our-1", thread="T", minutes=10)])

    assert (first.inserted, second.inserted) == (1, 1)
    conversation = Conversation.objects.get()
    assert conversation.thread_key == "T"
    assert conversation.identity.external_id == "u1"
    # The second batch moved the clocks of the conversation the first one created.
    assert conversation.first_inbound_at == T0
    assert conversation.first_response_at == T0 + dt.timedelta(minutes=10)
    assert conversation.last_activity_at == T0 + dt.timedelta(minutes=10)
    assert set(Interaction.objects.values_list("external_id", "conversation_id", "identity_id")) == {
        ("1", conversation.pk, conversation.identity_id), ("our-1", conversation.pk, conversation.identity_id),
    }
