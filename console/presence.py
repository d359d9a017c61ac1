"""Collision detection: which agents have a conversation open right now, and whether they are typing a reply.

Every open conversation page sends a heartbeat every few seconds. Presence lives in the cache (Redis), never in
the database: one key per conversation holding a small dict `user id -> {name, typing, seen}`, written with a
time to live of `TTL` seconds, so a conversation nobody looks at any more leaves nothing behind. An entry
counts while its `seen` is younger than `TTL`; an agent who closed the page (or whose browser died) drops out
within that time, or at once when the page says goodbye (`presence_leave`).

Presence is best effort: with the cache unreachable nobody is shown and the heartbeat records nothing, but the
conversation page itself keeps working (Redis is a cache here, never the record of anything).

A heartbeat is a read and a write of one small key. Two agents' heartbeats landing in the same millisecond
may lose one entry until that agent's next heartbeat, a few seconds later; that is the price of a plain cache
key and is harmless for a warning banner.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from django.core.cache import cache

logger = logging.getLogger(__name__)

TTL = 15  # seconds; heartbeats come every 5 s
# An agent "is typing" when their page reported input within its last heartbeat; the entry's own `seen`
# keeps a stale typing flag from outliving `TYPING_FRESH`.
TYPING_FRESH = 8
MAX_NAME = 80


def _key(conversation_id: int) -> str:
    return f"console:presence:{conversation_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Viewer:
    user_id: int
    name: str
    typing: bool


def _read(conversation_id: int) -> Any:
    try:
        return cache.get(_key(conversation_id))
    except Exception:  # any backend's connection error: presence is not worth failing a page for
        logger.warning("presence: cannot read the cache", exc_info=True)
        return None


def _write(conversation_id: int, entries: dict[str, dict]) -> None:
    try:
        if entries:
            cache.set(_key(conversation_id), entries, TTL)
        else:
            cache.delete(_key(conversation_id))
    except Exception:  # as in _read
        logger.warning("presence: cannot write the cache", exc_info=True)


def _fresh(entries: object, now: float) -> dict[str, dict]:
    if not isinstance(entries, dict):
        return {}
    return {
        uid: entry for uid, entry in entries.items()
        if isinstance(entry, dict) and isinstance(entry.get("seen"), int | float) and now - entry["seen"] < TTL
    }


def presence_touch(*, conversation_id: int, user_id: int, name: str, typing: bool,
                   now: float | None = None) -> list[Viewer]:
    """Record that the agent has the conversation open (and whether they are typing); the OTHER agents present."""
    now = time.time() if now is None else now
    entries = _fresh(_read(conversation_id), now)
    entries[str(user_id)] = {"name": name[:MAX_NAME], "typing": bool(typing), "seen": now}
    _write(conversation_id, entries)
    return _others(entries, user_id, now)


def presence_leave(*, conversation_id: int, user_id: int, now: float | None = None) -> None:
    """The agent closed the conversation: drop their entry at once."""
    now = time.time() if now is None else now
    entries = _fresh(_read(conversation_id), now)
    if entries.pop(str(user_id), None) is not None:
        _write(conversation_id, entries)


def presence_others(*, conversation_id: int, user_id: int, now: float | None = None) -> list[Viewer]:
    """The agents other than `user_id` who have the conversation open, typing ones first, by name."""
    now = time.time() if now is None else now
    return _others(_fresh(_read(conversation_id), now), user_id, now)


def _others(entries: dict[str, dict], user_id: int, now: float) -> list[Viewer]:
    viewers = [
        Viewer(user_id=int(uid), name=str(entry.get("name") or ""),
               typing=bool(entry.get("typing")) and now - entry["seen"] < TYPING_FRESH)
        for uid, entry in entries.items() if uid.isdigit() and int(uid) != user_id
    ]
    return sorted(viewers, key=lambda v: (not v.typing, v.name.lower(), v.user_id))
