"""Merge, unmerge, link and unlink: every rule and every refusal, the audit log, query counts, concurrency."""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any

import psycopg.errors
import pytest
from django.db import OperationalError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.merge import NOTES_SEPARATOR, ContactPointOutcome, ErrorCode, Rule
from contacts.models import AuditEvent, AuditLogIsAppendOnly, Customer, SocialIdentity
from contacts.selectors import customer_audit_events
from contacts.services import (
    customer_merge,
    customer_merge_preview,
    customer_resolve,
    customer_unmerge,
    identity_link,
    identity_unlink,
)
from conversations.models import Interaction
from socialcrm.errors import Conflict, NotFound, ServiceError
from tests.channels.factories import post

from .builders import (
    add_contact_point,
    author_of,
    backend_pid,
    customer_with_history,
    interactions_of,
    snapshot,
    timeline_ids,
    wait_until_blocked,
)

VERIFIED = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)



@pytest.fixture
def pair(account: ChannelAccount) -> tuple[Customer, Customer]:
    target = customer_with_history(account, identities=1, posts=2, display_name="Erika Mustermann")
    source = customer_with_history(account, identities=2, posts=3, display_name="erika_m")
    return target, source


def refresh(*customers: Customer) -> None:
    for c in customers:
        c.refresh_from_db()


# --- merge: what moves ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_merge_moves_identities_and_keeps_audit_row(pair, agent):
    target, source = pair
    source_identities = sorted(source.identities.values_list("pk", flat=True))
    history = interactions_of(target.pk) | interactions_of(source.pk)

    event = customer_merge(target=target, source=source, actor=agent, reason="same person, confirmed by phone")

    refresh(target, source)
    assert source.merged_into_id == target.pk
    assert set(SocialIdentity.objects.filter(customer=target).values_list("pk", flat=True)) >= set(source_identities)
    assert not source.identities.exists()
    assert set(timeline_ids(target.pk)) == history
    assert timeline_ids(source.pk) == []
    assert (event.kind, event.customer_id, event.source_customer_id) == ("merge", target.pk, source.pk)
    assert (event.actor, event.actor_label, event.reason) == (agent, "agent.anna", "same person, confirmed by phone")
    assert event.moved["identity_ids"] == source_identities
    assert event.undone_by is None


@pytest.mark.django_db
def test_merge_by_a_rule_records_the_rule_as_actor(pair):
    target, source = pair

    event = customer_merge(target=target.pk, source=source.pk, actor="rule:verified-phone")

    assert (event.actor, event.actor_label) == (None, "rule:verified-phone")


@pytest.mark.django_db
@pytest.mark.parametrize("actor", [None, "", "   "])
def test_merge_without_an_actor_is_refused(pair, actor):
    target, source = pair

    with pytest.raises(ServiceError) as refused:
        customer_merge(target=target, source=source, actor=actor)

    assert (refused.value.code, refused.value.field) == (ErrorCode.ACTOR_REQUIRED, "actor")
    assert not AuditEvent.objects.exists()


# --- merge: field rules --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_target_value_wins_where_set_and_source_fills_blanks(account, agent):
    target = customer_with_history(account, display_name="Erika Mustermann", language="de")
    source = customer_with_history(account, display_name="erika_m", language="en", postal_address="Hauptstr. 1",
                                   birth_date=dt.date(1980, 5, 17), customer_number="K-100")

    event = customer_merge(target=target, source=source, actor=agent)

    refresh(target)
    assert (target.display_name, target.language) == ("Erika Mustermann", "de")
    assert (target.postal_address, target.birth_date, target.customer_number) == (
        "Hauptstr. 1", dt.date(1980, 5, 17), "K-100")
    assert event.moved["rules"] == {
        "display_name": "target_set", "language": "target_set", "postal_address": "source_fills_blank",
        "birth_date": "source_fills_blank", "customer_number": "source_fills_blank", "tags": "same", "notes": "same",
    }


@pytest.mark.django_db
def test_a_blank_of_only_spaces_is_filled_by_the_source(account, agent):
    target = customer_with_history(account, postal_address="   ")
    source = customer_with_history(account, postal_address="Hauptstr. 1")

    customer_merge(target=target, source=source, actor=agent)

    refresh(target)
    assert target.postal_address == "Hauptstr. 1"


@pytest.mark.django_db
def test_tags_are_the_union_target_first(account, agent):
    target = customer_with_history(account, tags=["vip", "glasfaser"])
    source = customer_with_history(account, tags=["kündigung", "vip", "presse"])

    event = customer_merge(target=target, source=source, actor=agent)

    refresh(target, source)
    assert target.tags == ["vip", "glasfaser", "kündigung", "presse"]
    assert source.tags == []
    assert event.moved["tags_added"] == ["kündigung", "presse"]


