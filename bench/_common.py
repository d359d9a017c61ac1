"""Helpers shared by the benchmarks: the production server (gunicorn) on 127.0.0.1 and its Redis database, the
run table of `bench/_load.py` results, and set-based bulk loading of a bench database.

Import after `django.setup()`.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import psutil
import redis
from django.conf import settings
from django.db import connection

from bench._load import LoadResult
from channels.services import DRAIN_KEY

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Kombu's Redis transport keeps a queue's messages of priority n > 0 under `<queue><PRIORITY_SEP><n>`.
PRIORITY_SEP = "\x06\x16"
# The API's per-token rate-limit counters in the cache (socialcrm/api/throttling.py; Django's key prefix ":1:").
THROTTLE_PREFIX = ":1:throttle:"


def with_path(url: str, path: str) -> str:
    return urlsplit(url)._replace(path=path).geturl()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving socialcrm on 127.0.0.1, started and stopped by the bench."""

    def __init__(self, *, database_url: str, redis_url: str, workers: int, threads: int, worker_class: str,
                 log: IO[str]) -> None:
        self.port = free_port()
        self.env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                    "CELERY_BROKER_URL": redis_url, "CACHE_URL": redis_url, "DJANGO_DEBUG": "0",
                    "DJANGO_CONN_MAX_AGE": "600"}
        # gthread: a worker process per core escapes the GIL; threads overlap the waits on PostgreSQL; keep-alive
        # as callers (and a proxy in front) reuse connections. --reuse-port gives each worker its own listening
        # socket, so the kernel spreads the keep-alive connections; with one shared socket, whichever worker
        # happens to be in accept() can take all of them and leave the other idle.
        self.args = [sys.executable, "-m", "gunicorn", "socialcrm.wsgi:application", "--chdir", str(ROOT),
                     "--bind", f"{HOST}:{self.port}", "--workers", str(workers), "--worker-class", worker_class,
                     "--threads", str(threads), "--keep-alive", "5", "--reuse-port", "--graceful-timeout", "5",
                     "--log-level", "warning"]
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if said := self.output().strip():
            print(f"gunicorn's log (last lines):\n{said}", file=sys.stderr)

    def start(self, timeout: float = 30.0) -> None:
        options = " ".join(self.args[self.args.index("--workers"):])
        print(f"starting gunicorn on {HOST}:{self.port}: {options} ...", file=sys.stderr)
        self.process = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with code {self.process.returncode}:\n{self.output()}")
            try:
                client = http.client.HTTPConnection(HOST, self.port, timeout=2)
                client.request("GET", "/ping/")
                if client.getresponse().status == 200:
                    client.close()
                    return
                client.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer /ping/ within {timeout:.0f} s:\n{self.output()}")

    def pids(self) -> list[int]:
        """The master and its workers."""
        if self.process is None:
            return []
        try:
            master = psutil.Process(self.process.pid)
            return [master.pid, *(child.pid for child in master.children(recursive=True))]
        except psutil.Error:
            return []

    def connections_per_worker(self) -> list[int]:
        """Established client connections each worker holds, busiest first."""
        counts = []
        for pid in self.pids()[1:]:
            try:
                held = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.Error:
                continue
            counts.append(sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == self.port))
        return sorted(counts, reverse=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def database_backends(name: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to the bench database, except the bench's own."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        return [pid for (pid,) in cursor.fetchall()]


def wait_for_disconnect(name: str, timeout: float = 15.0) -> None:
    """Wait until the stopped server's database connections are gone, so the database can be dropped."""
    deadline = time.monotonic() + timeout
    while database_backends(name) and time.monotonic() < deadline:
        time.sleep(0.1)


def ours(key: bytes) -> bool:
    """Whether a Redis key is one the server's Celery broker or cache creates: a queue, a binding, the debounce,
    an API token's rate-limit counter."""
    name = key.decode("latin-1")
    queues = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    return (name == DRAIN_KEY or name.startswith(("_kombu.", THROTTLE_PREFIX))
            or name.split(PRIORITY_SEP)[0] in queues)


def redis_check_free(client: redis.Redis, db: int) -> None:
    foreign = [key for key in client.scan_iter(count=1000) if not ours(key)]
    if foreign:
        raise SystemExit(f"Redis database {db} holds keys that are not this bench's (e.g. {foreign[0]!r}); "
                         f"pick an unused one with --redis-db")


def redis_purge(client: redis.Redis) -> dict[str, int]:
    """Delete the tasks the server enqueued, the broker's bindings, the debounce key and the rate-limit counters;
    tasks per queue."""
    left: Counter[str] = Counter()
    for key in list(client.scan_iter(count=1000)):
        if not ours(key):
            continue
        if client.type(key) == b"list":
            left[key.decode("latin-1").split(PRIORITY_SEP)[0]] += client.llen(key)
        client.delete(key)
    return dict(left)


def ms(seconds: float) -> float:
    return seconds * 1000


def print_run(label: str, result: LoadResult) -> None:
    errors = ", ".join(f"{status}: {n}" for status, n in sorted(result.window.items()) if not 200 <= status < 300)
    failures = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.failures.items()))
    print(f"{label:<22}{result.rate:>10,.0f}{ms(result.percentile(0.50)):>9.1f}{ms(result.percentile(0.99)):>9.1f}"
          f"{result.non_2xx:>8}{result.cpu_per_request_ms('server'):>9.2f}{result.cpu_per_request_ms('database'):>9.2f}"
          f"{result.cpu_per_request_ms('generator'):>9.2f}{100 * result.machine_busy:>7.0f}%"
          f"{'/'.join(map(str, result.probe)) if isinstance(result.probe, list) else '':>13}"
          + (f"   non-2xx {errors}" if errors else "") + (f"   failed {failures}" if failures else ""))


