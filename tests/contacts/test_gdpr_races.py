"""An erasure and an ingest batch about the same person at the same moment, on separate connections.

Whichever starts first, nothing of the person is left: an erasure waits for a batch in flight and erases its
rows too, and a batch that starts during an erasure checks the ledger after the erasure committed.
"""

from __future__ import annotations

import pytest

from channels.ingest import ingest
from contacts import gdpr
from contacts.models import Customer, SocialIdentity
from conversations.models import Conversation, Interaction
from tests.channels.factories import author, post
from tests.concurrency import HeldOpen, Worker, wait_until_waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)

ERIKA = author(41, handle="erika_m", display_name="Erika Mustermann")


@pytest.fixture
def erika(account) -> Customer:
    ingest(account, [post("e-1", author=ERIKA, text="Erikas Router blinkt rot", minutes=0)])
    return SocialIdentity.objects.get(external_id=ERIKA.external_id).customer


def nothing_left_of_erika() -> None:
    assert not SocialIdentity.objects.filter(external_id=ERIKA.external_id).exists()
    assert not Customer.objects.exists()
    assert not Interaction.objects.exists()
    assert not Conversation.objects.exists()


def test_an_erasure_waits_for_a_batch_in_flight_and_erases_its_rows_too(account, erika, agent):
    # Seen at the same time as her first message: her identity row is left as it is, not locked.
    with HeldOpen(lambda: ingest(account, [post("e-2", author=ERIKA, text="Erikas zweite Frage", minutes=0)])
                  ) as batch:
        erasure = Worker(lambda: gdpr.customer_erase(customer=erika.pk, actor=agent, reason="Art. 17"))
        erasure.start()
        wait_until_waiting_on_a_lock(erasure)
    batch.outcome()
    event = erasure.outcome()

    assert event.moved["counts"]["conversations.interactions"] == 2
    nothing_left_of_erika()


def test_a_batch_during_an_erasure_reads_the_ledger_after_it_and_recreates_nothing(account, erika, agent):
    erasure = Worker(lambda: gdpr.customer_erase(customer=erika.pk, actor=agent, reason="Art. 17"))
    batch = Worker(lambda: ingest(account, [post("e-3", author=ERIKA, text="Erikas dritte Frage", minutes=30)]))
    # The customer's row held elsewhere stalls the erasure after it took the erasure lock, at its first row lock.
    with HeldOpen(lambda: list(Customer.objects.select_for_update().filter(pk=erika.pk))) as holder:
        erasure.start()
        wait_until_waiting_on_a_lock(erasure)
        batch.start()
        wait_until_waiting_on_a_lock(batch)
    holder.outcome()
    erasure.outcome()
    result = batch.outcome()

    assert (result.erased, result.inserted, result.identities_created) == (1, 0, 0)
    nothing_left_of_erika()