@pytest.mark.parametrize(("target_notes", "source_notes", "expected"), [
    ("Ruft oft an.", "Will kündigen.", "Ruft oft an." + NOTES_SEPARATOR + "Will kündigen."),
    ("", "Will kündigen.", "Will kündigen."),
    ("Ruft oft an.", "", "Ruft oft an."),
])
@pytest.mark.django_db
def test_notes_are_concatenated_with_a_separator(account, agent, target_notes, source_notes, expected):
    target = customer_with_history(account, notes=target_notes)
    source = customer_with_history(account, notes=source_notes)

    customer_merge(target=target, source=source, actor=agent)

    refresh(target, source)
    assert target.notes == expected.format(source_id=source.pk)
    assert source.notes == ""


@pytest.mark.django_db
def test_conflicting_customer_numbers_are_refused_without_a_choice(account, agent):
    target = customer_with_history(account, customer_number="K-100")
    source = customer_with_history(account, customer_number="K-200")
    before = snapshot([target.pk, source.pk])

    with pytest.raises(Conflict) as refused:
        customer_merge(target=target, source=source, actor=agent)

    assert (refused.value.code, refused.value.field) == (ErrorCode.CUSTOMER_NUMBER_CONFLICT, "customer_number")
    assert "K-100" in refused.value.detail
    assert "K-200" in refused.value.detail
    assert snapshot([target.pk, source.pk]) == before
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("side", "expected"), [("source", "K-200"), ("target", "K-100")])
@pytest.mark.django_db
def test_a_choice_decides_conflicting_customer_numbers(account, agent, side, expected):
    target = customer_with_history(account, customer_number="K-100")
    source = customer_with_history(account, customer_number="K-200")

    event = customer_merge(target=target, source=source, actor=agent, choices={"customer_number": side})

    refresh(target)
    assert target.customer_number == expected
    assert event.moved["rules"]["customer_number"] == f"chosen_{side}"


@pytest.mark.django_db
def test_the_same_customer_number_written_differently_is_no_conflict(account, agent):
    target = customer_with_history(account, customer_number="K-100")
    source = customer_with_history(account, customer_number=" K-100 ")

    customer_merge(target=target, source=source, actor=agent)

    refresh(target)
    assert target.customer_number == "K-100"


@pytest.mark.django_db
def test_a_choice_can_override_any_field(account, agent):
    target = customer_with_history(account, display_name="erika_m", language="de")
    source = customer_with_history(account, display_name="Erika Mustermann", language="")

    customer_merge(target=target, source=source, actor=agent,
                   choices={"display_name": "source", "language": "source"})

    refresh(target)
    assert (target.display_name, target.language) == ("Erika Mustermann", "")


@pytest.mark.parametrize(("choices", "field"), [
    ({"tags": "source"}, "choices.tags"),
    ({"nickname": "source"}, "choices.nickname"),
    ({"customer_number": "both"}, "choices.customer_number"),
])
@pytest.mark.django_db
def test_invalid_choices_are_refused(pair, agent, choices, field):
    target, source = pair

    with pytest.raises(ServiceError) as refused:
        customer_merge(target=target, source=source, actor=agent, choices=choices)

    assert (refused.value.code, refused.value.field, refused.value.status_code) == (
        ErrorCode.INVALID_CHOICE, field, 400)


# --- merge: contact points -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_contact_points_move_and_duplicates_stay_with_the_tombstone(account, agent):
    target = customer_with_history(account)
    source = customer_with_history(account)
    own = add_contact_point(target, "email", "erika@example.org")
    twin_verified = add_contact_point(target, "phone", "+4915112345678", verified_at=VERIFIED, verified_by="otp")
    theirs = add_contact_point(source, "email", "erika.m@example.net")
    duplicate = add_contact_point(source, "email", "erika@example.org")
    duplicate_of_verified = add_contact_point(source, "phone", "+4915112345678")

    event = customer_merge(target=target, source=source, actor=agent)

    assert set(target.contact_points.values_list("pk", flat=True)) == {own.pk, twin_verified.pk, theirs.pk}
    assert set(source.contact_points.values_list("pk", flat=True)) == {duplicate.pk, duplicate_of_verified.pk}
    assert event.moved["contact_point_ids"] == [theirs.pk]
    assert event.moved["contact_points_verified"] == []


@pytest.mark.django_db
def test_a_duplicate_takes_the_verification_of_the_source_and_gives_it_back(account, agent):
    target = customer_with_history(account)
    source = customer_with_history(account)
    unverified = add_contact_point(target, "phone", "+4915112345678")
    add_contact_point(source, "phone", "+4915112345678", verified_at=VERIFIED, verified_by="telegram_contact")

    event = customer_merge(target=target, source=source, actor=agent)

    unverified.refresh_from_db()
    assert (unverified.verified_at, unverified.verified_by) == (VERIFIED, "telegram_contact")

    customer_unmerge(merge_event=event, actor=agent)

    unverified.refresh_from_db()
    assert (unverified.verified_at, unverified.verified_by) == (None, "")


