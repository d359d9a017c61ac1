"""Customers: list and search, detail with ETag, tombstone redirects, create, update, timeline."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.utils import timezone

from channels.ingest import ingest
from contacts.models import ContactPoint, Customer, SocialIdentity
from contacts.search import customers_search_text_refresh
from tests.api.conftest import World, assert_error, ids
from tests.channels.factories import author, post

pytestmark = pytest.mark.django_db


def test_a_team_lists_only_the_customers_talking_on_its_accounts(world, client_for):
    assert ids(client_for(world.a.agent).get("/api/v1/customers/")) == [world.a.customer.pk]
    assert ids(client_for(world.b.agent).get("/api/v1/customers/")) == [world.b.customer.pk]
    assert set(ids(client_for(world.admin).get("/api/v1/customers/"))) == {world.a.customer.pk, world.b.customer.pk}


def test_a_customer_carries_its_identities_and_contact_points(world, client_for):
    body = client_for(world.a.agent).get(f"/api/v1/customers/{world.a.customer.pk}/").json()

    assert body["display_name"] == "Kunde alpha"
    assert [(i["platform"], i["handle"]) for i in body["identities"]] == [("x", "user1")]
    assert [(c["kind"], c["value"]) for c in body["contact_points"]] == [("email", "alpha@example.com")]
    assert body["merged_into_id"] is None


@pytest.mark.parametrize("q", ["kunde ALPHA", "@user1", "USER1", "alpha@example", "K-alpha", "u1", "User 1",
                               "0170 1234567", "+49 170 1234567"])
def test_q_finds_a_customer_by_name_handle_email_phone_or_number(world, client_for, q):
    ContactPoint.objects.create(customer=world.a.customer, kind="phone", value="+49 170 1234567",
                                normalized="+491701234567")
    client = client_for(world.admin)

    assert ids(client.get("/api/v1/customers/", {"q": q})) == [world.a.customer.pk]


def test_q_finds_nothing_outside_the_callers_teams(world, client_for):
    client = client_for(world.b.agent)

    for q in ["alpha", "@user1", "alpha@example.com", "K-alpha"]:
        assert ids(client.get("/api/v1/customers/", {"q": q})) == []


def _searchable(world: World, name: str, *, handle: str = "", email: str = "", minutes: int = 0) -> Customer:
    """A customer on team alpha's account with this name (customer and identity), handle and e-mail."""
    who = 9000 + Customer.objects.count()
    ingest(world.a.account, [post(f"search-{who}", who=who, minutes=minutes,
                                  author=author(who, handle=handle, display_name=name))])
    customer = SocialIdentity.objects.get(external_id=f"u{who}").customer
    Customer.objects.filter(pk=customer.pk).update(display_name=name)
    if email:
        ContactPoint.objects.create(customer=customer, kind="email", value=email, normalized=email.lower())
    customers_search_text_refresh(customer_ids=[customer.pk])  # written past the services above
    return customer


def test_q_under_three_characters_matches_whole_names_handles_and_addresses_only(world, client_for):
    li = _searchable(world, "Li", handle="li")
    lisa = _searchable(world, "Lisa Li-Wagner", handle="lisa_li", email="li@example.org")
    client = client_for(world.admin)

    assert ids(client.get("/api/v1/customers/", {"q": "Li"})) == [li.pk]  # not "Lisa Li-Wagner"
    assert ids(client.get("/api/v1/customers/", {"q": "@LI"})) == [li.pk]
    assert set(ids(client.get("/api/v1/customers/", {"q": "Lisa"}))) == {lisa.pk}
    assert set(ids(client.get("/api/v1/customers/", {"q": "li@"}))) == {lisa.pk}  # three characters: contains
    assert ids(client.get("/api/v1/customers/", {"q": "x"})) == []


def test_q_lists_each_match_once_newest_first_and_pages_with_the_cursor(world, client_for):
    # Matches by name, by identity name, by handle and by e-mail; the first by all of them at once.
    everywhere = _searchable(world, "Schmidt", handle="schmidt_k", email="schmidt@example.org", minutes=1)
    by_handle = _searchable(world, "Karl", handle="karl.schmidt", minutes=2)
    by_email = _searchable(world, "K. S.", email="k.schmidt@example.org", minutes=3)
    by_name = _searchable(world, "Anna Schmidt-Berg", minutes=4)
    _searchable(world, "Schmitt", handle="schmitt", email="schmitt@example.org")  # no match
    stamps = {c.pk: n for n, c in enumerate([everywhere, by_handle, by_email, by_name])}
    for pk, n in stamps.items():
        Customer.objects.filter(pk=pk).update(updated_at=timezone.now() - dt.timedelta(hours=n))
    client = client_for(world.a.agent)

    seen, url = [], "/api/v1/customers/?q=schmidt&page_size=1"
    while url:
        page = client.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]

    assert seen == sorted(stamps, key=stamps.get)  # newest change first, each once
    assert ids(client_for(world.b.agent).get("/api/v1/customers/", {"q": "schmidt"})) == []


