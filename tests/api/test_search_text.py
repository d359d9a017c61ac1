"""`Customer.search_text` is right after every write of its inputs, and search on it finds what it found before."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels.ingest import ingest
from contacts.gdpr import customer_erase
from contacts.merge import customer_merge, customer_unmerge, identity_link, identity_unlink
from contacts.models import ContactPoint, Customer, SocialIdentity
from contacts.search import SEPARATOR, customers_search_text_refresh
from tests.api.conftest import World, ids
from tests.api.test_customers import _searchable
from tests.channels.factories import author, post

pytestmark = pytest.mark.django_db

S, SECTION = SEPARATOR, "\x1e"


def text_of(customer: Customer | int) -> str:
    return Customer.objects.get(pk=getattr(customer, "pk", customer)).search_text


def assert_fresh(*customers: Customer | int) -> None:
    """The stored search text is what a recomputation from the rows gives."""
    before = {c: text_of(c) for c in customers}
    assert customers_search_text_refresh(customer_ids=[getattr(c, "pk", c) for c in customers]) == 0, before


def customer_of(external_id: str) -> Customer:
    return SocialIdentity.objects.get(external_id=external_id).customer


def test_ingest_writes_a_new_customers_text_in_its_insert(world: World):
    ingest(world.a.account, [post("n-1", who=77, author=author(77, handle="@anna_s", display_name="Anna S."))])
    customer = customer_of("u77")

    assert text_of(customer) == f"{S}ANNA S.{S}{S}ANNA S.{S}{SECTION}{S}ANNA_S{S}{SECTION}"
    assert_fresh(customer)


def test_ingest_rewrites_the_text_when_a_handle_or_name_changes_and_only_then(world: World):
    ingest(world.a.account, [post("c-1", who=78, author=author(78, handle="old_handle", display_name="Old Name"))])
    customer = customer_of("u78")

    with CaptureQueriesContext(connection) as seen_again:
        ingest(world.a.account, [post("c-2", who=78, minutes=5,
                                      author=author(78, handle="old_handle", display_name="Old Name"))])
    assert not [q for q in seen_again.captured_queries if "search_text = v.search_text" in q["sql"]]

    ingest(world.a.account, [post("c-3", who=78, minutes=9, author=author(78, handle="new_handle",
                                                                          display_name="New Name"))])
    assert "NEW_HANDLE" in text_of(customer)
    assert "NEW NAME" in text_of(customer)
    assert "OLD_HANDLE" not in text_of(customer)
    assert_fresh(customer)


def test_merge_and_unmerge_move_the_text_with_the_identities_and_addresses(world: World):
    target = _searchable(world, "Erika Muster", handle="erika_m")
    source = _searchable(world, "E. Mustermann", handle="emm", email="e.mustermann@example.org")

    event = customer_merge(target=target, source=source, actor="test")
    assert "EMM" in text_of(target)
    assert "E.MUSTERMANN@EXAMPLE.ORG" in text_of(target)
    assert "EMM" not in text_of(source)  # the tombstone keeps its own name only
    assert_fresh(target, source)

    customer_unmerge(merge_event=event, actor="test")
    assert "EMM" not in text_of(target)
    assert "E.MUSTERMANN@EXAMPLE.ORG" in text_of(source)
    assert_fresh(target, source)


def test_link_and_unlink_move_the_identitys_name_and_handle(world: World):
    owner = _searchable(world, "Paula Pfeiffer", handle="paula_p")
    other = _searchable(world, "Hans Pfeiffer", handle="hans_p")
    moving = SocialIdentity.objects.get(customer=other)

    identity_link(identity=moving, customer=owner, actor="test", reason="same person")
    assert "HANS_P" in text_of(owner)
    assert "HANS_P" not in text_of(other)
    assert_fresh(owner, other)

    new = identity_unlink(identity=moving, actor="test", reason="not the same")
    assert "HANS_P" in text_of(new)
    assert "HANS_P" not in text_of(owner)
    assert_fresh(owner, new)


def test_contact_points_and_identities_changed_in_the_admin_are_searched(world: World, client_for):
    customer = world.a.customer
    ContactPoint.objects.create(customer=customer, kind="email", value="neu@example.net", normalized="neu@example.net")
    customers_search_text_refresh(customer_ids=[customer.pk])  # what CustomerAdmin.save_related does
    assert ids(client_for(world.admin).get("/api/v1/customers/", {"q": "neu@example"})) == [customer.pk]

    ContactPoint.objects.filter(customer=customer, normalized="neu@example.net").delete()
    customers_search_text_refresh(customer_ids=[customer.pk])
    assert ids(client_for(world.admin).get("/api/v1/customers/", {"q": "neu@example"})) == []

    identity = world.a.identity
    identity.handle = "umbenannt"
    admin.site._registry[SocialIdentity].save_model(None, identity, None, True)
    assert ids(client_for(world.admin).get("/api/v1/customers/", {"q": "umbenannt"})) == [customer.pk]


def test_customers_created_or_renamed_through_the_api_are_found_by_the_new_name(world: World, client_for):
    client = client_for(world.admin)
    created = client.post("/api/v1/customers/", {"display_name": "Zora Neuling"}, format="json").json()["id"]
    assert ids(client.get("/api/v1/customers/", {"q": "neuling"})) == [created]

    assert client.patch(f"/api/v1/customers/{world.a.customer.pk}/", {"display_name": "Quentin Quast"},
                        format="json").status_code == 200
    assert ids(client.get("/api/v1/customers/", {"q": "quast"})) == [world.a.customer.pk]
    assert ids(client.get("/api/v1/customers/", {"q": "kunde alpha"})) == []
    assert_fresh(created, world.a.customer)


def test_an_erased_customer_is_not_found(world: World, client_for):
    erased = _searchable(world, "Gerda Gelöscht", handle="gerda_g", email="gerda@example.org")
    customer_erase(customer=erased, actor="test", reason="Art. 17")
    client = client_for(world.admin)
    for q in ["Gelöscht", "@gerda_g", "gerda@example"]:
        assert ids(client.get("/api/v1/customers/", {"q": q})) == []


def test_each_kind_matches_as_before(world: World, client_for):
    named = _searchable(world, "Anna Bergmann", handle="ab", email="ab@example.org")
    handle_only = _searchable(world, "Xaver", handle="xanna")
    client = client_for(world.admin)

    def found(q: str) -> set[int]:
        return set(ids(client.get("/api/v1/customers/", {"q": q})))

    assert found("anna") == {named.pk, handle_only.pk}  # a name, a handle
    assert found("@anna") == {handle_only.pk}  # with "@": handles only (and names or addresses holding "@anna")
    assert found("@ab") == {named.pk}  # two characters after the "@": the whole handle
    assert found("ab") == {named.pk}  # two characters: whole values only, here the handle
    assert found("an") == set()
    assert found("AB@EXAMPLE") == {named.pk}
    assert found("bergmann ab") == set()  # a match never spans two values
    assert found("K-alpha") == {world.a.customer.pk}  # customer number
    assert found("u1") == {world.a.customer.pk}  # platform user id


def test_separators_and_control_characters_are_harmless(world: World, client_for):
    odd = _searchable(world, f"Ann{S}a\x1eX\x07", handle="odd")
    client = client_for(world.admin)

    stored = text_of(odd)
    assert "ANNAX" in stored
    assert "\x07" not in stored
    assert stored.count(SECTION) == 2
    assert ids(client.get("/api/v1/customers/", {"q": "annax"})) == [odd.pk]
    for q in [S, "\x1e", f"ANNAX{S}%", "_", "\\", f"a{S}b"]:
        assert client.get("/api/v1/customers/", {"q": q}).status_code == 200, q
    assert ids(client.get("/api/v1/customers/", {"q": f"an{S}nax"})) == [odd.pk]  # the separators are dropped
    assert ids(client.get("/api/v1/customers/", {"q": "%"})) == []
    assert ids(client.get("/api/v1/customers/", {"q": f"{S}{SECTION}"})) in ([], ids(client.get("/api/v1/customers/")))
