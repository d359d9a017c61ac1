"""Property tests of merge and unmerge on real PostgreSQL (hypothesis).

A few customers with identities (made by ingest, so they have history), contact points (shared values and
verifications included), tags, notes and field values; any sequence of merges (with or without a choice of
customer number), a new interaction after each step, then the unmerges in reverse order. Every merge does
what the rules say or is refused with the predicted code and changes nothing; one unmerge out of order is
refused exactly when a later merge shares a customer with it; at the end every identity, contact point,
field, tag and note is back with its original customer, no tombstone is left, and each customer's timeline
holds exactly the interactions of its own identities, including those that arrived while it was merged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.ingest import ingest
from contacts.merge import NOTES_SEPARATOR, SCALAR_FIELDS, ErrorCode
from contacts.models import AuditEvent, ContactPoint, Customer, SocialIdentity
from contacts.services import customer_merge, customer_unmerge
from conversations.models import Interaction
from socialcrm.errors import Conflict
from tests.channels.factories import post

from .builders import add_contact_point, author_of, customer_with_history, snapshot, timeline_ids

pytestmark = pytest.mark.django_db

NAMES = ["", " ", "Erika Mustermann", "erika_m"]
ADDRESSES = ["", "Hauptstr. 1, 53113 Bonn", "Landgrabenweg 151, 53227 Bonn"]
BIRTH_DATES = [None, dt.date(1980, 5, 17), dt.date(1975, 1, 2)]
LANGUAGES = ["", "de", "en"]
NUMBERS = ["", "K-100", "K-200", " K-100"]
TAGS = ["vip", "glasfaser", "kündigung", "presse"]
NOTES = ["", "Ruft oft an.", "Will kündigen.\nRückruf vereinbart."]
CONTACTS = [("email", "erika@example.org"), ("email", "info@example.org"), ("phone", "+4915112345678"),
            ("url", "https://mastodon.social/@erika")]
VERIFIED = [None, dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC),
            dt.datetime(2025, 12, 24, 18, 0, 0, 999999, tzinfo=dt.UTC)]


@dataclasses.dataclass
class Person:
    fields: dict[str, Any]
    identities: int
    contacts: list[tuple[int, dt.datetime | None]]


@dataclasses.dataclass
class Step:
    target: int
    source: int
    choice: str | None
    poster: int


people = st.builds(
    Person,
    fields=st.fixed_dictionaries({
        "display_name": st.sampled_from(NAMES), "postal_address": st.sampled_from(ADDRESSES),
        "birth_date": st.sampled_from(BIRTH_DATES), "language": st.sampled_from(LANGUAGES),
        "customer_number": st.sampled_from(NUMBERS), "tags": st.lists(st.sampled_from(TAGS), unique=True, max_size=3),
        "notes": st.sampled_from(NOTES),
    }),
    identities=st.integers(0, 3),
    contacts=st.lists(st.tuples(st.integers(0, len(CONTACTS) - 1), st.sampled_from(VERIFIED)), max_size=3,
                      unique_by=lambda c: c[0]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Person], list[Step], int]:
    crowd = draw(st.lists(people, min_size=2, max_size=4))
    index = st.integers(0, len(crowd) - 1)
    choice = st.sampled_from([None, "target", "source"])
    steps = draw(st.lists(st.builds(Step, target=index, source=index, choice=choice, poster=st.integers(0, 50)),
                          min_size=1, max_size=6))
    return crowd, steps, draw(st.integers(0, 50))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _expected_merge(target: dict[str, Any], source: dict[str, Any], source_id: int,
                    choice: str | None) -> dict[str, Any] | ErrorCode:
    """The target's fields after the merge by the documented rules, or the code of the refusal."""
    t, s = target["customer_number"], source["customer_number"]
    if choice is None and not _blank(t) and not _blank(s) and t.strip() != s.strip():
        return ErrorCode.CUSTOMER_NUMBER_CONFLICT
    result = {name: source[name] if _blank(target[name]) and not _blank(source[name]) else target[name]
              for name in SCALAR_FIELDS}
    if choice is not None:
        result["customer_number"] = (target if choice == "target" else source)["customer_number"]
    result["tags"] = target["tags"] + [tag for tag in source["tags"] if tag not in target["tags"]]
    notes = [n for n in (target["notes"], source["notes"]) if n]
    result["notes"] = NOTES_SEPARATOR.format(source_id=source_id).join(notes)
    return result