def test_customers_filter_by_number_tag_and_change_time(world, client_for):
    Customer.objects.filter(pk=world.a.customer.pk).update(tags=["vip"])
    Customer.objects.filter(pk=world.b.customer.pk).update(updated_at=timezone.now() - dt.timedelta(days=3))
    client = client_for(world.admin)
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()

    assert ids(client.get("/api/v1/customers/", {"customer_number": "K-beta"})) == [world.b.customer.pk]
    assert ids(client.get("/api/v1/customers/", {"tag": "vip"})) == [world.a.customer.pk]
    assert ids(client.get("/api/v1/customers/", {"updated_since": since})) == [world.a.customer.pk]
    assert_error(client.get("/api/v1/customers/", {"updated_since": "yesterday"}), 400, field="updated_since")
    assert_error(client.get("/api/v1/customers/", {"include_merged": "maybe"}), 400, field="include_merged")


def test_customer_detail_answers_304_while_its_etag_holds(world, client_for):
    client = client_for(world.a.agent)
    url = f"/api/v1/customers/{world.a.customer.pk}/"
    first = client.get(url)
    etag = first.headers["ETag"]

    again = client.get(url, HTTP_IF_NONE_MATCH=etag)
    weak = client.get(url, HTTP_IF_NONE_MATCH=f'"other", W/{etag}')
    client.patch(url, {"language": "de"})
    changed = client.get(url, HTTP_IF_NONE_MATCH=etag)

    assert again.status_code == 304
    assert again.headers["ETag"] == etag
    assert not again.content
    assert weak.status_code == 304
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert changed.json()["language"] == "de"


def _merge(tombstone: Customer, survivor: Customer) -> None:
    """What a merge leaves behind, for these tests: the tombstone points at the survivor."""
    Customer.objects.filter(pk=tombstone.pk).update(merged_into=survivor)


def test_a_tombstone_redirects_to_its_survivor_through_several_merges(world, client_for):
    older, old = Customer.objects.create(display_name="older"), Customer.objects.create(display_name="old")
    _merge(older, old)
    _merge(old, world.a.customer)
    client = client_for(world.a.agent)

    response = client.get(f"/api/v1/customers/{older.pk}/")
    timeline = client.get(f"/api/v1/customers/{older.pk}/timeline/?page_size=5")

    assert response.status_code == 301
    assert response.headers["Location"].endswith(f"/api/v1/customers/{world.a.customer.pk}/")
    assert timeline.status_code == 301
    assert timeline.headers["Location"].endswith(f"/api/v1/customers/{world.a.customer.pk}/timeline/")
    assert_error(client_for(world.b.agent).get(f"/api/v1/customers/{older.pk}/"), 404)


def test_changing_a_tombstone_is_a_409_pointing_at_the_survivor(world, client_for):
    old = Customer.objects.create(display_name="old")
    _merge(old, world.a.customer)

    response = client_for(world.a.agent).patch(f"/api/v1/customers/{old.pk}/", {"display_name": "x"})

    assert_error(response, 409, "customer_merged")
    assert response.headers["Location"].endswith(f"/api/v1/customers/{world.a.customer.pk}/")


def test_tombstones_are_listed_only_when_asked_for(world, client_for):
    old = Customer.objects.create(display_name="old")
    _merge(old, world.a.customer)

    assert old.pk not in ids(client_for(world.a.agent).get("/api/v1/customers/"))
    listed = client_for(world.a.agent).get("/api/v1/customers/", {"include_merged": "true"}).json()["results"]
    assert {r["id"]: r["merged_into_id"] for r in listed} == {world.a.customer.pk: None, old.pk: world.a.customer.pk}
    assert old.pk not in ids(client_for(world.b.agent).get("/api/v1/customers/", {"include_merged": "true"}))