HEADER = (f"{'run':<22}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>8}{'server':>9}{'db':>9}{'gen':>9}"
          f"{'busy':>8}{'per worker':>14}")
HEADER_NOTE = f"{'':<58}{'CPU ms per request':^27}{'CPUs':>8}{'connections':>14}"


def merged(results: list[LoadResult]) -> LoadResult:
    """The runs of one endpoint as one (rates over the summed windows, percentiles over all answers)."""
    return LoadResult(
        duration=sum(r.duration for r in results), connections=results[0].connections,
        processes=results[0].processes, window=sum((r.window for r in results), Counter()),
        latencies=sorted(x for r in results for x in r.latencies),
        answered=sum((r.answered for r in results), Counter()), failures=sum((r.failures for r in results), Counter()),
        last_n=max(r.last_n for r in results),
        cpu={k: sum(r.cpu.get(k, 0.0) for r in results) for k in results[0].cpu},
        machine_busy=sum(r.machine_busy * r.duration for r in results) / sum(r.duration for r in results),
    )


# ---------------------------------------------------------------------------------------------- bulk loading


def timed_sql(cursor: Any, statement: str, params: dict[str, Any] | None = None) -> float:
    start = time.perf_counter()
    cursor.execute(statement, params or {})
    return time.perf_counter() - start


def drop_secondary_indexes(cursor: Any, tables: tuple[str, ...]) -> list[str]:
    """Drop every index and unique constraint of `tables` but the primary keys; returns the statements that
    rebuild them exactly (definitions read from the catalog)."""
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype = 'u'
        """,
        [list(tables)],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [list(tables)],
    )
    indexes = cursor.fetchall()
    restore = [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints]
    restore += [definition for _, definition in indexes]
    for table, name, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    return restore



def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]



def schema_stamp() -> str:
    """The schema a bench database is migrated to: every app's leaf migration, for the stamp of a kept database."""
    from django.db.migrations.loader import MigrationLoader

    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    return " ".join(sorted(f"{app}.{name}" for app, name in graph.leaf_nodes()))


def server_time(run: Any) -> tuple[Any, float, float, float, int]:
    """Call `run()` in-process and time it: (its result, wall-clock seconds, seconds spent in SQL round trips on
    the default connection, this process's CPU seconds, statements executed). On a busy machine the CPU time shows
    the work done apart from the waiting for a core."""
    spent: list[float] = []

    def timed(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            spent.append(time.perf_counter() - start)

    with connection.execute_wrapper(timed):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return result, wall, sum(spent), cpu, len(spent)
