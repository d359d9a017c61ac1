"""The duplicate review queue: open suggestions in view, best first, keyset pages, accept (to the merge preview) and
reject (a cannot-link decision with its reason), permissions, bad input, escaping, query counts."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels.ingest import ingest
from contacts.models import AuditEvent, Customer, DuplicateSuggestion, SocialIdentity
from tests.api.conftest import World
from tests.channels.factories import post
from tests.console.test_customer import HOSTILE, IMG, SCRIPT, SVG

pytestmark = pytest.mark.django_db

ConsoleFor = Callable[[User], Client]

EVIDENCE = [
    {"field": "email", "level": "exact", "bits": 11.5, "left": "kunde@example.com", "right": "kunde@example.com",
     "note": ""},
    {"field": "name", "level": "jaro_winkler_0.92", "bits": 3.1, "left": "Kunde Alpha", "right": "Kunde Alfa",
     "note": ""},
    {"field": "phone", "level": "different", "bits": -4.2, "left": "+49170111", "right": "+49170222", "note": ""},
]


def suggest(a: Customer | int, b: Customer | int, *, score: float = 12.0, **fields: object) -> DuplicateSuggestion:
    low, high = sorted([getattr(a, "pk", a), getattr(b, "pk", b)])
    return DuplicateSuggestion.objects.create(customer_low=low, customer_high=high, score=score, probability=0.9,
                                              model_version="dedupe-test", explanation=EVIDENCE, **fields)


def twin(world: World, who: int, side: str = "a") -> Customer:
    """A new customer on team `side`'s account."""
    account = world.a.account if side == "a" else world.b.account
    ingest(account, [post(f"twin-{who}", who=who, minutes=4)])
    customer = SocialIdentity.objects.get(external_id=f"u{who}").customer
    Customer.objects.filter(pk=customer.pk).update(display_name=f"Zwilling {who}")
    return customer


def test_the_queue_lists_open_suggestions_best_first_with_the_evidence(world: World, staff: User,
                                                                       console_for: ConsoleFor):
    low = suggest(world.a.customer, twin(world, 31), score=8.0)
    high = suggest(world.a.customer, twin(world, 32), score=15.0)
    suggest(world.a.customer, twin(world, 33), status="rejected")

    response = console_for(staff).get("/duplicates/")

    assert response.status_code == 200
    html = response.content.decode()
    order = [int(x) for x in re.findall(r'data-testid="duplicate-suggestion" data-suggestion-id="(\d+)"', html)]
    assert order == [high.pk, low.pk]
    assert "Zwilling 32" in html
    assert "kunde@example.com" in html
    assert "jaro_winkler_0.92" in html
    assert "-4.2" in html
    assert 'aria-current="page"' in html
    assert html.count('data-testid="duplicate-reject"') == 2


def test_accept_opens_the_merge_preview_with_the_older_customer_kept(world: World, staff: User,
                                                                     console_for: ConsoleFor):
    newer = twin(world, 34)
    suggestion = suggest(world.a.customer, newer)
    client = console_for(staff)

    html = client.get("/duplicates/").content.decode()
    link = f"/customers/{world.a.customer.pk}/merge/?source={newer.pk}&amp;suggestion={suggestion.pk}"
    assert link in html
    preview = client.get(link.replace("&amp;", "&"))
    assert preview.status_code == 200
    assert f'name="suggestion" value="{suggestion.pk}"' in preview.content.decode()


def test_reject_records_the_pair_as_two_people(world: World, staff: User, console_for: ConsoleFor):
    other = twin(world, 35)
    suggestion = suggest(world.a.customer, other)

    response = console_for(staff).post(f"/duplicates/{suggestion.pk}/reject/",
                                       {"reason": "Vater und Sohn", "next": "/duplicates/"})

    assert response.status_code == 302
    assert response["Location"] == "/duplicates/"
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.decided_by, suggestion.reason) == ("rejected", staff, "Vater und Sohn")
    event = AuditEvent.objects.get(kind="suggestion_rejected")
    assert event.actor == staff
    assert event.reason == "Vater und Sohn"
    assert f'data-suggestion-id="{suggestion.pk}"' not in console_for(staff).get("/duplicates/").content.decode()


def test_reject_returns_to_a_safe_next_page_only(world: World, staff: User, console_for: ConsoleFor):
    suggestion = suggest(world.a.customer, twin(world, 36))
    response = console_for(staff).post(f"/duplicates/{suggestion.pk}/reject/",
                                       {"reason": "x", "next": "https://evil.example/"})
    assert response["Location"] == "/duplicates/"


