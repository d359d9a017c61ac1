"""The duplicate-suggestion endpoints: list and detail with the evidence field by field, accept and reject.

Each endpoint: success, a 400 naming the field, 401 without credentials, 403 without its scope, 404 for another
team's suggestions, and 409 for a suggestion decided already. A rejected pair stays rejected after re-scoring.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import Scope
from channels.ingest import ingest
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.suggestions import dedupe_outbox_drain, dedupe_outbox_enqueue
from tests.api.conftest import World, assert_error, ids
from tests.channels.factories import author, post
from tests.contacts.builders import new_author

pytestmark = pytest.mark.django_db

EXPLANATION = [
    {"field": "email", "level": "verified_exact", "bits": 14.5, "left": "anna@example.de",
     "right": "anna@example.de", "note": ""},
    {"field": "name_handle", "level": "name_exact", "bits": 6.25, "left": "Anna Schmidt", "right": "Anna Schmidt",
     "note": "rare name"},
    {"field": "phone", "level": "missing", "bits": 0.0, "left": "", "right": "", "note": ""},
]


def ingested(world: World, name: str, *, side: str = "a") -> Customer:
    """A customer created by ingest on one team's account, for a new author with this name."""
    who = new_author()
    account = getattr(world, side).account
    ingest(account, [post(who=who, author=author(who, display_name=name, handle=f"h{who}"))])
    customer = SocialIdentity.objects.get(platform="x", external_id=f"u{who}").customer
    Customer.objects.filter(pk=customer.pk).update(display_name=name)
    return Customer.objects.get(pk=customer.pk)


def suggest(a: Customer, b: Customer, score: float = 20.75, **fields: object) -> DuplicateSuggestion:
    """An open suggestion of the pair, as the drain stores it."""
    low, high = sorted([a.pk, b.pk])
    return DuplicateSuggestion.objects.create(customer_low=low, customer_high=high, score=score, probability=0.99,
                                              explanation=EXPLANATION, model_version="fs1-test", **fields)


@dataclasses.dataclass
class Pairs:
    """Team A's suggestion (two customers in its view), team B's, and one across the teams."""

    a: DuplicateSuggestion
    b: DuplicateSuggestion
    across: DuplicateSuggestion
    a_second: Customer


@pytest.fixture
def pairs(world: World) -> Pairs:
    a_second = ingested(world, "Anna Schmidt")
    b_second = ingested(world, "Bert Beta", side="b")
    return Pairs(a=suggest(world.a.customer, a_second), b=suggest(world.b.customer, b_second, score=12.0),
                 across=suggest(world.a.customer, world.b.customer, score=9.5), a_second=a_second)


def url(suggestion: DuplicateSuggestion | int, action: str = "") -> str:
    pk = suggestion if isinstance(suggestion, int) else suggestion.pk
    return f"/api/v1/duplicate-suggestions/{pk}/" + (f"{action}/" if action else "")


LIST = "/api/v1/duplicate-suggestions/"


def call(client: APIClient, name: str, suggestion: DuplicateSuggestion, body: dict | None = None) -> HttpResponse:
    if name == "list":
        return client.get(LIST)
    if name == "detail":
        return client.get(url(suggestion))
    return client.post(url(suggestion, name), body if body is not None else {"reason": "checked"})


ENDPOINTS = [("list", "read"), ("detail", "read"), ("accept", "merge"), ("reject", "merge")]


# --- reading -------------------------------------------------------------------------------------------------


def test_the_list_shows_each_pair_with_names_score_and_the_explanation_as_stored(world, pairs, client_for):
    response = client_for(world.a.agent).get(LIST)

    assert ids(response) == [pairs.a.pk]
    row = response.json()["results"][0]
    low, high = sorted([world.a.customer, pairs.a_second], key=lambda c: c.pk)
    assert row["customer_low_id"] == low.pk
    assert row["customer_low_display_name"] == low.display_name
    assert row["customer_high_id"] == high.pk
    assert row["customer_high_display_name"] == high.display_name
    assert (row["score"], row["model_version"], row["status"]) == (20.75, "fs1-test", "open")
    assert row["explanation"] == EXPLANATION
    assert (row["decided_at"], row["decided_by_id"], row["reason"]) == (None, None, "")
    assert client_for(world.a.agent).get(url(pairs.a)).json() == row


def test_an_unrestricted_user_sees_every_pair_best_score_first(world, pairs, client_for):
    assert ids(client_for(world.admin).get(LIST)) == [pairs.a.pk, pairs.b.pk, pairs.across.pk]


def test_a_restricted_user_sees_only_pairs_with_both_customers_in_view(world, pairs, client_for):
    client = client_for(world.b.agent)

    assert ids(client.get(LIST, {"status": "all"})) == [pairs.b.pk]
    assert ids(client.get(LIST, {"customer_id": world.b.customer.pk})) == [pairs.b.pk]
    for hidden in (pairs.a, pairs.across):
        assert_error(client.get(url(hidden)), 404, "not_found")


