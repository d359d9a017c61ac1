import dataclasses
import datetime as dt
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.adapters.base import MAX_TEXT, EventKind, InboundEvent
from channels.ingest import ingest
from contacts.models import Customer, SocialIdentity
from conversations.models import Conversation, Interaction

from .factories import T0, author, batch, delete, edit, post, reply_from_us

pytestmark = pytest.mark.django_db


def snapshot() -> dict[str, list[dict]]:
    """Every stored row of the tables ingest writes, in a stable order."""
    return {
        "customers": list(Customer.objects.order_by("id").values()),
        "identities": list(SocialIdentity.objects.order_by("id").values()),
        "conversations": list(Conversation.objects.order_by("id").values()),
        "interactions": list(Interaction.objects.order_by("id").values()),
    }


def interaction_state(account, external_id: str) -> dict:
    """What an interaction looks like to a reader, without ids and the local receive time."""
    return Interaction.objects.filter(channel_account=account, external_id=external_id).values(
        "kind", "direction", "text", "occurred_at", "edited_at", "deleted_at", "attachments", "raw", "is_stub",
        "reply_to_external_id", "conversation__thread_key", "identity__external_id",
    ).get()


def test_new_author_gets_identity_and_customer_and_conversation(account):
    result = ingest(account, [post("100", who=7, text="Kein Internet seit heute früh")])

    assert result.inserted == 1
    assert result.identities_created == 1
    identity = SocialIdentity.objects.get(platform="x", scope="", external_id="u7")
    assert identity.handle == "user7"
    assert identity.customer.display_name == "User 7"
    interaction = Interaction.objects.get(external_id="100")
    assert interaction.identity == identity
    assert interaction.conversation.thread_key == "100"
    assert interaction.conversation.identity == identity
    assert interaction.conversation.first_inbound_at == T0
    assert interaction.text == "Kein Internet seit heute früh"


def test_repeat_author_in_one_batch_becomes_one_customer(account):
    ingest(account, [post("1", who=1), post("2", who=1, minutes=5), post("3", who=2)])

    assert Customer.objects.count() == 2
    assert SocialIdentity.objects.get(external_id="u1").interactions.count() == 2


def test_same_batch_twice_leaves_identical_rows(account):
    events = [*batch(50), reply_from_us("our-1", thread="t-0-3", minutes=60), edit("t-0-7", minutes=70, text="neu")]
    first = ingest(account, events)
    before = snapshot()

    second = ingest(account, events)

    assert snapshot() == before
    assert first.inserted == 51
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 51)
    assert second.identities_created == 0


def test_later_batch_refreshes_profile_without_new_customer(account):
    ingest(account, [post("1", who=1)])
    renamed = author(1, handle="user1_new", display_name="Erika Mustermann")

    ingest(account, [post("2", author=renamed, minutes=30)])

    identity = SocialIdentity.objects.get(external_id="u1")
    assert (identity.handle, identity.display_name) == ("user1_new", "Erika Mustermann")
    assert identity.first_seen_at == T0
    assert identity.last_seen_at == T0 + dt.timedelta(minutes=30)
    assert Customer.objects.count() == 1


