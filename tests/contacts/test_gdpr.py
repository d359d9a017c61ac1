"""GDPR export and erasure (`contacts.gdpr`) and the erasure ledger honoured by ingest, on PostgreSQL.

Erika has two identities on two channel accounts; the second came with a customer later merged into her
first one (a tombstone). Max writes in her thread and on the same accounts: nothing of his may be exported
with her, nor erased with her.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from channels.adapters.base import Author, InboundEvent
from channels.ingest import ingest
from channels.models import ChannelAccount, WebhookDelivery
from contacts import gdpr
from contacts.merge import customer_merge
from contacts.models import AuditEvent, ContactPoint, Customer, ErasureLedger, SocialIdentity
from conversations.models import Conversation, ConversationNote, ConversationTag, Interaction
from socialcrm.errors import Conflict
from tests.channels.factories import post, reply_from_us

pytestmark = pytest.mark.django_db

ERIKA = Author(platform="x", external_id="erika-id-1", handle="erika_m", display_name="Erika Mustermann")
ERIKA_ALT = Author(platform="x", external_id="erika-id-2", handle="erika_alt", display_name="E. Mustermann")
MAX = Author(platform="x", external_id="max-id-9", handle="max_o", display_name="Max Otto")
# Everything that identifies Erika: after the erasure no column of any table may hold one of these.
ERIKA_DATA = ("erika-id-1", "erika-id-2", "erika_m", "erika_alt", "Mustermann", "erika@example.org",
              "+4915112345678", "Musterstraße", "Erikas Router", "Erikas Vertrag", "Erika rief an")


@dataclasses.dataclass
class World:
    erika: Customer
    tombstone: Customer
    max: Customer
    erika_events: list[InboundEvent]
    erika_delivery: WebhookDelivery
    max_delivery: WebhookDelivery


def _customer_of(author: Author) -> Customer:
    return SocialIdentity.objects.get(platform="x", external_id=author.external_id).customer


@pytest.fixture
def world(account: ChannelAccount, other_account: ChannelAccount, agent) -> World:
    erika_events = [
        post("e-1", author=ERIKA, text="Erikas Router blinkt rot", minutes=0),
        reply_from_us("our-1", thread="e-1", minutes=5),
        post("e-3", author=ERIKA, text="Erikas Router geht wieder", thread="e-4", minutes=20),
    ]
    ingest(account, [*erika_events, post("m-1", author=MAX, thread="e-1", text="Bei mir auch", minutes=3)])
    alt_events = [post("e-2", author=ERIKA_ALT, text="Erikas Vertrag endet", minutes=10)]
    ingest(other_account, [*alt_events, post("m-2", author=MAX, text="Max fragt nach Tarifen", minutes=11)])

    erika, tombstone, max_ = _customer_of(ERIKA), _customer_of(ERIKA_ALT), _customer_of(MAX)
    Customer.objects.filter(pk=erika.pk).update(postal_address="Musterstraße 1, Bonn", notes="VIP")
    ContactPoint.objects.create(customer=erika, kind="email", value="erika@example.org",
                                normalized="erika@example.org")
    ContactPoint.objects.create(customer=tombstone, kind="phone", value="+49 151 12345678",
                                normalized="+4915112345678")
    customer_merge(target=erika, source=tombstone, actor=agent, reason="same person")

    conversation = Conversation.objects.get(channel_account=account, thread_key="e-4")
    ConversationNote.objects.create(conversation=conversation, author=agent, text="Erika rief an, Rückruf")
    ConversationTag.objects.create(conversation=conversation, name="router")
    max_conversation = Conversation.objects.get(channel_account=other_account, thread_key="m-2")
    ConversationNote.objects.create(conversation=max_conversation, author=agent, text="Max will Angebot")
    erika_delivery = WebhookDelivery.objects.create(
        channel_account=account, received_at=timezone.now(), headers={},
        body=json.dumps({"user": {"id": "erika-id-1", "name": "Erika Mustermann"}}).encode(),
        state=WebhookDelivery.State.PROCESSED)
    max_delivery = WebhookDelivery.objects.create(
        channel_account=account, received_at=timezone.now(), headers={},
        body=json.dumps({"user": {"id": "max-id-9", "name": "Max Otto"}}).encode(),
        state=WebhookDelivery.State.PROCESSED)
    return World(Customer.objects.get(pk=erika.pk), Customer.objects.get(pk=tombstone.pk),
                 Customer.objects.get(pk=max_.pk), [*erika_events, *alt_events], erika_delivery, max_delivery)


def columns_holding(needles: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text, JSON, array or bytea column of the public schema holding a needle."""
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT table_name, column_name, data_type FROM information_schema.columns
            WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea',
                                                            'ARRAY')
            ORDER BY table_name, column_name
        """)
        found = []
        for table, column, data_type in cursor.fetchall():
            expr = f'encode("{column}", \'escape\')' if data_type == "bytea" else f'"{column}"::text'
            for needle in needles:
                cursor.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}" WHERE strpos(lower({expr}), lower(%s)) > 0)',
                               [needle])
                if cursor.fetchone()[0]:
                    found.append((table, column, needle))
    return found


def table_counts() -> dict[str, int]:
    models = (Customer, SocialIdentity, ContactPoint, AuditEvent, ErasureLedger, Conversation, Interaction,
              ConversationNote, ConversationTag, WebhookDelivery)
    return {m._meta.label: m.objects.count() for m in models}


# --- the registry ------------------------------------------------------------------------------------------


def test_every_model_referencing_an_identity_or_a_customer_has_a_handler():
    assert gdpr.unhandled_models() == []
    assert {h.section for h in gdpr.handlers()} >= {"conversations", "webhook_deliveries"}


def test_a_model_without_a_handler_is_reported(monkeypatch):
    monkeypatch.setattr(gdpr, "_handlers", {k: v for k, v in gdpr._handlers.items() if k != "conversations"})

    assert gdpr.unhandled_models() == ["conversations.Conversation", "conversations.Interaction"]


# --- export ------------------------------------------------------------------------------------------------


def test_export_holds_every_row_about_the_person_and_none_about_others(world, agent):
    identity_ids = set(SocialIdentity.objects.filter(customer=world.erika).values_list("pk", flat=True))

    data = gdpr.customer_export(customer=world.tombstone, actor=agent)  # a tombstone means its survivor

    text = json.dumps(data)  # machine-readable as it is
    assert {c["id"] for c in data["customers"]} == {world.erika.pk, world.tombstone.pk}
    assert {i["external_id"] for i in data["identities"]} == {"erika-id-1", "erika-id-2"}
    assert {p["normalized"] for p in data["contact_points"]} == {"erika@example.org", "+4915112345678"}
    assert [e["kind"] for e in data["audit_events"]] == ["merge"]
    section = data["conversations"]
    assert {i["id"] for i in section["interactions"]} == set(
        Interaction.objects.filter(identity_id__in=identity_ids).values_list("pk", flat=True))
    assert {i["external_id"] for i in section["interactions"]} == {"e-1", "our-1", "e-2", "e-3"}
    assert "Erikas Router blinkt rot" in text
    assert "Wir helfen gern" in text
    assert {c["thread_key"] for c in section["conversations"]} == {"e-1", "e-4", "e-2"}
    assert [n["text"] for n in section["notes"]] == ["Erika rief an, Rückruf"]
    assert [t["name"] for t in section["tags"]] == ["router"]
    assert [d["id"] for d in data["webhook_deliveries"]] == [world.erika_delivery.pk]
    for other in ("max-id-9", "max_o", "Max Otto", "Bei mir auch", "Tarifen", "Max will Angebot"):
        assert other not in text
    assert AuditEvent.objects.filter(kind="export", customer_id=world.erika.pk, actor=agent).exists()


# --- erasure -----------------------------------------------------------------------------------------------


def test_erase_leaves_no_row_holding_the_persons_data_and_is_audited(world, agent, account, other_account):
    assert columns_holding(ERIKA_DATA)  # the scan does find her beforehand
    max_rows = (set(Interaction.objects.filter(identity__customer=world.max).values_list("pk", flat=True)),
                set(ConversationNote.objects.filter(text__startswith="Max").values_list("pk", flat=True)))

    event = gdpr.customer_erase(customer=world.erika, actor=agent, reason="Art. 17 request #4711")

    assert columns_holding(ERIKA_DATA) == []
    assert not Customer.objects.filter(pk__in=[world.erika.pk, world.tombstone.pk]).exists()
    assert not WebhookDelivery.objects.filter(pk=world.erika_delivery.pk).exists()
    # Max keeps everything, his comment in her thread too; that conversation stays without her.
    assert set(Interaction.objects.filter(identity__customer=world.max).values_list("pk", flat=True)) == max_rows[0]
    assert set(ConversationNote.objects.values_list("pk", flat=True)) == max_rows[1]
    assert WebhookDelivery.objects.filter(pk=world.max_delivery.pk).exists()
    assert Conversation.objects.get(channel_account=account, thread_key="e-1").identity_id is None
    assert not Conversation.objects.filter(thread_key__in=["e-4", "e-2"]).exists()
    # Audited: who, why, what, with hashes only.
    erase = AuditEvent.objects.get(kind="erase")
    assert erase == event
    assert (erase.actor, erase.actor_label, erase.reason) == (agent, "agent.anna", "Art. 17 request #4711")
    assert erase.moved["counts"]["conversations.interactions"] == 4
    assert {e["kind"] for e in erase.moved["ledger"]} == {"identity", "email", "phone", "thread"}
    # The merge event keeps its skeleton.
    merge = AuditEvent.objects.get(kind="merge")
    assert merge.source_customer_id == world.tombstone.pk
    assert merge.moved["identity_ids"]
    assert ErasureLedger.objects.filter(kind="identity").count() == 2


def test_a_replayed_event_from_before_the_erasure_recreates_nothing(world, agent, account, other_account):
    gdpr.customer_erase(customer=world.erika, actor=agent, reason="Art. 17")
    before = table_counts()

    first = ingest(account, [e for e in world.erika_events if e.external_id != "e-2"])
    second = ingest(other_account, [e for e in world.erika_events if e.external_id == "e-2"])

    assert (first.erased, second.erased) == (3, 1)
    assert table_counts() == before
    assert columns_holding(ERIKA_DATA) == []


def test_a_new_message_after_the_erasure_starts_a_fresh_profile(world, agent, account):
    gdpr.customer_erase(customer=world.erika, actor=agent, reason="Art. 17")
    old_ids = {world.erika.pk, world.tombstone.pk}
    new = dataclasses.replace(post("e-new", author=ERIKA, text="Hallo, ich bin neu hier"),
                              occurred_at=timezone.now() + dt.timedelta(minutes=1))

    result = ingest(account, [world.erika_events[0], new])  # an old replay along with it

    assert (result.inserted, result.erased, result.identities_created) == (1, 1, 1)
    identity = SocialIdentity.objects.get(external_id="erika-id-1")
    fresh = identity.customer
    assert fresh.pk not in old_ids
    assert fresh.merged_into_id is None
    assert not ContactPoint.objects.filter(customer=fresh).exists()
    assert list(identity.interactions.values_list("external_id", flat=True)) == ["e-new"]
    assert not AuditEvent.objects.filter(customer_id=fresh.pk).exists()
    # The ledger stays: an old replay still re-creates nothing.
    assert ingest(account, world.erika_events[:1]).erased == 1
    assert not Interaction.objects.filter(external_id="e-1").exists()


def test_a_legal_hold_on_a_tombstone_blocks_erasure_with_its_reason_and_changes_nothing(world, agent):
    Customer.objects.filter(pk=world.tombstone.pk).update(legal_hold_reason="Litigation 2026-17")
    before = table_counts()
    found = columns_holding(ERIKA_DATA)

    with pytest.raises(Conflict) as raised:
        gdpr.customer_erase(customer=world.erika, actor=agent, reason="Art. 17")

    assert raised.value.code == "legal_hold"
    assert "Litigation 2026-17" in raised.value.detail
    assert table_counts() == before
    assert columns_holding(ERIKA_DATA) == found


def test_scrub_for_erasure_keeps_the_skeleton_of_an_event(world):
    merge = AuditEvent.objects.get(kind="merge")
    before: dict[str, Any] = merge.moved

    AuditEvent.objects.filter(pk=merge.pk).scrub_for_erasure()

    after = AuditEvent.objects.get(pk=merge.pk).moved
    assert after.keys() == before.keys()
    assert after["identity_ids"] == before["identity_ids"]
    assert after["rules"] == before["rules"]
    assert "Musterstraße" not in json.dumps(after)


@pytest.mark.parametrize("external_id", ["12345 ü", 'say "hi"', "back\\slash", "line\nbreak", "bell\x07", "tab\t"])
def test_ledger_hashes_are_django_salted_hmacs_so_existing_entries_still_match(settings, external_id):
    from django.utils.crypto import salted_hmac

    def expected(*parts: object) -> str:
        value = json.dumps([str(p) for p in parts], ensure_ascii=False, separators=(",", ":"))
        return salted_hmac(gdpr._LEDGER_SALT, value, secret=secret or settings.SECRET_KEY,
                           algorithm="sha256").hexdigest()

    for secret in ("a-dedicated-ledger-key", ""):
        settings.GDPR_LEDGER_KEY = secret
        assert gdpr.identity_hash("x", "", external_id) == expected("identity", "x", "", external_id)
        assert gdpr.thread_hash(7, external_id) == expected("thread", 7, external_id)