def _profile(customer_id: int) -> dict[str, Any]:
    return Customer.objects.values(*SCALAR_FIELDS, "tags", "notes", "merged_into_id").get(pk=customer_id)


def _owners(customer_ids: list[int]) -> dict[str, dict[int, int]]:
    return {
        "identities": dict(SocialIdentity.objects.filter(customer_id__in=customer_ids)
                           .values_list("pk", "customer_id")),
        "contact_points": dict(ContactPoint.objects.filter(customer_id__in=customer_ids)
                               .values_list("pk", "customer_id")),
    }


def _build(account: Any, crowd: list[Person]) -> list[int]:
    ids = []
    for person in crowd:
        customer = customer_with_history(account, identities=person.identities, posts=1, **person.fields)
        for index, verified_at in person.contacts:
            kind, value = CONTACTS[index]
            add_contact_point(customer, kind, value, verified_at=verified_at, verified_by="otp" if verified_at else "")
        ids.append(customer.pk)
    return ids


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_any_merges_undone_in_reverse_order_restore_every_customer(account, agent, scenario):
    crowd, steps, probe = scenario
    with transaction.atomic():  # one example's rows, rolled back at its end
        ids = _build(account, crowd)
        identities = list(SocialIdentity.objects.filter(customer_id__in=ids).order_by("pk"))
        original_owner = {i.pk: i.customer_id for i in identities}
        before = snapshot(ids)
        before_owners = _owners(ids)

        events: list[AuditEvent] = []
        for minute, step in enumerate(steps):
            target, source = ids[step.target], ids[step.source]
            target_now, source_now = _profile(target), _profile(source)
            if target == source:
                expected: dict[str, Any] | ErrorCode = ErrorCode.MERGE_INTO_SELF
            elif target_now["merged_into_id"] is not None:
                expected = ErrorCode.TARGET_MERGED
            elif source_now["merged_into_id"] is not None:
                expected = ErrorCode.SOURCE_MERGED
            else:
                expected = _expected_merge(target_now, source_now, source, step.choice)
            unchanged = snapshot(ids)
            choices = {"customer_number": step.choice} if step.choice else None
            try:
                events.append(customer_merge(target=target, source=source, actor=agent, choices=choices))
            except Conflict as refused:
                refusal = refused.code
            else:
                refusal = None
            if refusal is not None:
                assert refusal == expected
                assert snapshot(ids) == unchanged
            else:
                assert isinstance(expected, dict), f"merge should have been refused with {expected}"
                after = _profile(target)
                assert {k: after[k] for k in expected} == expected
                assert _profile(source)["merged_into_id"] == target
            if identities:  # history keeps arriving, whoever the identity belongs to now
                who = author_of(identities[step.poster % len(identities)])
                ingest(account, [post(who=who, minutes=10_000 + minute)])

        undone: set[int] = set()
        if len(events) > 1:
            early = events[probe % (len(events) - 1)]
            pair = {early.customer_id, early.source_customer_id}
            blocked = any({e.customer_id, e.source_customer_id} & pair for e in events if e.pk > early.pk)
            try:
                customer_unmerge(merge_event=early, actor=agent)
            except Conflict as refused:
                refusal = refused.code
            else:
                refusal = None
                undone.add(early.pk)
            assert refusal == (ErrorCode.LATER_MERGE_NOT_UNDONE if blocked else None)
        for event in reversed(events):
            if event.pk not in undone:
                customer_unmerge(merge_event=event, actor=agent)

        assert snapshot(ids)["customers"] == before["customers"]
        assert snapshot(ids)["contact_points"] == before["contact_points"]
        assert _owners(ids) == before_owners
        assert not Customer.objects.filter(pk__in=ids, merged_into__isnull=False).exists()
        assert not AuditEvent.objects.filter(kind="merge", undone_by__isnull=True).exists()
        for customer_id in ids:
            own = set(Interaction.objects.filter(identity_id__in=[i for i, c in original_owner.items()
                                                                  if c == customer_id], is_stub=False)
                      .values_list("pk", flat=True))
            assert set(timeline_ids(customer_id)) == own
        transaction.set_rollback(True)
