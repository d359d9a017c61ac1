"""Search pages (`?q=`) are the matches in the list's order, each once, for every ordering, page size, cursor and
team; the page is one query on the customer rows whichever way PostgreSQL reads them."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from contacts.api.selectors import customer_list_for_user, customers_search
from contacts.models import Customer
from tests.api.test_customers import _searchable

pytestmark = pytest.mark.django_db

ORDERINGS = {"-updated_at": ("-updated_at", "-id"), "updated_at": ("updated_at", "id"), "-id": ("-id",),
             "id": ("id",)}


@pytest.fixture
def crowd(world):
    """Eighteen customers on team alpha's account, two in three matching "schmidt" (by name, handle, e-mail or
    identity name), each changed at another time."""
    made = []
    for i in range(18):
        kind = i % 6
        if kind == 0:
            made.append(_searchable(world, f"Anna Schmidt {i}"))
        elif kind == 1:
            made.append(_searchable(world, f"Karl {i}", handle=f"k.schmidt{i}"))
        elif kind == 2:
            made.append(_searchable(world, f"K. S. {i}", email=f"ks{i}@schmidt.example.org"))
        elif kind == 3:
            made.append(_searchable(world, f"Schmidtke {i}"))
        else:
            made.append(_searchable(world, f"Schmitt {i}", handle=f"schmitt{i}"))  # no match
    now = timezone.now()
    for n, customer in enumerate(made):
        Customer.objects.filter(pk=customer.pk).update(updated_at=now - dt.timedelta(minutes=(n * 7) % 18))
    return made


def _walk_pages(client, url: str) -> list[dict]:
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        pages.append(response.json())
        url = pages[-1]["next"]
    if len(pages) > 1:  # and back from the last page
        back = client.get(pages[-1]["previous"])
        assert back.status_code == 200
        pages.append(back.json())
    return pages


@pytest.mark.parametrize("ordering", list(ORDERINGS))
def test_search_pages_hold_every_match_once_in_the_lists_order(world, crowd, client_for, ordering):
    for user in (world.admin, world.a.agent, world.b.agent):
        expected = list(customers_search(customer_list_for_user(user=user, with_related=False), "schmidt")
                        .order_by(*ORDERINGS[ordering]).values_list("pk", flat=True))
        assert len(expected) == (12 if user != world.b.agent else 0)
        client = client_for(user)
        for size in (1, 2, 5, 50):
            pages = _walk_pages(client, f"/api/v1/customers/?q=schmidt&ordering={ordering}&page_size={size}")
            forward = pages[:-1] if len(pages) > 1 else pages
            assert [row["id"] for page in forward for row in page["results"]] == expected, (user, size)
            if len(pages) > 1:  # read backwards from the last page: the page before it
                assert pages[-1]["results"] == pages[-3]["results"], (user, size)


def test_a_search_page_is_one_query_with_a_limit(world, crowd, client_for):
    client = client_for(world.admin)
    client.get("/api/v1/customers/")  # the token's first use is recorded once
    for q in ["schmidt", "Schmitt 4", "@k.schmidt1", "ks2@schmidt.example.org", "K-alpha", "u1"]:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/v1/customers/", {"q": q}).status_code == 200
        pages = [s["sql"] for s in queries.captured_queries if "search_text" in s["sql"]]
        assert len(pages) == 1, q
        assert "LIMIT" in pages[0]
        assert "UNION" not in pages[0]
