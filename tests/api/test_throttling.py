"""The rate limit's counter: one Redis round trip a request, a window that expires, other backends too."""

from __future__ import annotations

import uuid
from unittest import mock

from django.core.cache import cache
from django.test import override_settings
from redis.client import Pipeline

from socialcrm.api.throttling import count_hit


def test_a_hit_is_counted_in_one_round_trip_and_the_window_expires():
    key = f"throttle:test:{uuid.uuid4().hex}"
    with mock.patch.object(Pipeline, "execute", autospec=True, side_effect=Pipeline.execute) as execute:
        assert [count_hit(key, 61) for _ in range(3)] == [1, 2, 3]
    assert execute.call_count == 3
    assert cache.get(key) == 3  # the counter is an ordinary cache entry
    client = cache._cache.get_client(write=True)
    assert 0 < client.ttl(cache.make_and_validate_key(key)) <= 61


@override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}})
def test_other_cache_backends_count_too():
    key = f"throttle:test:{uuid.uuid4().hex}"
    assert [count_hit(key, 61) for _ in range(3)] == [1, 2, 3]
