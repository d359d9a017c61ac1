"""Merging two customers from the side-by-side preview, and undoing it: the database before and after, conflict
choices, every refusal as a clear 4xx message, permissions, visibility, escaping, query counts."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels.ingest import ingest
from contacts.merge import customer_merge
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.search import customers_search_text_refresh
from tests.api.conftest import World
from tests.channels.factories import post
from tests.console.test_customer import HOSTILE, IMG, SCRIPT, SVG, merge_perm_user

pytestmark = pytest.mark.django_db

ConsoleFor = Callable[[User], Client]


def second_customer(world: World, who: int = 21, **fields: object) -> Customer:
    """Another customer on team a's account (a new X author), with `fields` set and an e-mail address."""
    ingest(world.a.account, [post(f"second-{who}", who=who, minutes=2, text="Bin ich doppelt?")])
    customer = SocialIdentity.objects.get(external_id=f"u{who}").customer
    Customer.objects.filter(pk=customer.pk).update(**{"display_name": f"Zweitprofil {who}", **fields})
    ContactPoint.objects.create(customer=customer, kind="email", value=f"second{who}@example.com",
                                normalized=f"second{who}@example.com")
    customers_search_text_refresh(customer_ids=[customer.pk])  # written past the services above
    customer.refresh_from_db()
    return customer


def merge_url(target: Customer, source: Customer | int | str | None = None) -> str:
    url = f"/customers/{target.pk}/merge/"
    return url if source is None else f"{url}?source={getattr(source, 'pk', source)}"


def test_the_preview_shows_both_customers_side_by_side_with_what_moves(world: World, staff: User,
                                                                       console_for: ConsoleFor):
    source = second_customer(world, customer_number="K-other", language="de")

    response = console_for(staff).get(merge_url(world.a.customer, source))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="merge-side-target"' in html
    assert 'data-testid="merge-side-source"' in html
    assert "Kunde alpha" in html
    assert "Zweitprofil 21" in html
    assert html.count('data-testid="merge-field"') == 7
    # Two customer numbers: a conflict the agent must decide, with a radio for each side and none preselected.
    number_row = re.search(r'data-field="customer_number" class="conflict">.*?</tr>', html, re.S).group(0)
    assert 'value="target"' in number_row
    assert 'value="source"' in number_row
    assert "checked" not in number_row
    assert "second21@example.com" in html
    assert "moves to this customer" in html
    assert 'data-testid="merge-counts"' in html
    assert "1 identity moves" in html
    assert "1 contact point moves" in html
    assert 'data-testid="merge-confirm"' in html


def test_merging_moves_identities_tombstones_the_source_and_undo_restores(world: World, staff: User,
                                                                          console_for: ConsoleFor):
    source = second_customer(world)
    moving = SocialIdentity.objects.get(customer=source)
    client = console_for(staff)

    response = client.post(merge_url(world.a.customer), {"source": source.pk, "reason": "same person"})

    event = AuditEvent.objects.get(kind="merge")
    assert response.status_code == 302
    assert response["Location"] == f"/customers/{world.a.customer.pk}/?merged={event.pk}"
    assert (event.customer_id, event.source_customer_id, event.actor, event.reason) == (
        world.a.customer.pk, source.pk, staff, "same person")
    assert SocialIdentity.objects.get(pk=moving.pk).customer_id == world.a.customer.pk
    assert Customer.objects.get(pk=source.pk).merged_into_id == world.a.customer.pk
    assert ContactPoint.objects.filter(customer=world.a.customer, value="second21@example.com").exists()

    profile = client.get(response["Location"]).content.decode()
    assert "was merged into this customer" in profile
    assert profile.count('data-testid="merge-undo"') == 1
    assert f'action="/merges/{event.pk}/undo/"' in profile
    assert client.get(f"/customers/{source.pk}/")["Location"] == f"/customers/{world.a.customer.pk}/"

    undone = client.post(f"/merges/{event.pk}/undo/", {"reason": "wrong person"})

    assert undone.status_code == 302
    assert undone["Location"] == f"/customers/{source.pk}/"
    assert SocialIdentity.objects.get(pk=moving.pk).customer_id == source.pk
    assert Customer.objects.get(pk=source.pk).merged_into_id is None
    assert ContactPoint.objects.filter(customer=source, value="second21@example.com").exists()
    unmerge = AuditEvent.objects.get(kind="unmerge")
    assert AuditEvent.objects.get(pk=event.pk).undone_by_id == unmerge.pk
    assert unmerge.reason == "wrong person"
    restored = client.get(undone["Location"]).content.decode()
    assert "Zweitprofil 21" in restored
    assert "The merge was undone" in restored