def test_filters_status_customer_and_min_score(world, pairs, client_for):
    suggestion_reject_direct(pairs.b)
    client = client_for(world.admin)

    assert ids(client.get(LIST)) == [pairs.a.pk, pairs.across.pk]
    assert ids(client.get(LIST, {"status": "rejected"})) == [pairs.b.pk]
    assert ids(client.get(LIST, {"status": "all"})) == [pairs.a.pk, pairs.b.pk, pairs.across.pk]
    assert ids(client.get(LIST, {"customer_id": world.b.customer.pk, "status": "all"})) == [pairs.b.pk,
                                                                                              pairs.across.pk]
    assert ids(client.get(LIST, {"customer_id": pairs.a_second.pk})) == [pairs.a.pk]
    assert ids(client.get(LIST, {"min_score": "10"})) == [pairs.a.pk]
    assert ids(client.get(LIST, {"min_score": "9.5"})) == [pairs.a.pk, pairs.across.pk]
    assert ids(client.get(LIST, {"ordering": "score"})) == [pairs.across.pk, pairs.a.pk]


def suggestion_reject_direct(suggestion: DuplicateSuggestion) -> None:
    DuplicateSuggestion.objects.filter(pk=suggestion.pk).update(status="rejected", decided_at=timezone.now())


def test_the_list_is_keyset_paginated_by_score_then_id(world, client_for):
    customers = [world.a.customer] + [ingested(world, f"Person {i}") for i in range(5)]
    made = [suggest(customers[0], c, score=10.0 if i % 2 else 15.0) for i, c in enumerate(customers[1:])]
    expected = [s.pk for s in sorted(made, key=lambda s: (-s.score, -s.pk))]
    client = client_for(world.a.agent)

    seen: list[int] = []
    page_url: str | None = f"{LIST}?page_size=2"
    while page_url:
        page = client.get(page_url).json()
        seen += [row["id"] for row in page["results"]]
        page_url = page["next"]

    assert seen == expected


@pytest.mark.parametrize(("query", "field"), [
    ({"status": "maybe"}, "status"), ({"status": ""}, "status"), ({"customer_id": "abc"}, "customer_id"),
    ({"customer_id": "0"}, "customer_id"), ({"min_score": "many"}, "min_score"), ({"min_score": ""}, "min_score"),
    ({"min_score": "nan"}, "min_score"), ({"min_score": "inf"}, "min_score"), ({"ordering": "-id"}, "ordering"),
    ({"cursor": "!"}, "cursor"),
])
def test_bad_filters_are_a_400_naming_the_field(world, client_for, query, field):
    assert_error(client_for(world.admin).get(LIST, query), 400, "invalid", field=field)


# --- auth and scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "scope"), ENDPOINTS)
def test_every_endpoint_refuses_a_request_without_credentials(world, pairs, anonymous, name, scope):
    assert_error(call(anonymous, name, pairs.a), 401, "not_authenticated")


@pytest.mark.parametrize(("name", "scope"), ENDPOINTS)
def test_every_endpoint_refuses_a_token_without_its_scope(world, pairs, client_for, name, scope):
    client = client_for(world.admin, [s for s in Scope.values if s != scope])

    body = assert_error(call(client, name, pairs.a), 403, "scope_missing")

    assert scope in body["detail"]
    assert DuplicateSuggestion.objects.get(pk=pairs.a.pk).status == "open"


@pytest.mark.parametrize("name", ["accept", "reject"])
def test_another_teams_suggestion_is_a_404_and_stays_open(world, pairs, client_for, name):
    before = AuditEvent.objects.count()

    for suggestion in (pairs.a, pairs.across):
        assert_error(call(client_for(world.b.agent), name, suggestion), 404, "not_found")

    assert AuditEvent.objects.count() == before
    assert set(DuplicateSuggestion.objects.values_list("status", flat=True)) == {"open"}
    assert Customer.objects.filter(merged_into__isnull=False).count() == 0


@pytest.mark.parametrize("name", ["detail", "accept", "reject"])
def test_an_unknown_suggestion_is_a_404(world, client_for, name):
    assert_error(call(client_for(world.admin), name, 999999999), 404, "not_found")


# --- accept and reject ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "field"), [
    ("accept", {"reason": 5}, "reason"), ("accept", {"colour": "red"}, "colour"),
    ("reject", {}, "reason"), ("reject", {"reason": ""}, "reason"), ("reject", {"reason": ["x"]}, "reason"),
    ("reject", {"reason": "x", "status": "open"}, "status"),
])
def test_bad_bodies_are_a_400_naming_the_field(world, pairs, client_for, name, body, field):
    before = AuditEvent.objects.count()

    assert_error(call(client_for(world.a.agent), name, pairs.a, body), 400, "invalid", field=field)

    assert AuditEvent.objects.count() == before
    assert DuplicateSuggestion.objects.get(pk=pairs.a.pk).status == "open"


