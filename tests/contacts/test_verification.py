"""The customer-number link of the "Telekom hilft" flow: verification against the stored profile, then a merge or
a link, recorded as verified evidence in the audit log."""

from __future__ import annotations

import datetime as dt

import pytest

from contacts.merge import customer_unmerge
from contacts.models import AuditEvent, Customer, SocialIdentity
from contacts.verification import (
    VERIFIED_BY,
    VERIFIED_REASON,
    customer_number_normalize,
    identity_link_by_customer_number,
)
from socialcrm.errors import Conflict, NotFound, ServiceError
from tests.contacts.builders import customer_with_history

pytestmark = pytest.mark.django_db

BIRTH = dt.date(1980, 5, 17)


@pytest.fixture
def crm(account) -> Customer:
    """The customer from the main CRM, with the number the person will give in DM."""
    return customer_with_history(account, display_name="Jürgen Müller", customer_number="KD-123 456",
                                 postal_address="Landgrabenweg 151\n53227 Bonn", birth_date=BIRTH)


@pytest.fixture
def fresh(account) -> SocialIdentity:
    """A new account's identity, alone on the customer ingest made for it."""
    return customer_with_history(account, display_name="juergen_m").identities.get()


def _link(identity: SocialIdentity, actor, number: str = "kd 123-456", **evidence: object):
    return identity_link_by_customer_number(identity=identity, customer_number=number, evidence=evidence,
                                            actor=actor)


def test_normalising_drops_spaces_and_dashes_and_uppercases():
    assert customer_number_normalize(" kd-123 456 ") == "KD123456"


def test_a_matching_postal_code_merges_the_fresh_customer_and_the_unmerge_restores_it(crm, fresh, agent):
    old = fresh.customer_id

    result = _link(fresh, agent, postal_code="53227")

    assert result.changed
    assert result.merged
    assert result.customer_id == crm.pk
    assert SocialIdentity.objects.get(pk=fresh.pk).customer_id == crm.pk
    tombstone = Customer.objects.get(pk=old)
    assert tombstone.merged_into_id == crm.pk
    assert result.move_event.kind == AuditEvent.Kind.MERGE
    assert result.move_event.reason == VERIFIED_REASON
    event = result.event
    assert (event.kind, event.customer_id, event.source_customer_id, event.reason) == (
        AuditEvent.Kind.LINK, crm.pk, old, VERIFIED_REASON)
    assert event.actor_id == agent.pk
    assert event.moved["verified_by"] == VERIFIED_BY
    assert event.moved["actor"] == agent.get_username()
    assert event.moved["identity_ids"] == [fresh.pk]
    assert event.moved["evidence"] == ["postal_code"]
    assert event.moved["move_event_id"] == result.move_event.pk
    assert Customer.objects.get(pk=crm.pk).customer_number == "KD-123 456"

    customer_unmerge(merge_event=result.move_event, actor=agent)

    assert Customer.objects.get(pk=old).merged_into_id is None
    assert SocialIdentity.objects.get(pk=fresh.pk).customer_id == old


def test_a_matching_birth_date_moves_only_that_identity_of_a_customer_with_others(account, crm, agent):
    other = customer_with_history(account, identities=2, display_name="J. M.")
    identity, stays = other.identities.order_by("pk")

    result = _link(identity, agent, birth_date=BIRTH, last_name="MULLER")

    assert result.changed
    assert not result.merged
    assert result.move_event.kind == AuditEvent.Kind.LINK
    assert result.event.moved["evidence"] == ["birth_date", "last_name"]
    assert SocialIdentity.objects.get(pk=identity.pk).customer_id == crm.pk
    assert SocialIdentity.objects.get(pk=stays.pk).customer_id == other.pk
    assert Customer.objects.get(pk=other.pk).merged_into_id is None


def test_a_single_identity_customer_with_its_own_number_is_not_merged(account, crm, agent):
    own = customer_with_history(account, customer_number="KD-999")
    identity = own.identities.get()

    result = _link(identity, agent, birth_date="1980-05-17")

    assert not result.merged
    assert Customer.objects.get(pk=own.pk).merged_into_id is None
    assert SocialIdentity.objects.get(pk=identity.pk).customer_id == crm.pk


@pytest.mark.parametrize("evidence", [
    {"last_name": "Müller"},  # a display name is never enough
    {"last_name": "mueller", "postal_code": "53227"},  # contradicts
    {"postal_code": "53229"},
    {"postal_code": "5322"},  # part of a code is no match
    {"birth_date": dt.date(1980, 5, 18)},
    {"postal_code": "53227", "birth_date": dt.date(1981, 5, 17)},
])
def test_verification_fails_without_revealing_why(crm, fresh, agent, evidence):
    before = (AuditEvent.objects.count(), SocialIdentity.objects.get(pk=fresh.pk).customer_id)

    with pytest.raises(Conflict) as refused:
        _link(fresh, agent, **evidence)

    assert refused.value.code == "verification_failed"
    message = refused.value.detail.lower()
    for leak in ("postal", "birth", "name", "53227", "1980", "müller", "bonn"):
        assert leak not in message
    assert (AuditEvent.objects.count(), SocialIdentity.objects.get(pk=fresh.pk).customer_id) == before


def test_a_detail_the_profile_lacks_neither_matches_nor_contradicts(account, fresh, agent):
    crm = customer_with_history(account, display_name="Eva Świątek", customer_number="KD-7", birth_date=BIRTH)

    with pytest.raises(Conflict):  # no address stored: the postal code proves nothing
        _link(fresh, agent, number="KD-7", postal_code="53227")
    result = _link(fresh, agent, number="KD-7", postal_code="53227", birth_date=BIRTH, last_name="SWIATEK")

    assert result.customer_id == crm.pk
    assert result.event.moved["evidence"] == ["birth_date", "last_name"]


def test_no_evidence_is_a_400(crm, fresh, agent):
    with pytest.raises(ServiceError) as refused:
        _link(fresh, agent, postal_code=" ")

    assert (refused.value.status_code, refused.value.code) == (400, "evidence_required")


def test_an_unknown_number_is_not_found(crm, fresh, agent):
    with pytest.raises(NotFound) as missing:
        _link(fresh, agent, number="KD-000", postal_code="53227")

    assert (missing.value.code, missing.value.field) == ("customer_number_unknown", "customer_number")


def test_a_tombstone_holding_the_number_is_ignored(account, crm, fresh, agent):
    survivor = customer_with_history(account, display_name="Jürgen Müller", postal_address="53227 Bonn")
    Customer.objects.filter(pk=crm.pk).update(merged_into=survivor)

    with pytest.raises(NotFound):
        _link(fresh, agent, postal_code="53227")


def test_several_live_holders_are_a_conflict(account, crm, fresh, agent):
    customer_with_history(account, customer_number="kd123456", postal_address="53227 Bonn")

    with pytest.raises(Conflict) as refused:
        _link(fresh, agent, postal_code="53227")

    assert refused.value.code == "customer_number_ambiguous"


def test_a_repeat_changes_nothing(crm, fresh, agent):
    _link(fresh, agent, postal_code="53227")
    events = AuditEvent.objects.count()

    again = _link(fresh, agent, postal_code="53227")

    assert (again.changed, again.event, again.move_event, again.customer_id) == (False, None, None, crm.pk)
    assert AuditEvent.objects.count() == events


def test_an_actor_is_required(crm, fresh):
    with pytest.raises(ServiceError) as refused:
        _link(fresh, "  ", postal_code="53227")

    assert refused.value.code == "actor_required"
