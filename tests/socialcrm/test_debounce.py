"""One task run per window, however many writes ask for it, on the real Redis (6.2 and 7 alike)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from socialcrm import debounce


class _Task:
    name = "test.task"

    def __init__(self) -> None:
        self.countdowns: list[float] = []

    def apply_async(self, *, countdown: float) -> None:
        self.countdowns.append(countdown)


@pytest.fixture
def key() -> Iterator[str]:
    name = f"socialcrm:test:debounce:{secrets.token_hex(6)}"
    yield name
    debounce.redis_client().delete(name)
    debounce._due.pop(name, None)


def test_the_first_caller_of_a_window_enqueues_and_the_others_do_not(key: str) -> None:
    task = _Task()
    debounce.enqueue_once_per_window(task, key=key, window=2.0)
    debounce.enqueue_once_per_window(task, key=key, window=2.0)
    assert task.countdowns == [2.0]

    debounce._due.pop(key)  # another process: it learns the due time from Redis and does not enqueue
    debounce.enqueue_once_per_window(task, key=key, window=2.0)
    assert task.countdowns == [2.0]
    assert debounce._due[key] > time.time()


def test_a_new_window_enqueues_again(key: str) -> None:
    task = _Task()
    debounce.enqueue_once_per_window(task, key=key, window=0.2)
    time.sleep(0.25)
    debounce.enqueue_once_per_window(task, key=key, window=0.2)
    assert task.countdowns == [0.2, 0.2]