def test_accept_merges_the_newer_customer_into_the_older(world, pairs, client_for):
    client = client_for(world.a.agent)

    response = client.post(url(pairs.a, "accept"), {"reason": "same person"}, format="json")

    assert response.status_code == 200, response.content
    event = response.json()
    assert (event["kind"], event["customer_id"], event["source_customer_id"]) == (
        "merge", world.a.customer.pk, pairs.a_second.pk)
    assert event["actor_id"] == world.a.agent.pk
    assert event["reason"] == "same person"
    assert Customer.objects.get(pk=pairs.a_second.pk).merged_into_id == world.a.customer.pk  # a tombstone now
    decided = client.get(url(pairs.a)).json()
    assert (decided["status"], decided["decided_by_id"]) == ("accepted", world.a.agent.pk)
    assert decided["decided_at"] is not None
    assert ids(client.get(LIST)) == []
    assert ids(client.get(LIST, {"status": "accepted"})) == [pairs.a.pk]


def test_accept_without_a_body_uses_a_default_reason(world, pairs, client_for):
    response = client_for(world.a.agent).post(url(pairs.a, "accept"))

    assert response.status_code == 200, response.content
    assert f"duplicate suggestion {pairs.a.pk} accepted" in response.json()["reason"]


def test_reject_records_the_decision_and_an_audit_event(world, pairs, client_for):
    client = client_for(world.a.agent)

    response = client.post(url(pairs.a, "reject"), {"reason": "twins"}, format="json")

    assert response.status_code == 200, response.content
    row = response.json()
    assert (row["id"], row["status"], row["reason"], row["decided_by_id"], row["decided_by_label"]) == (
        pairs.a.pk, "rejected", "twins", world.a.agent.pk, world.a.agent.get_username())
    assert row["explanation"] == EXPLANATION
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.SUGGESTION_REJECTED)
    assert (event.moved["suggestion_id"], event.reason) == (pairs.a.pk, "twins")
    assert Customer.objects.filter(merged_into__isnull=False).count() == 0
    assert ids(client.get(LIST)) == []


@pytest.mark.parametrize("first", ["accept", "reject"])
@pytest.mark.parametrize("then", ["accept", "reject"])
def test_a_decided_suggestion_is_a_409(world, pairs, client_for, first, then):
    client = client_for(world.a.agent)
    assert call(client, first, pairs.a).status_code == 200
    before = AuditEvent.objects.count()

    assert_error(call(client, then, pairs.a), 409, "suggestion_decided")

    assert AuditEvent.objects.count() == before


def test_a_rejected_pair_never_reappears_after_rescoring(world, client_for, settings):
    settings.DEDUPE_AUTO_LINK = False
    first, second = ingested(world, "Anna Schmidt"), ingested(world, "Anna Schmidt")
    for customer in (first, second):
        ContactPoint.objects.create(customer=customer, kind="email", value="anna.schmidt@example.de",
                                    normalized="anna.schmidt@example.de", verified_at=timezone.now(),
                                    verified_by="double-opt-in")
    dedupe_outbox_drain()
    client = client_for(world.a.agent)
    listed = client.get(LIST, {"customer_id": first.pk}).json()["results"]
    assert [(r["customer_low_id"], r["customer_high_id"]) for r in listed] == [(first.pk, second.pk)]
    assert {e["field"] for e in listed[0]["explanation"]} >= {"email", "name_handle"}
    assert listed[0]["score"] == pytest.approx(sum(e["bits"] for e in listed[0]["explanation"]), abs=0.01)

    rejected = client.post(url(listed[0]["id"], "reject"), {"reason": "twins"}, format="json")
    dedupe_outbox_enqueue(customer_ids=[first.pk, second.pk])
    outcome = dedupe_outbox_drain()

    assert rejected.status_code == 200, rejected.content
    assert {first.pk, second.pk} <= set(outcome.scored)
    assert ids(client.get(LIST, {"customer_id": first.pk})) == []
    assert ids(client.get(LIST, {"customer_id": first.pk, "status": "all"})) == [listed[0]["id"]]
    assert DuplicateSuggestion.objects.get(pk=listed[0]["id"]).status == "rejected"


# --- query counts --------------------------------------------------------------------------------------------


def _grow(world: World, n: int) -> None:
    customers = [ingested(world, f"Grown {n} {i}") for i in range(n)]
    for customer in customers:
        suggest(world.a.customer, customer, score=10.0 + customer.pk % 7)


@pytest.mark.parametrize("user", ["agent", "admin"])
def test_the_list_costs_the_same_queries_for_2_and_20_rows(world, client_for, user):
    client = client_for(world.a.agent if user == "agent" else world.admin)
    client.get(LIST)  # the first request of a token records its use: one UPDATE more
    counts = []
    for n in (2, 18):
        _grow(world, n)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(LIST, {"page_size": 50})
        assert response.status_code == 200
        counts.append((len(response.json()["results"]), len(queries)))

    assert [rows for rows, _ in counts] == [2, 20]
    assert counts[0][1] == counts[1][1]
    assert counts[0][1] <= 5  # token, user, permissions and teams, the page
