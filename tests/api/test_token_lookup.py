"""The token lookup's own plain query gives what the ORM gives, in one query."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access import selectors
from access.models import ApiToken
from access.selectors import api_token_get_for_secret
from access.services import api_token_create

pytestmark = pytest.mark.django_db


def _orm(secret: str) -> ApiToken:
    return ApiToken.objects.select_related("user").get(prefix=selectors.split_token(secret)[0])


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def test_the_lookup_matches_the_selector_in_one_query(world):
    _, secret = api_token_create(user=world.a.agent, name="t", scopes=["read", "write"])
    api_token_create(user=world.admin, name="other", scopes=["read"])
    assert selectors._lookup_plan() is not None  # the models need no conversions: the plain query runs
    with CaptureQueriesContext(connection) as queries:
        token = api_token_get_for_secret(secret)
    assert len(queries) == 1
    expected = _orm(secret)
    assert _fields(token) == _fields(expected)
    assert token.scopes == ["read", "write"]
    assert token._state.adding is False
    with CaptureQueriesContext(connection) as queries:
        assert _fields(token.user) == _fields(expected.user)  # loaded with the token
    assert len(queries) == 0


@pytest.mark.parametrize("presented", ["", "scrm_", "scrm_nope_secret", "other_abc_def", "scrm_abc"])
def test_unknown_or_malformed_tokens_find_nothing(world, presented):
    assert api_token_get_for_secret(presented) is None


def test_a_wrong_secret_for_a_known_prefix_finds_nothing(world):
    _, secret = api_token_create(user=world.a.agent, name="t", scopes=["read"])
    assert api_token_get_for_secret(secret[:-1] + ("x" if secret[-1] != "x" else "y")) is None


def test_without_the_plan_the_orm_answers(world, monkeypatch):
    _, secret = api_token_create(user=world.a.agent, name="t", scopes=["read"])
    monkeypatch.setattr(selectors, "_lookup_plan", lambda: None)
    assert _fields(api_token_get_for_secret(secret)) == _fields(_orm(secret))