# --- merge: refusals -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_merging_into_itself_is_refused(pair, agent):
    target, _ = pair

    with pytest.raises(Conflict) as refused:
        customer_merge(target=target, source=target, actor=agent)

    assert refused.value.code == ErrorCode.MERGE_INTO_SELF


@pytest.mark.django_db
def test_merging_into_or_from_a_tombstone_is_refused(account, pair, agent):
    target, source = pair
    third = customer_with_history(account)
    customer_merge(target=target, source=source, actor=agent)
    before = snapshot([target.pk, source.pk, third.pk])

    with pytest.raises(Conflict) as into:
        customer_merge(target=source, source=third, actor=agent)
    with pytest.raises(Conflict) as out_of:
        customer_merge(target=third, source=source, actor=agent)

    assert (into.value.code, into.value.field, into.value.status_code) == (ErrorCode.TARGET_MERGED, "target", 409)
    assert (out_of.value.code, out_of.value.field) == (ErrorCode.SOURCE_MERGED, "source")
    assert snapshot([target.pk, source.pk, third.pk]) == before
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_merging_an_unknown_customer_is_not_found(pair, agent):
    target, _ = pair

    with pytest.raises(NotFound) as missing:
        customer_merge(target=target, source=target.pk + 10_000, actor=agent)

    assert (missing.value.code, missing.value.field) == (ErrorCode.CUSTOMER_NOT_FOUND, "source")


# --- preview -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_preview_shows_each_field_rule_and_conflict_without_writing(account, django_assert_num_queries):
    target = customer_with_history(account, display_name="Erika", customer_number="K-100", tags=["vip"],
                                   notes="Ruft oft an.")
    source = customer_with_history(account, identities=2, display_name="erika_m", customer_number="K-200",
                                   language="de", tags=["presse"], notes="Will kündigen.")
    add_contact_point(target, "email", "erika@example.org")
    add_contact_point(source, "email", "erika@example.org", verified_at=VERIFIED, verified_by="otp")
    add_contact_point(source, "phone", "+4915112345678")
    before = snapshot([target.pk, source.pk])

    with django_assert_num_queries(3):
        preview = customer_merge_preview(target=target, source=source)

    assert snapshot([target.pk, source.pk]) == before
    assert preview.conflicts == ("customer_number",)
    assert not preview.can_merge
    assert (preview.field("display_name").result, preview.field("display_name").rule) == ("Erika", Rule.TARGET_SET)
    assert (preview.field("language").result, preview.field("language").rule) == ("de", Rule.SOURCE_FILLS_BLANK)
    assert preview.field("tags").result == ["vip", "presse"]
    assert preview.field("notes").rule == Rule.CONCATENATED
    assert Rule.TARGET_SET.description == "the target's value is kept where it is set"
    outcomes = {(p.kind, p.normalized): p.outcome for p in preview.contact_points}
    assert outcomes == {("email", "erika@example.org"): ContactPointOutcome.VERIFICATION_FROM_SOURCE,
                        ("phone", "+4915112345678"): ContactPointOutcome.MOVED}
    assert preview.identity_ids == tuple(source.identities.order_by("pk").values_list("pk", flat=True))

    chosen = customer_merge_preview(target=target, source=source, choices={"customer_number": "source"})
    assert chosen.can_merge
    assert chosen.result()["customer_number"] == "K-200"


@pytest.mark.django_db
def test_preview_refuses_what_the_merge_refuses(pair, agent):
    target, source = pair
    customer_merge(target=target, source=source, actor=agent)

    with pytest.raises(Conflict) as refused:
        customer_merge_preview(target=target, source=source)

    assert refused.value.code == ErrorCode.SOURCE_MERGED


