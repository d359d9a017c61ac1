"""Group co-presence: customers whose identities both wrote in one group thread, as contrary dedupe evidence.

The same person rarely talks to itself in a group conversation, so two customers whose identities both authored
inbound interactions in one thread count against being one person (`contacts.dedupe`'s `group` comparison:
about -8 bits, and never an auto-link). Contacts knows nothing of conversations: an app above it registers a
`CopresenceFn` here from its `AppConfig.ready()` (`register_copresence`). With nothing registered there is no
co-presence evidence (and no statement is spent looking for it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

# Given customer ids, the pairs {a, b} (a among them, b any other customer) whose identities both authored
# inbound interactions in one conversation.
CopresenceFn = Callable[[Collection[int]], set[frozenset[int]]]
_hooks: list[CopresenceFn] = []


def register_copresence(fn: CopresenceFn) -> None:
    """Called by an app above contacts from its `AppConfig.ready()`; registering the same function again is a no-op."""
    if fn not in _hooks:
        _hooks.append(fn)


def registered() -> tuple[CopresenceFn, ...]:
    """The registered co-presence functions, in registration order."""
    return tuple(_hooks)


def copresent_pairs(customer_ids: Collection[int]) -> set[frozenset[int]]:
    """The co-present pairs involving these customers, from every registered function (one call each)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    pairs: set[frozenset[int]] = set()
    for fn in _hooks:
        pairs |= {pair for pair in fn(ids) if len(pair) == 2}
    return pairs


def partners(pairs: Iterable[frozenset[int]], customer_id: int) -> set[int]:
    """The customers paired with `customer_id` in `pairs`."""
    return {other for pair in pairs if customer_id in pair for other in pair if other != customer_id}


def pairs_after_merge(pairs: set[frozenset[int]], *, source: int, target: int) -> set[frozenset[int]]:
    """The pairs once `source` was merged into `target`: the survivor inherits the source's co-presence."""
    moved = {frozenset({target if c == source else c for c in pair}) for pair in pairs}
    return {pair for pair in moved if len(pair) == 2}
