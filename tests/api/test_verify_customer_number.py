"""POST social-identities/{id}/verify-customer-number/: the "Telekom hilft" link by a customer number given in DM.

Success (merge of a fresh customer, or a link), refusals (409 `verification_failed` naming nothing stored), a 400
naming the field, 401, 403 without the `merge` scope, and 404 for another team's identity or customer number, in
the same shape as for an unknown number.
"""

from __future__ import annotations

import dataclasses

import pytest

from access.models import Scope
from channels.ingest import ingest
from contacts.models import AuditEvent, Customer, SocialIdentity
from tests.api.conftest import World, assert_error
from tests.channels.factories import post

pytestmark = pytest.mark.django_db


@dataclasses.dataclass
class Fresh:
    """A new identity in team A's view, alone on the customer ingest made for it."""

    customer: Customer
    identity: SocialIdentity


@pytest.fixture
def fresh(world: World) -> Fresh:
    Customer.objects.filter(pk=world.a.customer.pk).update(postal_address="Hauptstr. 1, 10115 Berlin")
    ingest(world.a.account, [post("alpha-dm", who=7, minutes=3, text="Meine Kundennummer ist K-alpha")])
    identity = SocialIdentity.objects.get(platform="x", external_id="u7")
    return Fresh(customer=identity.customer, identity=identity)


def _url(identity_id: int) -> str:
    return f"/api/v1/social-identities/{identity_id}/verify-customer-number/"


def test_a_verified_number_merges_the_fresh_customer(world, fresh, client_for):
    client = client_for(world.a.agent)

    response = client.post(_url(fresh.identity.pk), {"customer_number": "k alpha", "postal_code": "10115",
                                                    "reason": "DM 2026-03-01"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["changed"], body["merged"], body["customer_id"]) == (True, True, world.a.customer.pk)
    event = body["event"]
    assert (event["kind"], event["customer_id"], event["source_customer_id"]) == (
        "link", world.a.customer.pk, fresh.customer.pk)
    assert event["moved"]["verified_by"] == "customer_number"
    assert event["actor_id"] == world.a.agent.pk
    assert event["reason"].startswith("customer number verified in DM")
    assert body["move_event"]["kind"] == "merge"
    assert Customer.objects.get(pk=fresh.customer.pk).merged_into_id == world.a.customer.pk

    undo = client.post(f"/api/v1/merges/{body['move_event']['id']}/undo/", {})
    again = client.post(_url(fresh.identity.pk), {"customer_number": "K-alpha", "postal_code": "10115"})

    assert undo.status_code == 200, undo.content
    assert again.status_code == 200, again.content
    assert again.json()["changed"] is True


def test_a_repeat_answers_unchanged(world, fresh, client_for):
    client = client_for(world.a.agent)
    body = {"customer_number": "K-alpha", "postal_code": "10115"}
    client.post(_url(fresh.identity.pk), body)
    events = AuditEvent.objects.count()

    response = client.post(_url(fresh.identity.pk), body)

    assert response.status_code == 200, response.content
    assert response.json() | {"identity_id": 0} == {"identity_id": 0, "customer_id": world.a.customer.pk,
                                                    "changed": False, "merged": False, "event": None,
                                                    "move_event": None}
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("body", [
    {"customer_number": "K-alpha", "last_name": "alpha"},  # the display name "Kunde alpha": never enough
    {"customer_number": "K-alpha", "postal_code": "10117"},
    {"customer_number": "K-alpha", "postal_code": "10115", "last_name": "beta"},
])
def test_failed_verification_is_a_409_that_reveals_nothing(world, fresh, client_for, body):
    response = client_for(world.a.agent).post(_url(fresh.identity.pk), body)

    error = assert_error(response, 409, "verification_failed")
    for leak in ("10115", "berlin", "alpha", "postal", "last name"):
        assert leak not in error["detail"].lower()
    assert SocialIdentity.objects.get(pk=fresh.identity.pk).customer_id == fresh.customer.pk


@pytest.mark.parametrize(("body", "field"), [
    ({"postal_code": "10115"}, "customer_number"),
    ({"customer_number": 12, "postal_code": "10115"}, "customer_number"),
    ({"customer_number": "--", "postal_code": "10115"}, "customer_number"),
    ({"customer_number": "K-alpha"}, "postal_code"),
    ({"customer_number": "K-alpha", "birth_date": "17.05.1980"}, "birth_date"),
    ({"customer_number": "K-alpha", "postal_code": "10115;DROP"}, "postal_code"),
    ({"customer_number": "K-alpha", "postal_code": "10115", "colour": "red"}, "colour"),
    ({"customer_number": "K-alpha", "postal_code": "10115", "reason": 5}, "reason"),
])
def test_bad_input_is_a_400_naming_the_field(world, fresh, client_for, body, field):
    response = client_for(world.a.agent).post(_url(fresh.identity.pk), body, format="json")

    assert_error(response, 400, field=field)


def test_without_credentials_a_401(world, fresh, anonymous):
    response = anonymous.post(_url(fresh.identity.pk), {"customer_number": "K-alpha", "postal_code": "10115"})

    assert_error(response, 401, "not_authenticated")


def test_without_the_merge_scope_a_403(world, fresh, client_for):
    client = client_for(world.a.agent, [s for s in Scope.values if s != "merge"])

    response = client.post(_url(fresh.identity.pk), {"customer_number": "K-alpha", "postal_code": "10115"})

    body = assert_error(response, 403, "scope_missing")
    assert "merge" in body["detail"]


def test_another_teams_identity_is_a_404(world, fresh, client_for):
    response = client_for(world.b.agent).post(_url(fresh.identity.pk),
                                              {"customer_number": "K-beta", "postal_code": "10115"})

    assert_error(response, 404, "not_found")
    assert SocialIdentity.objects.get(pk=fresh.identity.pk).customer_id == fresh.customer.pk


def test_another_teams_customer_number_answers_like_an_unknown_one(world, fresh, client_for):
    Customer.objects.filter(pk=world.b.customer.pk).update(postal_address="20095 Hamburg")
    client = client_for(world.a.agent)
    before = AuditEvent.objects.count()

    other_team = client.post(_url(fresh.identity.pk), {"customer_number": "K-beta", "postal_code": "20095"})
    wrong_evidence = client.post(_url(fresh.identity.pk), {"customer_number": "K-beta", "postal_code": "1"})
    unknown = client.post(_url(fresh.identity.pk), {"customer_number": "K-gamma", "postal_code": "20095"})

    for response in (other_team, wrong_evidence, unknown):
        assert_error(response, 404, "customer_number_unknown", field="customer_number")
    assert other_team.json() == unknown.json()
    assert AuditEvent.objects.count() == before
    assert SocialIdentity.objects.get(pk=fresh.identity.pk).customer_id == fresh.customer.pk


def test_an_unrestricted_user_links_across_teams(world, fresh, client_for):
    Customer.objects.filter(pk=world.b.customer.pk).update(postal_address="20095 Hamburg")

    response = client_for(world.admin).post(_url(fresh.identity.pk),
                                            {"customer_number": "K-beta", "postal_code": "20095"})

    assert response.status_code == 200, response.content
    assert SocialIdentity.objects.get(pk=fresh.identity.pk).customer_id == world.b.customer.pk