# --- unmerge -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_unmerge_restores_both_profiles_exactly(account, agent):
    target = customer_with_history(account, identities=2, posts=2, display_name="Erika", tags=["vip"],
                                   notes="Ruft oft an.", language="de")
    source = customer_with_history(account, identities=3, posts=2, display_name="erika_m", tags=["presse", "vip"],
                                   notes="Will kündigen.", postal_address="Hauptstr. 1",
                                   birth_date=dt.date(1980, 5, 17), customer_number="K-100")
    add_contact_point(target, "email", "erika@example.org")
    add_contact_point(source, "email", "erika@example.org", verified_at=VERIFIED, verified_by="otp")
    add_contact_point(source, "phone", "+4915112345678", verified_at=VERIFIED, verified_by="whatsapp")
    before = snapshot([target.pk, source.pk])
    histories = {target.pk: interactions_of(target.pk), source.pk: interactions_of(source.pk)}
    merge = customer_merge(target=target, source=source, actor=agent)

    undo = customer_unmerge(merge_event=merge, actor=agent, reason="two different people")

    assert snapshot([target.pk, source.pk]) == before
    for customer_id, history in histories.items():
        assert set(timeline_ids(customer_id)) == history
    merge.refresh_from_db()
    assert merge.undone_by == undo
    assert (undo.kind, undo.customer_id, undo.source_customer_id) == ("unmerge", target.pk, source.pk)
    assert undo.moved["merge_event_id"] == merge.pk
    assert undo.moved["identity_ids"] == merge.moved["identity_ids"]
    assert undo.moved["kept"] == []


@pytest.mark.django_db
def test_interactions_after_the_merge_follow_their_identity_back(pair, account, agent):
    target, source = pair
    source_identity = source.identities.order_by("pk").first()
    target_identity = target.identities.get()
    merge = customer_merge(target=target, source=source, actor=agent)
    ingest(account, [post("late-source", who=author_of(source_identity), minutes=500),
                     post("late-target", who=author_of(target_identity), minutes=501)])
    late_source = Interaction.objects.get(external_id="late-source").pk
    late_target = Interaction.objects.get(external_id="late-target").pk
    assert {late_source, late_target} <= set(timeline_ids(target.pk))

    customer_unmerge(merge_event=merge, actor=agent)

    assert late_source in timeline_ids(source.pk)
    assert late_target in timeline_ids(target.pk)
    assert late_source not in timeline_ids(target.pk)


@pytest.mark.django_db
def test_unmerging_twice_is_refused(pair, agent):
    target, source = pair
    merge = customer_merge(target=target, source=source, actor=agent)
    customer_unmerge(merge_event=merge, actor=agent)

    with pytest.raises(Conflict) as refused:
        customer_unmerge(merge_event=merge.pk, actor=agent)

    assert (refused.value.code, refused.value.field) == (ErrorCode.ALREADY_UNDONE, "merge_event")
    assert AuditEvent.objects.filter(kind="unmerge").count() == 1


@pytest.mark.django_db
def test_a_merged_pair_can_be_merged_again_after_the_unmerge(pair, agent):
    target, source = pair
    customer_unmerge(merge_event=customer_merge(target=target, source=source, actor=agent), actor=agent)

    again = customer_merge(target=target, source=source, actor=agent)

    refresh(source)
    assert source.merged_into_id == target.pk
    assert again.undone_by is None


@pytest.mark.parametrize("later", ["into_target", "target_into_other"])
@pytest.mark.django_db
def test_unmerge_waits_for_later_merges_of_the_same_customers(pair, account, agent, later):
    target, source = pair
    other = customer_with_history(account)
    first = customer_merge(target=target, source=source, actor=agent)
    if later == "into_target":
        second = customer_merge(target=target, source=other, actor=agent)
    else:
        second = customer_merge(target=other, source=target, actor=agent)

    with pytest.raises(Conflict) as refused:
        customer_unmerge(merge_event=first, actor=agent)

    assert refused.value.code == ErrorCode.LATER_MERGE_NOT_UNDONE
    assert str(second.pk) in refused.value.detail
    customer_unmerge(merge_event=second, actor=agent)
    customer_unmerge(merge_event=first, actor=agent)
    assert not Customer.objects.filter(merged_into__isnull=False).exists()


@pytest.mark.django_db
def test_an_unrelated_later_merge_does_not_block_the_unmerge(pair, account, agent):
    target, source = pair
    first = customer_merge(target=target, source=source, actor=agent)
    customer_merge(target=customer_with_history(account), source=customer_with_history(account), actor=agent)

    customer_unmerge(merge_event=first, actor=agent)

    refresh(source)
    assert source.merged_into_id is None


@pytest.mark.django_db
def test_unmerge_is_refused_while_a_moved_identity_is_elsewhere(pair, agent):
    target, source = pair
    identity = source.identities.order_by("pk").first()
    merge = customer_merge(target=target, source=source, actor=agent)
    split_off = identity_unlink(identity=identity, actor=agent, reason="wrong person")

    with pytest.raises(Conflict) as refused:
        customer_unmerge(merge_event=merge, actor=agent)

    assert refused.value.code == ErrorCode.IDENTITY_MOVED_SINCE
    customer_merge(target=target, source=split_off, actor=agent)  # undo the unlink ...
    with pytest.raises(Conflict):  # ... which is itself a later merge of the target
        customer_unmerge(merge_event=merge, actor=agent)


