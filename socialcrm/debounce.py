"""One task run per time window, however many writes ask for it.

A write that wants work done later (drain the webhook deliveries it stored, score the customers it created)
calls `enqueue_once_per_window` after its commit. The first caller of a window takes the window in Redis (SET
NX of the run's due time, with a GET in the same MULTI) and enqueues the task to run when the window closes,
so everything committed inside the window is in the database when the task reads it. Later callers learn the
due time, and their process skips Redis while that run is still comfortably ahead. If Redis or the broker is
down the work stays queued in the database and the task's beat sweeper picks it up.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# A process that knows of a run due at least this much later does not ask Redis again.
MARGIN = 0.1

_client: redis.Redis | None = None
_due: dict[str, float] = {}


def redis_client() -> redis.Redis:
    """The process's Redis client (REDIS_URL), with short timeouts."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def enqueue_once_per_window(task: Any, *, key: str, window: float) -> None:
    """Enqueue `task` to run `window` seconds from now unless a run of it is already due within the window."""
    now = time.time()
    if now < _due.get(key, 0.0) - MARGIN:
        return
    try:
        due = now + window
        # SET NX and GET in one MULTI (one round trip): SET's own GET option with NX needs Redis 7, and the
        # embedded Redis of ./dev is 6.2.
        with redis_client().pipeline(transaction=True) as pipe:
            taken, held = pipe.set(key, repr(due), nx=True, px=int(window * 1000)).get(key).execute()
        if taken:
            _due[key] = due
            task.apply_async(countdown=window)
        else:
            _due[key] = float(held) if held is not None else 0.0
    except Exception:  # the broker or Redis being down must not fail the write that asked
        logger.exception("could not enqueue %s; its sweeper will pick the work up", getattr(task, "name", task))
