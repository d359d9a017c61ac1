"""Search pages found by walking the list in its order (`CustomerPagination`) are the pages the search's index
plan gives: the same rows, links and visibility, for every ordering, page size and cursor."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.utils import timezone

from contacts.api import views
from contacts.api.selectors import customer_list_for_user, customers_search, customers_search_walk
from contacts.models import Customer
from tests.api.test_customers import _searchable

pytestmark = pytest.mark.django_db

ORDERINGS = ["-updated_at", "updated_at", "-id", "id"]


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


@pytest.mark.parametrize("ordering", ORDERINGS)
@pytest.mark.parametrize(("probe", "most"), [(2, 6), (4, 40), (500, 5000)])
def test_walked_search_pages_are_the_index_plans_pages(world, crowd, client_for, monkeypatch, ordering, probe, most):
    monkeypatch.setattr(views.CustomerPagination, "walk_probe", probe)
    monkeypatch.setattr(views.CustomerPagination, "walk_max", most)
    outcomes = []

    def walk(*args, **kwargs):
        ids, exact = customers_search_walk(*args, **kwargs)
        outcomes.append(exact)
        return ids, exact

    monkeypatch.setattr(views, "customers_search_walk", walk)
    for user in (world.admin, world.a.agent, world.b.agent):
        client = client_for(user)
        for size in (1, 2, 5, 50):
            url = f"/api/v1/customers/?q=schmidt&ordering={ordering}&page_size={size}"
            with_walk = _walk_pages(client, url)
            with monkeypatch.context() as off:
                off.setattr(views.CustomerPagination, "_walked_page", lambda *args, **kwargs: None)
                without = _walk_pages(client, url)
            assert with_walk == without, (user, size)
    assert True in outcomes  # pages were found by walking
    if probe == 2:
        assert False in outcomes  # and some walks could not tell, so the index plan answered


def test_text_with_digits_or_an_at_sign_is_not_walked(world, crowd, client_for, monkeypatch):
    walked = mock.Mock(wraps=customers_search_walk)
    monkeypatch.setattr(views, "customers_search_walk", walked)
    client = client_for(world.admin)
    for q in ["@k.schmidt1", "ks2@schmidt.example.org", "Schmidt 12", "K-1234"]:
        assert client.get("/api/v1/customers/", {"q": q}).status_code == 200
    assert walked.call_count == 0
    assert client.get("/api/v1/customers/", {"q": "Schmidt"}).status_code == 200
    assert walked.call_count == 1


def test_a_walk_is_exact_when_it_finds_the_limit_or_sees_the_whole_list(world, crowd):
    base = customer_list_for_user(user=world.admin, with_related=False)
    order = ["-updated_at", "-id"]
    expected = list(customers_search(base, "schmidt").order_by(*order).values_list("pk", flat=True))
    assert len(expected) == 12

    ids, exact = customers_search_walk(base, "schmidt", order_by=order, limit=5, window=100)
    assert exact
    assert sorted(ids) == sorted(expected[:5])
    ids, exact = customers_search_walk(base, "schmidt", order_by=order, limit=50, window=100)
    assert exact  # the list ends inside the window: every match
    assert sorted(ids) == sorted(expected)
    ids, exact = customers_search_walk(base, "schmidt", order_by=order, limit=50, window=6)
    assert not exact  # a full window with fewer matches than asked for: the rest is unknown
    first_six = list(base.order_by(*order).values_list("pk", flat=True)[:6])
    assert sorted(ids) == sorted(pk for pk in first_six if pk in expected)