@pytest.mark.django_db
def test_unmerge_after_a_link_back_succeeds(pair, agent):
    target, source = pair
    identity = source.identities.order_by("pk").first()
    merge = customer_merge(target=target, source=source, actor=agent)
    split_off = identity_unlink(identity=identity, actor=agent, reason="wrong person")
    identity_link(identity=identity, customer=target, actor=agent, reason="it was right after all")

    customer_unmerge(merge_event=merge, actor=agent)

    identity.refresh_from_db()
    assert identity.customer_id == source.pk
    assert not split_off.identities.exists()


@pytest.mark.django_db
def test_unmerge_keeps_edits_made_to_the_target_after_the_merge(account, agent):
    target = customer_with_history(account, display_name="", tags=["vip"], notes="Ruft oft an.")
    source = customer_with_history(account, display_name="Erika", tags=["presse"], notes="Will kündigen.",
                                   language="de")
    merge = customer_merge(target=target, source=source, actor=agent)
    refresh(target)
    Customer.objects.filter(pk=target.pk).update(display_name="Erika Mustermann", tags=[*target.tags, "rückruf"],
                                                 notes=target.notes + "\nRückruf vereinbart.")

    undo = customer_unmerge(merge_event=merge, actor=agent)

    refresh(target, source)
    assert target.display_name == "Erika Mustermann"
    assert target.language == ""
    assert target.tags == ["vip", "rückruf"]
    assert target.notes == "Ruft oft an.\nRückruf vereinbart."
    assert (source.display_name, source.tags, source.notes) == ("Erika", ["presse"], "Will kündigen.")
    assert undo.moved["kept"] == ["display_name", "tags", "notes"]


@pytest.mark.django_db
def test_only_merges_can_be_unmerged(pair, agent):
    target, source = pair
    link = identity_link(identity=source.identities.first(), customer=target, actor=agent, reason="same person")

    with pytest.raises(ServiceError) as refused:
        customer_unmerge(merge_event=link, actor=agent)
    with pytest.raises(NotFound) as missing:
        customer_unmerge(merge_event=link.pk + 1000, actor=agent)

    assert (refused.value.code, refused.value.status_code) == (ErrorCode.NOT_A_MERGE, 400)
    assert missing.value.code == ErrorCode.AUDIT_EVENT_NOT_FOUND


# --- link and unlink -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_link_moves_one_identity_with_its_history_and_links_back(pair, agent):
    target, source = pair
    identity = source.identities.order_by("pk").first()
    its_history = set(identity.interactions.values_list("pk", flat=True))
    before = snapshot([target.pk, source.pk])

    event = identity_link(identity=identity, customer=target, actor=agent, reason="same Telegram contact")

    assert its_history <= set(timeline_ids(target.pk))
    assert not its_history & set(timeline_ids(source.pk))
    assert (event.kind, event.customer_id, event.source_customer_id) == ("link", target.pk, source.pk)
    assert event.moved == {"identity_ids": [identity.pk], "from_customer_id": source.pk, "to_customer_id": target.pk}

    identity_link(identity=identity, customer=event.source_customer_id, actor=agent, reason="undo")

    assert snapshot([target.pk, source.pk]) == before


@pytest.mark.django_db
def test_link_refusals(pair, account, agent):
    target, source = pair
    identity = source.identities.first()
    tombstone = customer_with_history(account)
    customer_merge(target=target, source=tombstone, actor=agent)

    with pytest.raises(Conflict) as already:
        identity_link(identity=identity, customer=source, actor=agent, reason="")
    with pytest.raises(Conflict) as merged:
        identity_link(identity=identity, customer=tombstone, actor=agent, reason="")
    with pytest.raises(NotFound) as missing:
        identity_link(identity=identity.pk + 1000, customer=target, actor=agent, reason="")

    assert already.value.code == ErrorCode.ALREADY_LINKED
    assert merged.value.code == ErrorCode.TARGET_MERGED
    assert missing.value.code == ErrorCode.IDENTITY_NOT_FOUND


@pytest.mark.django_db
def test_unlink_splits_an_identity_into_a_new_customer_and_merging_back_inverts_it(pair, agent):
    _, source = pair
    identity = source.identities.order_by("pk").last()
    its_history = set(identity.interactions.values_list("pk", flat=True))
    before = snapshot([source.pk])

    new = identity_unlink(identity=identity, actor=agent, reason="a family member's account")

    assert list(new.identities.all()) == [identity]
    assert new.display_name == identity.display_name
    assert set(timeline_ids(new.pk)) == its_history
    event = AuditEvent.objects.get(kind="unlink")
    assert (event.customer_id, event.source_customer_id) == (new.pk, source.pk)
    assert event.moved == {"identity_ids": [identity.pk], "from_customer_id": source.pk, "new_customer_id": new.pk}

    customer_merge(target=source, source=new, actor=agent, reason="undo the unlink")

    assert snapshot([source.pk]) == before
    assert customer_resolve(new.pk) == source