def test_a_conflict_needs_a_choice_and_the_choice_is_applied(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world, customer_number="K-other")
    client = console_for(staff)

    refused = client.post(merge_url(world.a.customer), {"source": source.pk})

    assert refused.status_code == 409
    assert "different customer numbers" in refused.content.decode()
    assert Customer.objects.get(pk=source.pk).merged_into_id is None

    done = client.post(merge_url(world.a.customer), {"source": source.pk, "choice_customer_number": "source",
                                                     "choice_display_name": "target"})

    assert done.status_code == 302
    assert Customer.objects.get(pk=world.a.customer.pk).customer_number == "K-other"
    assert Customer.objects.get(pk=world.a.customer.pk).display_name == "Kunde alpha"
    assert AuditEvent.objects.get(kind="merge").moved["rules"]["customer_number"] == "chosen_source"


@pytest.mark.parametrize(("source", "status", "message"), [
    ("abc", 400, "must be a customer or record id"),
    ("-3", 400, "must be a customer or record id"),
    ("99999999999999999999999", 400, "must be a customer or record id"),
    ("999999999", 404, "No such customer"),
])
def test_bad_source_ids_are_clear_errors(world: World, staff: User, console_for: ConsoleFor, source: str,
                                         status: int, message: str):
    client = console_for(staff)
    for response in (client.get(merge_url(world.a.customer, source)),
                     client.post(merge_url(world.a.customer), {"source": source})):
        assert response.status_code == status
        assert message in response.content.decode()


def test_merging_a_customer_with_itself_is_refused(world: World, staff: User, console_for: ConsoleFor):
    client = console_for(staff)
    for response in (client.get(merge_url(world.a.customer, world.a.customer)),
                     client.post(merge_url(world.a.customer), {"source": world.a.customer.pk})):
        assert response.status_code == 409
        assert "cannot be merged with itself" in response.content.decode()


def test_a_post_without_source_or_with_a_bad_choice_is_a_400(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world)
    client = console_for(staff)
    assert client.post(merge_url(world.a.customer), {}).status_code == 400
    bad = client.post(merge_url(world.a.customer), {"source": source.pk, "choice_language": "both"})
    assert bad.status_code == 400
    assert "Choose either" in bad.content.decode()
    assert not AuditEvent.objects.filter(kind="merge").exists()


def test_merging_into_a_tombstone_or_a_merged_source_is_refused(world: World, staff: User,
                                                                console_for: ConsoleFor):
    first, second = second_customer(world, 21), second_customer(world, 22)
    customer_merge(target=world.a.customer, source=first, actor="test")
    client = console_for(staff)

    into_tombstone = client.get(merge_url(first, second))
    from_tombstone = client.post(merge_url(second), {"source": first.pk})

    assert into_tombstone.status_code == 409
    assert "merge into the surviving customer" in into_tombstone.content.decode()
    assert from_tombstone.status_code == 409
    assert "merged already" in from_tombstone.content.decode()
    assert Customer.objects.get(pk=second.pk).merged_into_id is None


def test_a_merge_that_lost_a_race_says_so(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world)
    client = console_for(staff)
    assert client.get(merge_url(world.a.customer, source)).status_code == 200
    customer_merge(target=world.b.customer, source=source, actor="a colleague")  # meanwhile

    response = client.post(merge_url(world.a.customer), {"source": source.pk, "reason": "same"})

    assert response.status_code == 409
    assert "merged already" in response.content.decode()
    assert Customer.objects.get(pk=source.pk).merged_into_id == world.b.customer.pk


def test_a_pair_recorded_as_two_people_is_not_merged(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world)
    low, high = sorted([world.a.customer.pk, source.pk])
    DuplicateSuggestion.objects.create(customer_low=low, customer_high=high, score=9, probability=0.8,
                                       model_version="t", status="rejected", decided_by=staff,
                                       decided_by_label="crm-staff", reason=f"Zwillinge {SCRIPT}")
    client = console_for(staff)

    preview = client.get(merge_url(world.a.customer, source)).content.decode()
    response = client.post(merge_url(world.a.customer), {"source": source.pk})

    assert 'data-testid="cannot-link"' in preview
    assert "two different people" in preview
    assert SCRIPT not in preview
    assert "Zwillinge &lt;script&gt;" in preview
    assert response.status_code == 409
    assert "two different people" in response.content.decode()
    assert Customer.objects.get(pk=source.pk).merged_into_id is None


def test_accepting_a_suggestion_through_the_preview_records_the_decision(world: World, staff: User,
                                                                          console_for: ConsoleFor):
    source = second_customer(world)
    low, high = sorted([world.a.customer.pk, source.pk])
    suggestion = DuplicateSuggestion.objects.create(customer_low=low, customer_high=high, score=12,
                                                    probability=0.95, model_version="t", explanation=[])

    response = console_for(staff).post(merge_url(world.a.customer), {"source": source.pk,
                                                                     "suggestion": suggestion.pk})

    assert response.status_code == 302
    suggestion.refresh_from_db()
    assert suggestion.status == "accepted"
    assert suggestion.decided_by == staff
    assert Customer.objects.get(pk=source.pk).merged_into_id == world.a.customer.pk