def test_reject_needs_a_reason_and_an_open_suggestion(world: World, staff: User, console_for: ConsoleFor):
    suggestion = suggest(world.a.customer, twin(world, 37))
    client = console_for(staff)

    missing = client.post(f"/duplicates/{suggestion.pk}/reject/", {"reason": " "})
    assert missing.status_code == 400
    assert "Give a reason" in missing.content.decode()
    assert DuplicateSuggestion.objects.get(pk=suggestion.pk).status == "open"
    assert client.post(f"/duplicates/{suggestion.pk}/reject/", {"reason": "x"}).status_code == 302
    again = client.post(f"/duplicates/{suggestion.pk}/reject/", {"reason": "x"})
    assert again.status_code == 409
    assert "decided on this suggestion already" in again.content.decode()


def test_agents_see_only_pairs_in_their_view_and_may_not_decide(world: World, console_for: ConsoleFor):
    mine = suggest(world.a.customer, twin(world, 38))
    theirs = suggest(world.b.customer, twin(world, 39, side="b"))
    across = suggest(world.a.customer, world.b.customer)

    html = console_for(world.a.agent).get("/duplicates/").content.decode()

    assert f'data-suggestion-id="{mine.pk}"' in html
    assert f'data-suggestion-id="{theirs.pk}"' not in html
    assert f'data-suggestion-id="{across.pk}"' not in html
    assert 'data-testid="duplicate-reject"' not in html
    assert console_for(world.a.agent).post(f"/duplicates/{mine.pk}/reject/", {"reason": "x"}).status_code == 403
    assert console_for(world.a.agent).post(f"/duplicates/{theirs.pk}/reject/", {"reason": "x"}).status_code == 404
    assert console_for(world.b.agent).post(f"/duplicates/{mine.pk}/reject/", {"reason": "x"}).status_code == 404
    assert DuplicateSuggestion.objects.filter(status="open").count() == 3


def test_the_queue_pages_by_keyset_without_duplicates(world: World, staff: User, console_for: ConsoleFor):
    made = [suggest(world.a.customer, twin(world, 100 + i), score=float(i % 7)) for i in range(30)]
    client = console_for(staff)

    seen: list[int] = []
    url = "/duplicates/"
    while url:
        html = client.get(url).content.decode()
        seen += [int(x) for x in re.findall(r'data-testid="duplicate-suggestion" data-suggestion-id="(\d+)"', html)]
        more = re.search(r'data-testid="duplicates-more" href="(\?cursor=[^"]+)"', html)
        url = f"/duplicates/{more.group(1)}" if more else ""
    expected = [s.pk for s in sorted(made, key=lambda s: (-s.score, -s.pk))]
    assert seen == expected


@pytest.mark.parametrize("cursor", ["garbage", "eyJvIjoidGltZWxpbmUiLCJrIjpbMSwyXX0", "eyJvIjoiZHVwbGljYXRlcyJ9"])
def test_a_bad_cursor_is_a_400(world: World, staff: User, console_for: ConsoleFor, cursor: str):
    response = console_for(staff).get("/duplicates/", {"cursor": cursor})
    assert response.status_code == 400
    assert "link to more suggestions is broken" in response.content.decode()


def test_hostile_names_and_evidence_are_escaped(world: World, staff: User, console_for: ConsoleFor):
    other = twin(world, 40)
    Customer.objects.filter(pk=other.pk).update(display_name=HOSTILE)
    suggestion = suggest(world.a.customer, other)
    DuplicateSuggestion.objects.filter(pk=suggestion.pk).update(model_version=IMG, explanation=[
        {"field": SCRIPT, "level": IMG, "bits": 1.0, "left": SVG, "right": HOSTILE, "note": SCRIPT}])

    for url in ("/duplicates/", f"/customers/{world.a.customer.pk}/"):
        html = console_for(staff).get(url).content.decode()
        for raw in (SCRIPT, IMG, SVG, "<iframe"):
            assert raw not in html, url
        assert "&lt;svg onload=alert(3)&gt;" in html


def test_the_queue_costs_a_fixed_number_of_queries(world: World, staff: User, console_for: ConsoleFor):
    client = console_for(staff)

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/duplicates/").status_code == 200
        return len(captured)

    suggest(world.a.customer, twin(world, 200))
    small = count()
    for i in range(30):
        suggest(world.a.customer, twin(world, 300 + i))
    assert count() == small <= 8