@pytest.mark.django_db
def test_the_only_identity_cannot_be_unlinked(pair, agent):
    target, _ = pair

    with pytest.raises(Conflict) as refused:
        identity_unlink(identity=target.identities.get(), actor=agent, reason="")

    assert refused.value.code == ErrorCode.ONLY_IDENTITY
    assert Customer.objects.count() == 2


# --- resolve, log --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_resolve_follows_tombstones_to_the_survivor(pair, account, agent, django_assert_num_queries):
    target, source = pair
    last = customer_with_history(account)
    customer_merge(target=target, source=source, actor=agent)
    customer_merge(target=last, source=target, actor=agent)

    with django_assert_num_queries(1):
        assert customer_resolve(source.pk) == last
    assert customer_resolve(target.pk) == last
    assert customer_resolve(last.pk) == last
    with pytest.raises(NotFound):
        customer_resolve(last.pk + 1000)


@pytest.mark.django_db
def test_the_audit_log_is_append_only(pair, agent):
    target, source = pair
    event = customer_merge(target=target, source=source, actor=agent)

    event.reason = "rewritten"
    with pytest.raises(AuditLogIsAppendOnly):
        event.save()
    with pytest.raises(AuditLogIsAppendOnly):
        event.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.filter(pk=event.pk).update(reason="rewritten")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditLogIsAppendOnly), transaction.atomic():  # bulk_update breaks the transaction it is in
        AuditEvent.objects.bulk_update([event], ["reason"])
    event.refresh_from_db()
    assert event.reason == ""


@pytest.mark.django_db
def test_customer_log_lists_events_on_either_side_newest_first(pair, agent):
    target, source = pair
    merge = customer_merge(target=target, source=source, actor=agent)
    undo = customer_unmerge(merge_event=merge, actor=agent)
    link = identity_link(identity=target.identities.get(), customer=source, actor=agent, reason="")

    assert list(customer_audit_events(customer_id=source.pk)) == [link, undo, merge]
    assert list(customer_audit_events(customer_id=target.pk)) == [link, undo, merge]


@pytest.mark.django_db
def test_the_admin_shows_the_log_read_only(pair, agent, admin_user, client: Client):
    target, source = pair
    event = customer_merge(target=target, source=source, actor=agent)
    client.force_login(admin_user)

    listing = client.get("/admin/contacts/auditevent/", {"q": str(target.pk)})
    by_actor = client.get("/admin/contacts/auditevent/", {"q": "agent.anna"})
    page = client.get(f"/admin/contacts/auditevent/{event.pk}/change/")
    add = client.get("/admin/contacts/auditevent/add/")
    delete = client.post(f"/admin/contacts/auditevent/{event.pk}/delete/", {"post": "yes"})

    assert (listing.status_code, by_actor.status_code, page.status_code) == (200, 200, 200)
    assert (add.status_code, delete.status_code) == (403, 403)
    assert f"/admin/contacts/auditevent/{event.pk}/" in listing.content.decode()
    assert f"/admin/contacts/auditevent/{event.pk}/" in by_actor.content.decode()
    assert "agent.anna" in page.content.decode()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


# --- query counts --------------------------------------------------------------------------------------------


def _customers_to_merge(account: ChannelAccount, identities: int) -> tuple[Customer, Customer]:
    """A pair where the source has `identities` identities and three contact points per identity: one moves,
    one duplicates a target's and gives it its verification."""
    target = customer_with_history(account, identities=2, tags=["vip"], notes="a")
    source = customer_with_history(account, identities=identities, tags=["presse"], notes="b")
    for i in range(identities):
        add_contact_point(source, "email", f"erika{i}@example.org", verified_at=VERIFIED)
        add_contact_point(target, "email", f"erika{i}@example.org")
        add_contact_point(source, "phone", f"+49151{i:08d}")
    return target, source


@pytest.mark.django_db
def test_merge_and_unmerge_cost_the_same_queries_for_2_or_20_identities(account, agent,
                                                                       django_assert_max_num_queries):
    small = _customers_to_merge(account, 2)
    large = _customers_to_merge(account, 20)
    with CaptureQueriesContext(connection) as small_merge:
        small_event = customer_merge(target=small[0], source=small[1], actor=agent)
    with CaptureQueriesContext(connection) as small_unmerge:
        customer_unmerge(merge_event=small_event, actor=agent)

    # Ten statements and thirteen (the search text of both customers among them), two more each to close and
    # re-queue the pair's duplicate suggestions, plus the savepoint and its release inside the test's transaction.
    with django_assert_max_num_queries(14) as large_merge:
        large_event = customer_merge(target=large[0], source=large[1], actor=agent)
    with django_assert_max_num_queries(17) as large_unmerge:
        customer_unmerge(merge_event=large_event, actor=agent)

    assert len(large_event.moved["identity_ids"]) == 20
    assert len(large_event.moved["contact_points_verified"]) == 20
    assert len(large_merge) == len(small_merge)
    assert len(large_unmerge) == len(small_unmerge)