def test_choose_page_finds_merge_partners(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world)
    client = console_for(staff)

    by_name = client.get(merge_url(world.a.customer), {"q": "Zweitprofil"}).content.decode()
    by_id = client.get(merge_url(world.a.customer), {"q": str(source.pk)}).content.decode()

    for html in (by_name, by_id):
        assert f'data-testid="merge-candidate" data-customer-id="{source.pk}"' in html
        assert f'href="?source={source.pk}"' in html
        assert f'data-customer-id="{world.a.customer.pk}"' not in html


def test_undo_out_of_order_or_twice_is_refused(world: World, staff: User, console_for: ConsoleFor):
    first, second = second_customer(world, 21), second_customer(world, 22)
    older = customer_merge(target=world.a.customer, source=first, actor="test")
    newer = customer_merge(target=world.a.customer, source=second, actor="test")
    client = console_for(staff)

    out_of_order = client.post(f"/merges/{older.pk}/undo/")
    assert out_of_order.status_code == 409
    assert "undo the newest merge first" in out_of_order.content.decode()
    assert client.post(f"/merges/{newer.pk}/undo/").status_code == 302
    twice = client.post(f"/merges/{newer.pk}/undo/")
    assert twice.status_code == 409
    assert "undone already" in twice.content.decode()


def test_agents_without_the_permission_get_403_and_other_teams_404(world: World, console_for: ConsoleFor):
    source = second_customer(world)
    event = customer_merge(target=world.a.customer, source=second_customer(world, 23), actor="test")
    agent, other = console_for(world.a.agent), console_for(world.b.agent)

    assert agent.get(merge_url(world.a.customer, source)).status_code == 403
    assert agent.post(merge_url(world.a.customer), {"source": source.pk}).status_code == 403
    assert agent.post(f"/merges/{event.pk}/undo/").status_code == 403
    assert other.get(merge_url(world.a.customer, source)).status_code == 404
    assert other.post(merge_url(world.a.customer), {"source": source.pk}).status_code == 404
    assert other.post(f"/merges/{event.pk}/undo/").status_code == 404
    assert other.post("/merges/99999999999999999999999/undo/").status_code == 404
    assert Customer.objects.get(pk=source.pk).merged_into_id is None
    assert AuditEvent.objects.get(pk=event.pk).undone_by_id is None
    html = agent.get(f"/customers/{world.a.customer.pk}/").content.decode()
    assert 'data-testid="merge-undo"' not in html
    assert 'data-testid="merge-event"' in html


def test_a_restricted_user_may_merge_only_customers_in_view(world: World, console_for: ConsoleFor):
    client = console_for(merge_perm_user(world))
    assert client.get(merge_url(world.a.customer, world.b.customer)).status_code == 404
    assert client.post(merge_url(world.a.customer), {"source": world.b.customer.pk}).status_code == 404
    source = second_customer(world)
    assert client.post(merge_url(world.a.customer), {"source": source.pk}).status_code == 302


def test_merge_pages_escape_hostile_names(world: World, staff: User, console_for: ConsoleFor):
    source = second_customer(world, display_name=HOSTILE, notes=IMG, tags=[SVG])
    SocialIdentity.objects.filter(customer=source).update(handle=SVG, display_name=SCRIPT)
    client = console_for(staff)

    pages = [client.get(merge_url(world.a.customer, source)).content.decode(),
             client.get(merge_url(world.a.customer), {"q": "example.com"}).content.decode()]
    client.post(merge_url(world.a.customer), {"source": source.pk})
    event = AuditEvent.objects.get(kind="merge")
    pages.append(client.get(f"/customers/{world.a.customer.pk}/?merged={event.pk}").content.decode())

    for html in pages:
        for raw in (SCRIPT, IMG, SVG, "<iframe"):
            assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


def test_the_preview_costs_a_fixed_number_of_queries(world: World, staff: User, console_for: ConsoleFor):
    client = console_for(staff)

    def count(source: Customer) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(merge_url(world.a.customer, source)).status_code == 200
        return len(captured)

    small = count(second_customer(world, 31))
    big = second_customer(world, 32)
    for i in range(15):
        ingest(world.a.account, [post(f"more-{i}", who=400 + i, minutes=i)])
        SocialIdentity.objects.filter(external_id=f"u{400 + i}").update(customer=big)
        ContactPoint.objects.create(customer=big, kind="phone", value=f"+4917000{i}", normalized=f"+4917000{i}")
    assert count(big) == small <= 15
