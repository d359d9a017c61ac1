"""Per-token rate limits: a fixed-window counter in the cache (Redis), incremented atomically.

A request authenticated by an API token counts against that token, one by session against its user, and
an anonymous one (the schema and docs pages) against its address. The rate is
`REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["token"]` ("<n>/<second|minute|hour|day>"), read on every
request so a settings change applies at once. The cache being down never fails a request: the limit is
then not enforced (and the failure is logged).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def count_hit(key: str, timeout: int) -> int:
    """Count one request under `key` (a fixed window that expires `timeout` seconds after its first request);
    the count so far, this request included."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(full_key, write=True).pipeline()
        pipe.set(full_key, 0, nx=True, ex=timeout)
        pipe.incr(full_key)
        return int(pipe.execute()[1])
    cache.add(key, 0, timeout=timeout)
    return cache.incr(key)


def parse_rate(rate: str) -> tuple[int, int]:
    """("120/min") -> (120, 60)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0]]


class TokenRateThrottle(BaseThrottle):
    """At most `rate` requests per window per token (or user, or address)."""

    scope = "token"

    def _ident(self, request: Request) -> str:
        token_id = getattr(request.auth, "pk", None)
        if token_id is not None:
            return f"t{token_id}"
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return f"u{user.pk}"
        return f"a{self.get_ident(request)}"

    def allow_request(self, request: Request, view: APIView) -> bool:
        rate = (api_settings.DEFAULT_THROTTLE_RATES or {}).get(self.scope)
        if not rate:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        window = int(now // period)
        key = f"throttle:{self.scope}:{self._ident(request)}:{period}:{window}"
        self._wait = (window + 1) * period - now
        try:
            count = count_hit(key, period + 1)
        except Exception:  # the cache must not take the API down
            logger.exception("rate limit not checked: the cache failed")
            return True
        return count <= limit

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