# --- concurrency (real connections, one per thread) ----------------------------------------------------------


class Worker(threading.Thread):
    """Runs `fn` on its own database connection; keeps its result or exception. With `hold`, the work runs in
    a transaction that stays open (locks held) until `release` is set."""

    def __init__(self, fn: Callable[[], Any], *, hold: bool = False) -> None:
        super().__init__(daemon=True)
        self.fn, self.hold = fn, hold
        self.pid: int | None = None
        self.started_work = threading.Event()
        self.done_work = threading.Event()
        self.release = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            self.started_work.set()
            if self.hold:
                with transaction.atomic():
                    self.result = self.fn()
                    self.done_work.set()
                    assert self.release.wait(20), "never released"
            else:
                self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            self.done_work.set()
            connection.close()

    def outcome(self) -> Any:
        self.join(30)
        assert not self.is_alive(), "worker hung"
        if self.error is not None:
            raise self.error
        return self.result


def ingest_retrying(account: ChannelAccount, events: list) -> Any:
    """Ingest as a task would be retried: again after PostgreSQL picked the batch as a deadlock victim."""
    for attempt in range(3):
        try:
            return ingest(account, events)
        except OperationalError as exc:
            if attempt == 2 or not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                raise
    return None


@pytest.mark.django_db(transaction=True)
def test_a_second_merge_of_the_same_pair_waits_and_is_refused(pair, agent):
    target, source = pair
    first = Worker(lambda: customer_merge(target=target.pk, source=source.pk, actor=agent), hold=True)
    first.start()
    assert first.done_work.wait(10)
    second = Worker(lambda: customer_merge(target=target.pk, source=source.pk, actor=agent))
    second.start()
    assert second.started_work.wait(10)

    assert wait_until_blocked(second.pid, second), "the second merge did not wait for the first"
    first.release.set()

    assert first.outcome().kind == "merge"
    with pytest.raises(Conflict) as refused:
        second.outcome()
    assert refused.value.code == ErrorCode.SOURCE_MERGED
    assert AuditEvent.objects.filter(kind="merge").count() == 1


def _merge_when_both_are_ready(barrier: threading.Barrier, target: Customer, source: Customer,
                               actor: Any) -> AuditEvent:
    barrier.wait(10)
    return customer_merge(target=target.pk, source=source.pk, actor=actor)


@pytest.mark.django_db(transaction=True)
def test_merges_of_one_pair_in_both_directions_at_once_leave_one_survivor(account, agent):
    for _ in range(5):
        a = customer_with_history(account, identities=2)
        b = customer_with_history(account, identities=2)
        identities = set(SocialIdentity.objects.filter(customer__in=[a, b]).values_list("pk", flat=True))
        barrier = threading.Barrier(2)
        workers = [Worker(functools.partial(_merge_when_both_are_ready, barrier, a, b, agent)),
                   Worker(functools.partial(_merge_when_both_are_ready, barrier, b, a, agent))]
        for w in workers:
            w.start()
        outcomes: list[Any] = []
        for w in workers:
            try:
                outcomes.append(w.outcome())
            except Conflict as exc:
                outcomes.append(exc.code)

        assert sum(isinstance(o, AuditEvent) for o in outcomes) == 1
        assert [o for o in outcomes if not isinstance(o, AuditEvent)][0] in {ErrorCode.SOURCE_MERGED,
                                                                             ErrorCode.TARGET_MERGED}
        survivor = Customer.objects.get(pk__in=[a.pk, b.pk], merged_into__isnull=True)
        assert set(survivor.identities.values_list("pk", flat=True)) == identities
        assert Customer.objects.filter(pk__in=[a.pk, b.pk], merged_into=survivor).count() == 1


def _source_events(source_authors: list[int], *, round_: int, n: int = 30) -> list:
    """New posts by the source's identities, in an order that does not follow their ids, and replies in
    threads opened in earlier rounds."""
    events = []
    for i in range(n):
        who = source_authors[(i * 7 + round_) % len(source_authors)]
        thread = f"thread-{who}-0" if round_ and i % 5 == 0 else None
        events.append(post(f"ev-{round_}-{i}", who=who, minutes=1000 + round_ * 100 + i, thread=thread,
                           reply_to_id=thread or ""))
    return events


