"""Keyset pagination: a walk through a list sees every row once, even while rows are added."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from contacts.models import Customer
from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


def walk(client: APIClient, url: str, on_page: Callable[[], None] | None = None) -> list[int]:
    seen: list[int] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        seen += [row["id"] for row in response.json()["results"]]
        if on_page is not None:
            on_page()
        url = response.json()["next"]
    return seen


@pytest.mark.parametrize("ordering", ["-updated_at", "updated_at", "-id", "id"])
def test_a_walk_sees_every_row_exactly_once_while_rows_are_inserted(world, client_for, ordering):
    Customer.objects.bulk_create([Customer(display_name=f"Kunde {i}") for i in range(23)])
    before = set(Customer.objects.values_list("pk", flat=True))
    added: list[int] = []

    def insert() -> None:
        added.append(Customer.objects.create(display_name="neu").pk)

    seen = walk(client_for(world.admin), f"/api/v1/customers/?page_size=7&ordering={ordering}", insert)

    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    assert set(seen) <= before | set(added)
    if ordering.startswith("-"):
        assert not set(seen) & set(added)  # new rows land before the walk's position


def test_the_previous_link_returns_the_page_before(world, client_for):
    Customer.objects.bulk_create([Customer(display_name=f"Kunde {i}") for i in range(10)])
    client = client_for(world.admin)
    first = client.get("/api/v1/customers/?page_size=4&ordering=id").json()
    second = client.get(first["next"]).json()

    back = client.get(second["previous"]).json()

    assert [r["id"] for r in back["results"]] == [r["id"] for r in first["results"]]
    assert first["previous"] is None
    assert back["previous"] is None
    assert back["next"] is not None


@pytest.mark.parametrize(("query", "field"), [
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=eyJvIjoiaWQiLCJrIjpbImEiXX0", "cursor"),  # {"o":"id","k":["a"]}
    ("cursor=eyJvIjoiLWlkIiwiayI6WzFdfQ", "cursor"),  # made for ordering -id, used with id
    ("page_size=0", "page_size"),
    ("page_size=201", "page_size"),
    ("page_size=", "page_size"),
    ("ordering=display_name", "ordering"),
    ("ordering=", "ordering"),
])
def test_bad_pagination_input_is_a_400_naming_it(world, client_for, query, field):
    response = client_for(world.admin).get(f"/api/v1/customers/?ordering=id&{query}")

    assert_error(response, 400, "invalid", field=field)
