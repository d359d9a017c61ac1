"""Helpers for tests that run transactions at the same moment on separate connections (one per thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, connections, transaction

WAIT = 20.0  # seconds; only reached when something is wrong


class Worker(threading.Thread):
    """Runs `target` on its own database connection; `result`, `error` and `pid` (its backend) once known."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None
        self.pid: int | None = None
        self.started_work = threading.Event()

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.started_work.set()
            self.result = self.target_fn()
        except BaseException as exc:  # noqa: BLE001 - reported by `outcome`
            self.error = exc
        finally:
            self.started_work.set()
            connections.close_all()

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "the worker never finished"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until_waiting_on_a_lock(worker: Worker) -> None:
    """Wait until `worker`'s backend waits on a lock (a row, or an advisory lock) held by another transaction."""
    assert worker.started_work.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if worker.error is not None:
            raise worker.error
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [worker.pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the worker never waited on a lock")


class HeldOpen:
    """`work` run in a transaction on its own connection, the transaction kept open until the `with` block ends.

        with HeldOpen(lambda: ingest(account, events)) as batch:
            ...  # other connections now wait on what the batch wrote or locked
        batch.outcome()  # committed: `work`'s result
    """

    def __init__(self, work: Callable[[], Any]) -> None:
        self._done, self._release = threading.Event(), threading.Event()

        def run() -> Any:
            try:
                with transaction.atomic():
                    result = work()
                    self._done.set()
                    self._release.wait(WAIT)
                return result
            finally:
                self._done.set()

        self.worker = Worker(run)

    def __enter__(self) -> HeldOpen:
        self.worker.start()
        assert self._done.wait(WAIT), "the held transaction never got its work done"
        if self.worker.error is not None:
            raise self.worker.error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release.set()

    def outcome(self) -> Any:
        return self.worker.outcome()
