"""A tiny in-process event bus: lower apps announce domain events without importing the apps that react.

`emit(event_type, payload)` publishes the event to every subscriber once the current transaction commits
(at once outside a transaction); a rolled-back transaction publishes nothing. Subscribers register with
`subscribe(fn)` from their `AppConfig.ready()`. Payloads are JSON-ready dicts of ids and small values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

Subscriber = Callable[[str, dict[str, Any]], None]

_subscribers: list[Subscriber] = []


def subscribe(fn: Subscriber) -> None:
    """Register `fn(event_type, payload)` to be called for every published event (idempotent)."""
    if fn not in _subscribers:
        _subscribers.append(fn)


def unsubscribe(fn: Subscriber) -> None:
    """Remove a subscriber registered with `subscribe` (tests)."""
    if fn in _subscribers:
        _subscribers.remove(fn)


def publish(event_type: str, payload: Mapping[str, Any]) -> None:
    """Call every subscriber now. A failing subscriber is logged and never fails the caller or the others."""
    for fn in list(_subscribers):
        try:
            fn(event_type, dict(payload))
        except Exception:  # an outbound side effect must not break the domain write that already committed
            logger.exception("event subscriber %r failed on %s", fn, event_type)


def emit(event_type: str, payload: Mapping[str, Any]) -> None:
    """Publish the event after the current transaction commits (never, if it rolls back)."""
    data = dict(payload)
    transaction.on_commit(lambda: publish(event_type, data))