LIFECYCLE = [
    post("m1", who=3, text="original", minutes=0),
    edit("m1", minutes=5, text="first edit"),
    edit("m1", minutes=9, text="second edit"),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_create_and_edits_converge_in_any_order(account, order):
    for i in order:
        ingest(account, [LIFECYCLE[i]])

    state = interaction_state(account, "m1")
    assert state["text"] == "second edit"
    assert state["edited_at"] == T0 + dt.timedelta(minutes=9)
    assert state["occurred_at"] == T0
    assert state["is_stub"] is False
    assert state["identity__external_id"] == "u3"
    assert state["raw"] == {"id": "m1", "text": "original"}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_delete_wins_in_any_order_and_late_create_never_undoes_it(account, order):
    events = [*LIFECYCLE, delete("m1", minutes=12)]
    for i in order:
        ingest(account, [events[i]])

    state = interaction_state(account, "m1")
    assert state["deleted_at"] == T0 + dt.timedelta(minutes=12)
    assert state["edited_at"] == T0 + dt.timedelta(minutes=9)
    assert (state["text"], state["attachments"], state["raw"]) == ("", [], {})
    assert state["is_stub"] is False
    assert state["kind"] == "mention"


def test_whole_lifecycle_in_one_batch_equals_one_by_one(account, other_account):
    events = [*LIFECYCLE, delete("m1", minutes=12)]
    ingest(account, list(reversed(events)))
    for event in events:
        ingest(other_account, [event])

    assert interaction_state(account, "m1") == interaction_state(other_account, "m1")


def test_edit_before_create_is_invisible_stub_until_create(account):
    ingest(account, [edit("m9", minutes=5, text="edited first")])

    stub = Interaction.objects.get(external_id="m9")
    assert stub.is_stub
    assert stub.conversation is None
    assert stub.identity is None
    assert Conversation.objects.count() == 0

    ingest(account, [post("m9", who=4, text="created late")])

    stub.refresh_from_db()
    assert (stub.is_stub, stub.text, stub.occurred_at) == (False, "edited first", T0)
    assert stub.conversation.thread_key == "m9"


def test_redelivery_with_more_fields_fills_them(account):
    ingest(account, [post("m2", text="")])

    ingest(account, [post("m2", text="now with text", attachments=({"type": "photo", "url": "https://x/p.jpg"},))])

    row = Interaction.objects.get(external_id="m2")
    assert row.text == "now with text"
    assert row.attachments == [{"type": "photo", "url": "https://x/p.jpg"}]


def test_malformed_event_is_rejected_with_reason_and_rest_stored(account):
    good = post("ok-1")
    no_id = dataclasses.replace(post("x"), external_id="")
    naive_time = dataclasses.replace(post("naive"), occurred_at=dt.datetime(2026, 1, 1))  # noqa: DTZ001
    no_thread = dataclasses.replace(post("lost"), thread_key="")

    result = ingest(account, [no_id, good, "not an event", naive_time, no_thread, post("ok-2")])

    assert result.inserted == 2
    assert set(Interaction.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}
    reasons = {r.index: r.reason for r in result.rejected}
    assert reasons == {
        0: "external_id is missing",
        2: "not an InboundEvent: str",
        3: "occurred_at must be a timezone-aware datetime",
        4: "thread_key is missing",
    }


def test_hostile_text_is_stored_safely(account):
    huge = "A" * (MAX_TEXT + 10)
    events = [
        post("nul", text="bad\x00byte", raw={"text": "bad\x00byte", "k\x00": ["\x00"]}),
        post("surrogate", text="lone \ud800 surrogate"),
        post("huge", text=huge),
        post("script", text="<script>alert(1)</script>"),
    ]

    result = ingest(account, events)

    assert result.inserted == 4
    assert not result.rejected
    rows = {i.external_id: i for i in Interaction.objects.all()}
    assert rows["nul"].text == "badbyte"
    assert rows["nul"].raw == {"text": "badbyte", "k": [""]}
    assert rows["surrogate"].text == "lone ? surrogate"
    assert len(rows["huge"].text) == MAX_TEXT
    assert rows["huge"].raw["_socialcrm_truncated_text"] == MAX_TEXT + 10
    assert rows["script"].text == "<script>alert(1)</script>"  # stored as given; escaped wherever shown


def test_outbound_reply_sets_first_response_and_never_becomes_a_customer(account):
    ingest(account, [post("q1", who=5, minutes=0)])

    ingest(account, [reply_from_us("a1", thread="q1", minutes=4)])

    conversation = Conversation.objects.get(thread_key="q1")
    assert conversation.first_response_at == T0 + dt.timedelta(minutes=4)
    assert conversation.last_activity_at == T0 + dt.timedelta(minutes=4)
    reply = Interaction.objects.get(external_id="a1")
    assert reply.direction == "out"
    assert reply.identity == conversation.identity  # the addressee, so it shows on the customer's timeline
    assert not SocialIdentity.objects.filter(external_id="brand-1").exists()


def test_new_inbound_after_resolve_reopens_but_replay_does_not(account):
    ingest(account, [post("q1", minutes=0)])
    conversation = Conversation.objects.get(thread_key="q1")
    Conversation.objects.filter(pk=conversation.pk).update(status="resolved", resolved_at=T0 + dt.timedelta(minutes=10))

    ingest(account, [post("q1", minutes=0)])
    conversation.refresh_from_db()
    assert conversation.status == "resolved"

    ingest(account, [post("q2", thread="q1", minutes=20, kind=EventKind.REPLY)])
    conversation.refresh_from_db()
    assert (conversation.status, conversation.resolved_at) == ("open", None)


def test_same_external_id_on_two_accounts_is_two_interactions(account, other_account):
    ingest(account, [post("shared-id")])
    ingest(other_account, [post("shared-id")])

    assert Interaction.objects.filter(external_id="shared-id").count() == 2
    assert Customer.objects.count() == 1  # same author on the same network is one identity


def count_queries(account, events: list[InboundEvent]) -> int:
    with CaptureQueriesContext(connection) as ctx:
        ingest(account, events)
    return len(ctx.captured_queries)


def test_query_count_is_fixed_whatever_the_batch_size(account, django_assert_max_num_queries):
    small_new = count_queries(account, batch(10, start=0))
    large_new = count_queries(account, batch(1000, start=10_000))
    # Known identities and threads mixed with new ones: the update path as well.
    small_mixed = count_queries(account, batch(10, start=0) + batch(10, start=20_000))
    large_mixed = count_queries(account, batch(1000, start=10_000) + batch(1000, start=30_000))

    assert small_new == large_new
    assert small_mixed == large_mixed
    # A savepoint, the erasure lock and check, 3 stagings (their COPY runs on the raw psycopg cursor) and 3 merges,
    # two of them in a savepoint of their own.
    with django_assert_max_num_queries(14):
        ingest(account, batch(1000, start=10_000) + batch(1000, start=90_000))