def _setup_for_concurrency(account: ChannelAccount) -> tuple[Customer, Customer, list[int]]:
    target = customer_with_history(account, identities=2, posts=3)
    source = customer_with_history(account, identities=4, posts=1)
    authors = [author_of(i) for i in source.identities.order_by("-pk")]
    ingest(account, [post(f"thread-{who}-0", who=who, minutes=k) for k, who in enumerate(authors)])
    return target, source, authors


def _assert_everything_reachable_once(account: ChannelAccount, target: Customer, expected_external: set[str]) -> None:
    interactions = Interaction.objects.filter(channel_account=account, is_stub=False)
    external_ids = list(interactions.values_list("external_id", flat=True))
    assert len(external_ids) == len(set(external_ids))
    assert expected_external <= set(external_ids)
    owned = set(interactions.filter(identity__customer=target).values_list("pk", flat=True))
    assert owned == set(interactions.values_list("pk", flat=True))  # nothing left on the tombstone
    timeline = timeline_ids(target.pk, page=37)
    assert len(timeline) == len(set(timeline))
    assert set(timeline) == owned


@pytest.mark.parametrize("first", ["ingest", "merge"])
@pytest.mark.django_db(transaction=True)
def test_a_merge_and_an_ingest_of_the_sources_identities_at_once_lose_nothing(account, agent, first):
    target, source, authors = _setup_for_concurrency(account)
    events = _source_events(authors, round_=1)
    run_ingest = lambda: ingest_retrying(account, events)  # noqa: E731
    run_merge = lambda: customer_merge(target=target.pk, source=source.pk, actor=agent)  # noqa: E731
    holder = Worker(run_ingest if first == "ingest" else run_merge, hold=True)
    holder.start()
    assert holder.done_work.wait(10)
    waiter = Worker(run_merge if first == "ingest" else run_ingest)
    waiter.start()
    assert waiter.started_work.wait(10)

    assert wait_until_blocked(waiter.pid, waiter), "the second transaction did not wait for the first"
    holder.release.set()
    holder.outcome()
    waiter.outcome()

    expected = {e.external_id for e in events} | {f"thread-{who}-0" for who in authors}
    _assert_everything_reachable_once(account, target, expected)


@pytest.mark.django_db(transaction=True)
def test_merges_and_unmerges_racing_ingest_batches_lose_and_double_nothing(account, agent):
    target, source, authors = _setup_for_concurrency(account)
    batches = [_source_events(authors, round_=r) for r in range(1, 21)]
    start = threading.Barrier(2)

    def keep_ingesting() -> None:
        start.wait(10)
        for events in batches:
            ingest_retrying(account, events)

    def keep_merging() -> None:
        start.wait(10)
        for _ in range(10):
            customer_unmerge(merge_event=customer_merge(target=target.pk, source=source.pk, actor=agent), actor=agent)
        customer_merge(target=target.pk, source=source.pk, actor=agent)

    workers = [Worker(keep_ingesting), Worker(keep_merging)]
    for w in workers:
        w.start()
    for w in workers:
        w.outcome()

    expected = {e.external_id for events in batches for e in events} | {f"thread-{who}-0" for who in authors}
    _assert_everything_reachable_once(account, target, expected)
    assert AuditEvent.objects.filter(kind="merge", undone_by__isnull=True).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_merge_picked_as_a_deadlock_victim_is_run_again(pair, agent, caplog):
    """An ingest batch updates identity rows in the order of its events, the merge locks them by id: the two
    can deadlock. Here they do, on purpose; the merge (checking for deadlocks first) is aborted and retried."""
    target, source = pair
    low, high = source.identities.order_by("pk").values_list("pk", flat=True)
    go_on = threading.Event()
    high_locked = threading.Event()

    def like_an_ingest_batch() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            touch = "UPDATE contacts_socialidentity SET last_seen_at = last_seen_at + interval '1 s' WHERE id = %s"
            cursor.execute(touch, [high])
            high_locked.set()
            assert go_on.wait(10)
            cursor.execute(touch, [low])

    def merge() -> AuditEvent:
        with connection.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '50ms'")
        return customer_merge(target=target.pk, source=source.pk, actor=agent)

    batch = Worker(like_an_ingest_batch)
    batch.start()
    assert high_locked.wait(10)
    merging = Worker(merge)
    merging.start()
    assert merging.started_work.wait(10)
    assert wait_until_blocked(merging.pid, merging)
    go_on.set()

    batch.outcome()
    event = merging.outcome()

    assert "DeadlockDetected" in caplog.text
    assert event.moved["identity_ids"] == [low, high]
    assert set(SocialIdentity.objects.filter(pk__in=[low, high]).values_list("customer_id", flat=True)) == {target.pk}