def test_creating_a_customer(world, client_for):
    response = client_for(world.admin).post("/api/v1/customers/", {
        "display_name": "Erika Mustermann", "customer_number": "K-1", "birth_date": "1980-05-01",
        "tags": ["vip", "vip", "b2b"], "language": "de",
    })

    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get(pk=body["id"])
    assert (customer.display_name, customer.customer_number, customer.tags) == ("Erika Mustermann", "K-1",
                                                                               ["vip", "b2b"])
    assert customer.birth_date == dt.date(1980, 5, 1)
    assert response.headers["Location"].endswith(f"/api/v1/customers/{customer.pk}/")
    assert body["identities"] == []


def test_a_restricted_user_cannot_create_a_customer_it_could_not_see(world, client_for):
    response = client_for(world.a.agent).post("/api/v1/customers/", {"display_name": "x"})

    assert_error(response, 403, "restricted_user")
    assert not Customer.objects.filter(display_name="x").exists()


@pytest.mark.parametrize(("body", "field"), [
    ({"birth_date": "01.05.1980"}, "birth_date"),
    ({"customer_number": "x" * 65}, "customer_number"),
    ({"tags": [""]}, "tags.0"),
    ({"id": 5}, "id"),
])
def test_creating_a_customer_with_bad_input_is_a_400_naming_the_field(world, client_for, body, field):
    assert_error(client_for(world.admin).post("/api/v1/customers/", body), 400, "invalid", field=field)


def test_updating_a_customer_changes_only_the_given_fields(world, client_for):
    response = client_for(world.a.agent).patch(f"/api/v1/customers/{world.a.customer.pk}/",
                                               {"notes": "Rückruf erbeten", "tags": ["callback"]})

    assert response.status_code == 200, response.content
    world.a.customer.refresh_from_db()
    assert (world.a.customer.notes, world.a.customer.tags) == ("Rückruf erbeten", ["callback"])
    assert world.a.customer.display_name == "Kunde alpha"


def test_another_teams_customer_is_a_404_to_read_and_to_change(world, client_for):
    client = client_for(world.b.agent)
    url = f"/api/v1/customers/{world.a.customer.pk}/"

    assert_error(client.get(url), 404, "not_found")
    assert_error(client.patch(url, {"notes": "x"}), 404, "not_found")
    assert_error(client.get(url + "timeline/"), 404, "not_found")
    world.a.customer.refresh_from_db()
    assert world.a.customer.notes == ""


def _long_history(world: World) -> None:
    """Customer a writes 12 times on account a and, through a second identity, 3 times on account b."""
    ingest(world.a.account, [post(f"a-more-{i}", who=1, minutes=10 + i) for i in range(11)])
    mastodon = dataclasses.replace(author(1), platform="mastodon", scope="m.social", external_id="m1")
    ingest(world.b.account, [post(f"b-other-{i}", author=mastodon, minutes=30 + i) for i in range(3)])
    SocialIdentity.objects.filter(platform="mastodon").update(customer=world.a.customer)


def test_the_timeline_pages_newest_first_with_an_opaque_cursor(world, client_for):
    _long_history(world)
    client = client_for(world.admin)

    pages, url = [], f"/api/v1/customers/{world.a.customer.pk}/timeline/?page_size=5"
    while url:
        body = client.get(url).json()
        pages.append([row["external_id"] for row in body["results"]])
        url = body["next"]

    flat = [e for page in pages for e in page]
    assert [len(p) for p in pages] == [5, 5, 5]
    assert flat[:4] == ["b-other-2", "b-other-1", "b-other-0", "a-more-10"]
    assert flat[-1] == "alpha-1"
    assert len(set(flat)) == 15


def test_the_timeline_shows_a_restricted_user_only_its_teams_channels(world, client_for):
    _long_history(world)

    body = client_for(world.a.agent).get(f"/api/v1/customers/{world.a.customer.pk}/timeline/?page_size=50").json()

    assert len(body["results"]) == 12
    assert {row["channel_account_id"] for row in body["results"]} == {world.a.account.pk}
    assert {row["customer_id"] for row in body["results"]} == {world.a.customer.pk}


@pytest.mark.parametrize("cursor", ["garbage", "eyJvIjoiaWQiLCJrIjpbMSwyXX0", "eyJvIjoidGltZWxpbmUiLCJrIjpbIngiLDFdfQ"])
def test_a_bad_timeline_cursor_is_a_400(world, client_for, cursor):
    response = client_for(world.admin).get(f"/api/v1/customers/{world.a.customer.pk}/timeline/?cursor={cursor}")

    assert_error(response, 400, "invalid", field="cursor")
