"""Pause Python's cyclic garbage collector around batch work that allocates many short-lived objects.

A batch of ingest builds tens of thousands of dicts, tuples and dataclass instances, nearly all freed by
reference counting when the batch ends. The cyclic collector does not know that: every 700 allocations it
walks the young objects, and every few batches it walks every object the process holds (a Django worker holds
well over 100,000), which cost a sixth of a batch's time when measured. Pausing it for the batch leaves one
collection of what is still alive when it resumes; memory held by reference cycles made during the batch is
freed at that collection, so it is bounded by one batch.

The pause is counted across threads: the collector resumes when the last paused section ends, and only if
it was enabled when the first began.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
