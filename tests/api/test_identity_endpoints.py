"""The identity endpoints: merge preview, merge, undo, link, unlink, GDPR export and erasure, and the audit log.

Each endpoint: success, a 400 naming the field, 401 without credentials, 403 without its scope, 404 for
another team's objects, and its 409 conflicts. A team-B token never reaches team A's customers through them.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.http import HttpResponse
from rest_framework.test import APIClient

from access.models import Scope
from channels.ingest import ingest
from contacts.merge import customer_merge
from contacts.models import AuditEvent, Customer, SocialIdentity
from tests.api.conftest import World, assert_error
from tests.channels.factories import post

pytestmark = pytest.mark.django_db


@dataclasses.dataclass
class Second:
    """A second customer in team A's view (its own identity, with a conversation on team A's account)."""

    customer: Customer
    identity: SocialIdentity


@pytest.fixture
def second(world: World) -> Second:
    ingest(world.a.account, [post("alpha-2", who=3, minutes=2, text="Ich auch")])
    identity = SocialIdentity.objects.get(platform="x", external_id="u3")
    return Second(customer=identity.customer, identity=identity)


@pytest.fixture
def merged(world: World, second: Second) -> AuditEvent:
    """Team A's second customer merged into its first (by the service, as team A's agent)."""
    return customer_merge(target=world.a.customer.pk, source=second.customer.pk, actor=world.a.agent)


def _b_merge(world: World) -> AuditEvent:
    ingest(world.b.account, [post("beta-2", who=4, minutes=2)])
    source = SocialIdentity.objects.get(platform="x", external_id="u4").customer
    return customer_merge(target=world.b.customer.pk, source=source.pk, actor=world.b.agent)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # placeholders: {customer}, {second}, {identity}, {merge}
    scope: str
    body: dict | None = None

    def call(self, client: APIClient, world: World, second: Second, merge_id: int = 0,
             body: dict | None = None) -> HttpResponse:
        url = "/api/v1/" + self.path.format(customer=world.a.customer.pk, second=second.customer.pk,
                                            identity=world.a.identity.pk, merge=merge_id)
        data = body if body is not None else self.body
        if data is not None:
            data = {k: second.customer.pk if v == "{second}" else v for k, v in data.items()}
        return getattr(client, self.method)(url, data)


ENDPOINTS = [
    Endpoint("merge-preview", "get", "customers/{customer}/merge-preview/?source={second}", "merge"),
    Endpoint("merge", "post", "customers/{customer}/merge/", "merge", {"source": "{second}", "reason": "dup"}),
    Endpoint("undo", "post", "merges/{merge}/undo/", "merge", {"reason": "wrong"}),
    Endpoint("link", "post", "social-identities/{identity}/link/", "merge", {"customer": "{second}", "reason": "x"}),
    Endpoint("unlink", "post", "social-identities/{identity}/unlink/", "merge", {"reason": "split"}),
    Endpoint("export", "get", "customers/{customer}/export/", "gdpr"),
    Endpoint("erase", "post", "customers/{customer}/erase/", "gdpr", {"reason": "Art. 17 request"}),
    Endpoint("audit-events", "get", "audit-events/", "read"),
]
BY_NAME = {e.name: e for e in ENDPOINTS}
TEAM_ENDPOINTS = [e for e in ENDPOINTS if e.scope == "merge"]
GDPR_ENDPOINTS = [e for e in ENDPOINTS if e.scope == "gdpr"]


# --- auth and scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_refuses_a_request_without_credentials(world, second, anonymous, endpoint):
    assert_error(endpoint.call(anonymous, world, second, merge_id=1), 401, "not_authenticated")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_every_endpoint_refuses_a_token_without_its_scope(world, second, merged, client_for, endpoint):
    others = [s for s in Scope.values if s != endpoint.scope]

    response = endpoint.call(client_for(world.admin, others), world, second, merge_id=merged.pk)

    body = assert_error(response, 403, "scope_missing")
    assert endpoint.scope in body["detail"]


def test_a_session_user_has_no_merge_or_gdpr_scope(world, second):
    client = APIClient()
    client.force_login(world.a.agent)

    for endpoint in (BY_NAME["merge"], BY_NAME["export"]):
        assert_error(endpoint.call(client, world, second), 403, "scope_missing")


# --- other teams ---------------------------------------------------------------------------------------------


def _state(world: World, second: Second) -> tuple:
    return (
        list(Customer.objects.filter(pk__in=[world.a.customer.pk, second.customer.pk]).order_by("pk")
             .values_list("pk", "merged_into_id", "updated_at")),
        list(SocialIdentity.objects.filter(pk__in=[world.a.identity.pk, second.identity.pk]).order_by("pk")
             .values_list("pk", "customer_id")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("endpoint", TEAM_ENDPOINTS, ids=lambda e: e.name)
def test_another_teams_customers_are_a_404_in_every_identity_action(world, second, merged, client_for, endpoint):
    before = _state(world, second)

    response = endpoint.call(client_for(world.b.agent), world, second, merge_id=merged.pk)

    assert_error(response, 404, "not_found")
    assert _state(world, second) == before


def test_a_merge_needs_both_customers_in_view(world, second, client_for):
    """Team A's target with team B's source (and the reverse): 404 naming the source, nothing written."""
    client = client_for(world.a.agent)
    before = AuditEvent.objects.count()

    response = client.post(f"/api/v1/customers/{world.a.customer.pk}/merge/", {"source": world.b.customer.pk})
    preview = client.get(f"/api/v1/customers/{world.a.customer.pk}/merge-preview/",
                         {"source": world.b.customer.pk})
    reverse = client.post(f"/api/v1/customers/{world.b.customer.pk}/merge/", {"source": world.a.customer.pk})

    assert_error(response, 404, "not_found", field="source")
    assert_error(preview, 404, "not_found", field="source")
    assert_error(reverse, 404, "not_found")
    assert AuditEvent.objects.count() == before
    assert Customer.objects.get(pk=world.b.customer.pk).merged_into_id is None


def test_an_identity_cannot_be_linked_to_another_teams_customer(world, client_for):
    response = client_for(world.a.agent).post(f"/api/v1/social-identities/{world.a.identity.pk}/link/",
                                              {"customer": world.b.customer.pk})

    assert_error(response, 404, "not_found", field="customer")
    assert SocialIdentity.objects.get(pk=world.a.identity.pk).customer_id == world.a.customer.pk


@pytest.mark.parametrize("endpoint", GDPR_ENDPOINTS, ids=lambda e: e.name)
def test_gdpr_actions_are_for_unrestricted_users_only(world, second, client_for, endpoint):
    """A team user is refused whatever the customer, so the answer confirms nothing about other teams."""
    for user in (world.a.agent, world.b.agent):
        response = endpoint.call(client_for(user), world, second)

        assert_error(response, 403, "restricted_user")
    assert Customer.objects.filter(pk=world.a.customer.pk).exists()


@pytest.mark.parametrize("endpoint", GDPR_ENDPOINTS, ids=lambda e: e.name)
def test_gdpr_actions_answer_404_for_an_unknown_customer(world, client_for, endpoint):
    client = client_for(world.admin)
    url = "/api/v1/customers/999999999/" + endpoint.name + "/"

    response = getattr(client, endpoint.method)(url, endpoint.body)

    assert_error(response, 404, "not_found")


def test_a_second_team_never_sees_the_first_teams_audit_events(world, second, merged, client_for):
    b_merge = _b_merge(world)
    client = client_for(world.b.agent)

    listed = [row["id"] for row in client.get("/api/v1/audit-events/").json()["results"]]
    filtered = client.get("/api/v1/audit-events/", {"customer_id": world.a.customer.pk}).json()["results"]
    detail = client.get(f"/api/v1/audit-events/{merged.pk}/")

    assert listed == [b_merge.pk]
    assert filtered == []
    assert_error(detail, 404, "not_found")


# --- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "body", "field"), [
    ("merge", {}, "source"),
    ("merge", {"source": "12"}, "source"),
    ("merge", {"source": 0}, "source"),
    ("merge", {"source": "{second}", "reason": 5}, "reason"),
    ("merge", {"source": "{second}", "choices": {"tags": "source"}}, "choices.tags"),
    ("merge", {"source": "{second}", "choices": {"customer_number": "both"}}, "choices.customer_number"),
    ("merge", {"source": "{second}", "colour": "red"}, "colour"),
    ("undo", {"reason": ["x"]}, "reason"),
    ("link", {"reason": "x"}, "customer"),
    ("link", {"customer": True}, "customer"),
    ("unlink", {"reason": 1}, "reason"),
    ("erase", {}, "reason"),
    ("erase", {"reason": ""}, "reason"),
])
def test_bad_input_is_a_400_naming_the_field(world, second, merged, client_for, name, body, field):
    endpoint = BY_NAME[name]
    user = world.admin if endpoint.scope == "gdpr" else world.a.agent
    before = AuditEvent.objects.count()

    response = endpoint.call(client_for(user), world, second, merge_id=merged.pk, body=body)

    assert_error(response, 400, "invalid", field=field)
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(("query", "field"), [({}, "source"), ({"source": "abc"}, "source")])
def test_a_preview_without_a_valid_source_is_a_400(world, client_for, query, field):
    response = client_for(world.a.agent).get(f"/api/v1/customers/{world.a.customer.pk}/merge-preview/", query)

    assert_error(response, 400, "invalid", field=field)


@pytest.mark.parametrize(("query", "field"), [({"customer_id": "abc"}, "customer_id"), ({"kind": "x"}, "kind"),
                                              ({"ordering": "-created"}, "ordering"), ({"cursor": "!"}, "cursor")])
def test_audit_event_filters_refuse_bad_values(world, client_for, query, field):
    assert_error(client_for(world.admin).get("/api/v1/audit-events/", query), 400, "invalid", field=field)


# --- success and conflicts -----------------------------------------------------------------------------------


def test_the_preview_shows_each_field_with_both_values_the_result_and_the_rule(world, second, client_for):
    Customer.objects.filter(pk=second.customer.pk).update(language="de", customer_number="K-other")

    response = client_for(world.a.agent).get(f"/api/v1/customers/{world.a.customer.pk}/merge-preview/",
                                             {"source": second.customer.pk})

    assert response.status_code == 200, response.content
    body = response.json()
    fields = {f["field"]: f for f in body["fields"]}
    assert fields["language"] == {"field": "language", "target": "", "source": "de", "result": "de",
                                  "rule": "source_fills_blank", "rule_description": fields["language"][
                                      "rule_description"], "conflict": False}
    assert fields["customer_number"]["rule"] == "conflict"
    assert body["conflicts"] == ["customer_number"]
    assert body["can_merge"] is False
    assert body["identity_ids"] == [second.identity.pk]
    assert Customer.objects.get(pk=second.customer.pk).merged_into_id is None


def test_merge_then_undo_round_trip(world, second, client_for):
    client = client_for(world.a.agent)

    merge = client.post(f"/api/v1/customers/{world.a.customer.pk}/merge/",
                        {"source": second.customer.pk, "reason": "same person"})

    assert merge.status_code == 200, merge.content
    event = merge.json()
    assert (event["kind"], event["customer_id"], event["source_customer_id"]) == (
        "merge", world.a.customer.pk, second.customer.pk)
    assert event["reason"] == "same person"
    assert event["actor_id"] == world.a.agent.pk
    assert Customer.objects.get(pk=second.customer.pk).merged_into_id == world.a.customer.pk
    assert SocialIdentity.objects.get(pk=second.identity.pk).customer_id == world.a.customer.pk
    listed = client.get("/api/v1/audit-events/", {"customer_id": world.a.customer.pk}).json()["results"]
    assert [row["id"] for row in listed] == [event["id"]]

    undo = client.post(f"/api/v1/merges/{event['id']}/undo/", {"reason": "not the same"})

    assert undo.status_code == 200, undo.content
    assert undo.json()["kind"] == "unmerge"
    assert undo.json()["moved"]["merge_event_id"] == event["id"]
    assert Customer.objects.get(pk=second.customer.pk).merged_into_id is None
    assert SocialIdentity.objects.get(pk=second.identity.pk).customer_id == second.customer.pk
    detail = client.get(f"/api/v1/audit-events/{event['id']}/").json()
    assert detail["undone_by_id"] == undo.json()["id"]
    newest_first = [row["id"] for row in client.get("/api/v1/audit-events/").json()["results"]]
    assert newest_first[:2] == [undo.json()["id"], event["id"]]

    again = client.post(f"/api/v1/merges/{event['id']}/undo/", {})
    assert_error(again, 409, "already_undone")


def test_a_customer_number_conflict_is_a_409_until_a_choice_is_made(world, second, client_for):
    Customer.objects.filter(pk=second.customer.pk).update(customer_number="K-other")
    client = client_for(world.a.agent)
    url = f"/api/v1/customers/{world.a.customer.pk}/merge/"

    refused = client.post(url, {"source": second.customer.pk})
    chosen = client.post(url, {"source": second.customer.pk, "choices": {"customer_number": "source"}})

    assert_error(refused, 409, "customer_number_conflict", field="customer_number")
    assert chosen.status_code == 200, chosen.content
    assert Customer.objects.get(pk=world.a.customer.pk).customer_number == "K-other"


def test_merge_conflicts(world, second, merged, client_for):
    client = client_for(world.a.agent)
    a = world.a.customer.pk

    itself = client.post(f"/api/v1/customers/{a}/merge/", {"source": a})
    from_tombstone = client.post(f"/api/v1/customers/{a}/merge/", {"source": second.customer.pk})
    into_tombstone = client.post(f"/api/v1/customers/{second.customer.pk}/merge/", {"source": a})
    preview_tombstone = client.get(f"/api/v1/customers/{a}/merge-preview/", {"source": second.customer.pk})

    assert_error(itself, 409, "merge_into_self", field="source")
    assert_error(from_tombstone, 409, "source_merged")
    assert_error(into_tombstone, 409, "target_merged")
    assert_error(preview_tombstone, 409, "source_merged")


def test_a_merge_is_undone_only_after_later_merges(world, second, merged, client_for):
    ingest(world.a.account, [post("alpha-3", who=5, minutes=3)])
    third = SocialIdentity.objects.get(platform="x", external_id="u5").customer
    client = client_for(world.a.agent)
    later = client.post(f"/api/v1/customers/{world.a.customer.pk}/merge/", {"source": third.pk}).json()

    refused = client.post(f"/api/v1/merges/{merged.pk}/undo/", {})
    first = client.post(f"/api/v1/merges/{later['id']}/undo/", {})
    then = client.post(f"/api/v1/merges/{merged.pk}/undo/", {})

    assert_error(refused, 409, "later_merge_not_undone")
    assert (first.status_code, then.status_code) == (200, 200)


def test_undo_of_an_event_that_is_not_a_merge_is_a_404(world, second, merged, client_for):
    client = client_for(world.a.agent)
    undo = client.post(f"/api/v1/merges/{merged.pk}/undo/", {}).json()

    assert_error(client.post(f"/api/v1/merges/{undo['id']}/undo/", {}), 404, "not_found")
    assert_error(client.post("/api/v1/merges/999999999/undo/", {}), 404, "not_found")


def test_link_and_unlink(world, second, client_for):
    client = client_for(world.a.agent)
    identity = world.a.identity.pk

    linked = client.post(f"/api/v1/social-identities/{identity}/link/",
                         {"customer": second.customer.pk, "reason": "same person"})
    again = client.post(f"/api/v1/social-identities/{identity}/link/", {"customer": second.customer.pk})
    unlinked = client.post(f"/api/v1/social-identities/{identity}/unlink/", {"reason": "not the same"})

    assert linked.status_code == 200, linked.content
    assert (linked.json()["kind"], linked.json()["customer_id"], linked.json()["source_customer_id"]) == (
        "link", second.customer.pk, world.a.customer.pk)
    assert_error(again, 409, "already_linked", field="customer")
    assert unlinked.status_code == 200, unlinked.content
    event = unlinked.json()
    assert (event["kind"], event["source_customer_id"]) == ("unlink", second.customer.pk)
    assert SocialIdentity.objects.get(pk=identity).customer_id == event["customer_id"]
    assert event["customer_id"] not in (world.a.customer.pk, second.customer.pk)


def test_unlinking_a_customers_only_identity_is_a_409(world, client_for):
    response = client_for(world.a.agent).post(f"/api/v1/social-identities/{world.a.identity.pk}/unlink/", {})

    assert_error(response, 409, "only_identity")


def test_linking_to_a_tombstone_is_a_409(world, second, merged, client_for):
    ingest(world.a.account, [post("alpha-3", who=5, minutes=3)])
    other = SocialIdentity.objects.get(platform="x", external_id="u5")

    response = client_for(world.a.agent).post(f"/api/v1/social-identities/{other.pk}/link/",
                                              {"customer": second.customer.pk})

    assert_error(response, 409, "target_merged", field="customer")


def test_export_holds_the_customer_and_is_logged(world, second, merged, client_for):
    response = client_for(world.admin).get(f"/api/v1/customers/{second.customer.pk}/export/")  # a tombstone

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    data = response.json()
    assert data["customer_id"] == world.a.customer.pk
    assert {c["id"] for c in data["customers"]} == {world.a.customer.pk, second.customer.pk}
    assert data["customers"][0]["customer_number"] == "K-alpha"
    assert {i["id"] for i in data["identities"]} == {world.a.identity.pk, second.identity.pk}
    assert any(p["value"] == "alpha@example.com" for p in data["contact_points"])
    assert AuditEvent.objects.filter(kind="export", customer_id=world.a.customer.pk).exists()
    assert world.b.customer.pk not in {c["id"] for c in data["customers"]}


def test_erase_removes_the_customer(world, client_for):
    client = client_for(world.admin)
    customer = world.a.customer.pk

    response = client.post(f"/api/v1/customers/{customer}/erase/", {"reason": "Art. 17 request"})

    assert response.status_code == 200, response.content
    event = response.json()
    assert (event["kind"], event["customer_id"], event["reason"]) == ("erase", customer, "Art. 17 request")
    assert event["moved"]["counts"]["customers"] == 1
    assert not Customer.objects.filter(pk=customer).exists()
    assert not SocialIdentity.objects.filter(pk=world.a.identity.pk).exists()
    assert_error(client.get(f"/api/v1/customers/{customer}/"), 404)
    assert_error(client.get(f"/api/v1/customers/{customer}/export/"), 404, "not_found")
    assert Customer.objects.filter(pk=world.b.customer.pk).exists()


def test_a_legal_hold_refuses_erasure_with_its_reason(world, client_for):
    Customer.objects.filter(pk=world.a.customer.pk).update(legal_hold_reason="Rechtsstreit 4 O 12/26")

    response = client_for(world.admin).post(f"/api/v1/customers/{world.a.customer.pk}/erase/", {"reason": "Art. 17"})

    body = assert_error(response, 409, "legal_hold")
    assert "Rechtsstreit 4 O 12/26" in body["detail"]
    assert Customer.objects.filter(pk=world.a.customer.pk).exists()


def test_audit_events_are_keyset_paginated_newest_first(world, second, client_for):
    client = client_for(world.a.agent)
    a = world.a.customer.pk
    for _ in range(3):
        event = client.post(f"/api/v1/customers/{a}/merge/", {"source": second.customer.pk}).json()
        client.post(f"/api/v1/merges/{event['id']}/undo/", {})
    expected = list(AuditEvent.objects.order_by("-id").values_list("pk", flat=True))

    seen: list[int] = []
    url: str | None = "/api/v1/audit-events/?page_size=4"
    while url:
        page = client.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]

    assert seen == expected
    assert len(seen) == 6
    merges = client.get("/api/v1/audit-events/", {"kind": "merge", "ordering": "id"}).json()["results"]
    assert [row["kind"] for row in merges] == ["merge"] * 3
    assert [row["id"] for row in merges] == sorted(row["id"] for row in merges)
