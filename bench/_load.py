"""Closed-loop HTTP/1.1 load from separate processes, shared by the benchmarks of the production server.

    from bench._load import Target, run_load
    result = run_load(host="127.0.0.1", port=8000, target=Target("GET", "/ping/"), connections=16, processes=2,
                      warmup=1.0, duration=4.0, watch={"server": lambda: [server_pid]})
    print(result.rate, result.percentile(0.99), result.non_2xx, result.cpu_per_request_ms("server"))

Each generator is a Python process of its own (this file run as a script, without Django), so it never shares a
GIL with the server. It runs one asyncio client over its share of the connections, held open with keep-alive;
every connection sends a request, waits for the whole response and sends the next one, so the concurrency is
the number of connections. All generators measure the same window of wall-clock time: a warm-up, then the
measured window. Requests still in flight when the window closes are awaited (so the caller can account for
every answer) but not measured. A response needs a Content-Length or must close the connection (chunked
responses are counted as errors); a server that closes a connection (`Connection: close`, keep-alive timeout)
gets a new one.

The parent also measures, inside the window, the CPU time of the generators, of the whole machine and of any
groups of processes the caller names (the server, its database backends), so a benchmark can show what a
request costs where, and that the generators were far from busy, i.e. not the limit.

Bodies are templates: every `"__N__"` (quotes included) becomes the request's sequence number, unique across
the processes of a run and across runs when each run starts at the previous run's `last_n + 1`, so every
request can be a distinct delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import psutil

SEQUENCE = '"__N__"'
# How long requests still in flight when the window closes may take before they count as unanswered.
GRACE_SECONDS = 30.0
# Time the generator processes get to start (interpreter, connections) before the warm-up begins.
STARTUP_SECONDS = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What every request of a run asks for: method, path, extra headers and body templates (used in turn).

    `paths`, if given, are used in turn instead of `path` (a mix of queries); `rotating_headers` adds one header
    per request, in turn (e.g. an `Authorization` per API token, to stay under a per-token rate limit).
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    bodies: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    rotating_headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(slots=True)
class LoadResult:
    """One run: answers and latencies in the measured window, and every answer of the run for accounting."""

    duration: float
    connections: int
    processes: int
    window: Counter[int]  # status -> answers completed inside the measured window
    latencies: list[float]  # seconds, sorted, of the window's answers
    answered: Counter[int]  # status -> answers of the whole run (warm-up and tail included)
    failures: Counter[str]  # requests without an HTTP answer, by reason (whole run)
    last_n: int  # highest sequence number sent
    cpu: dict[str, float]  # CPU seconds spent inside the window: the generators, the machine, and watched groups
    machine_busy: float  # share of all cores busy during the window (0..1)
    probe: object = None  # what the caller's `probe` returned when the window opened

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.window.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.window.items() if not 200 <= status < 300)

    @property
    def rate(self) -> float:
        """2xx answers per second in the measured window."""
        return self.ok / self.duration

    def percentile(self, q: float) -> float:
        """Latency in seconds below which a share q of the window's answers came (nearest rank)."""
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, max(0, round(q * len(self.latencies)) - 1))]

    @property
    def generator_busy(self) -> float:
        """Share of its core each generator process used in the window (1.0: the generator is the limit)."""
        return self.cpu["generator"] / (self.processes * self.duration)

    def cpu_per_request_ms(self, group: str) -> float:
        """CPU milliseconds a watched group spent per answer in the window."""
        answers = sum(self.window.values())
        return 1000 * self.cpu.get(group, float("nan")) / answers if answers else float("nan")


def _cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:  # gone meanwhile
            continue
        total += times.user + times.system
    return total


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal, sum(times)


def run_load(*, host: str, port: int, target: Target, connections: int, processes: int, warmup: float,
             duration: float, first_n: int = 0,
             watch: Mapping[str, Callable[[], Iterable[int]]] | None = None,
             probe: Callable[[], object] | None = None) -> LoadResult:
    """Drive `target` with `connections` keep-alive connections spread over `processes` generator processes.

    `watch` names groups of processes whose CPU time inside the measured window is reported in `cpu` (each
    callable is asked for its pids when the window opens, after the warm-up, so lazily opened database
    connections are there). The generators' own CPU time is always reported as `cpu["generator"]`. `probe`, if
    given, is called when the window opens too; its answer is kept in `probe` (how the server spread the
    connections over its workers, say).
    """
    if connections < processes:
        raise ValueError(f"{connections} connections cannot be spread over {processes} processes")
    start_at = time.time() + STARTUP_SECONDS
    window_at, end_at = start_at + warmup, start_at + warmup + duration
    workers = []
    for index in range(processes):
        spec = {"host": host, "port": port, "method": target.method, "paths": list(target.paths or [target.path]),
                "headers": list(target.headers), "rotating_headers": list(target.rotating_headers),
                "bodies": list(target.bodies),
                "connections": connections // processes + (index < connections % processes),
                "first_n": first_n + index, "stride": processes, "start_at": start_at, "window_at": window_at,
                "end_at": end_at}
        worker = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        workers.append(worker)
        assert worker.stdin is not None
        worker.stdin.write(json.dumps(spec))
        worker.stdin.close()
    try:
        time.sleep(max(0.0, window_at - time.time()))
        groups = {name: list(pids()) for name, pids in (watch or {}).items()}
        groups["generator"] = [w.pid for w in workers]
        before = {name: _cpu_seconds(pids) for name, pids in groups.items()}
        machine_before = _machine_cpu()
        probed = probe() if probe is not None else None
        time.sleep(max(0.0, end_at - time.time()))
        after = {name: _cpu_seconds(pids) for name, pids in groups.items()}
        machine_after = _machine_cpu()
        reports = []
        for worker in workers:
            assert worker.stdout is not None
            out = worker.stdout.read()
            if worker.wait() != 0 or not out:
                raise RuntimeError(f"load generator process {worker.pid} failed (exit code {worker.returncode})")
            reports.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    cpu = {name: after[name] - before[name] for name in groups}
    cpu["machine"] = busy
    return LoadResult(
        duration=duration, connections=connections, processes=processes,
        window=sum((Counter({int(k): v for k, v in r["window"].items()}) for r in reports), Counter()),
        latencies=sorted(x for r in reports for x in r["latencies"]),
        answered=sum((Counter({int(k): v for k, v in r["answered"].items()}) for r in reports), Counter()),
        failures=sum((Counter(r["failures"]) for r in reports), Counter()),
        last_n=max(r["last_n"] for r in reports), cpu=cpu, machine_busy=busy / total if total else float("nan"),
        probe=probed,
    )


# ----------------------------------------------------------------------------------------------- generator side


class _Connection(asyncio.Protocol):
    """One client connection: writes a request, parses the response into (status, server closes)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.head_end = -1
        self.status = 0
        self.length: int | None = None
        self.closing = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bool]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buffer.clear()
        self.head_end, self.length, self.closing = -1, None, False
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.head_end < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            try:
                self.status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                waiter.set_exception(ConnectionError("bad status line"))
                return
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self.length = int(value)
                elif name == "connection":
                    self.closing = value.strip().lower() == "close"
                elif name == "transfer-encoding":
                    waiter.set_exception(ConnectionError("chunked response"))
                    return
            self.head_end = end + 4
        if self.length is not None and len(self.buffer) >= self.head_end + self.length:
            del self.buffer[: self.head_end + self.length]
            waiter.set_result((self.status, self.closing))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.head_end >= 0 and self.length is None:  # body delimited by the connection's end
            waiter.set_result((self.status, True))
        else:
            waiter.set_exception(ConnectionError("connection closed before the whole response"))


class _Generator:
    """The client side of one generator process (see `run_load`)."""

    def __init__(self, spec: dict) -> None:
        self.host, self.port = spec["host"], spec["port"]
        headers = "".join(f"{name}: {value}\r\n" for name, value in spec["headers"])
        self.heads = [f"{spec['method']} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{headers}"
                      for path in spec["paths"]]
        self.rotating = [f"{name}: {value}\r\n" for name, value in spec["rotating_headers"]] or [""]
        self.bodies = [body.split(SEQUENCE) for body in spec["bodies"]]
        self.connections = spec["connections"]
        self.next_n, self.stride = spec["first_n"], spec["stride"]
        self.last_n = -1
        # Wall-clock times from the parent, turned into this process's perf_counter.
        offset = time.time() - time.perf_counter()
        self.start = spec["start_at"] - offset
        self.window = spec["window_at"] - offset
        self.end = spec["end_at"] - offset
        self.in_window: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.answered: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self.in_flight = 0

    def render(self) -> bytes:
        n = self.next_n
        self.next_n += self.stride
        self.last_n = n
        turn = n // self.stride
        head = self.heads[turn % len(self.heads)] + self.rotating[turn % len(self.rotating)]
        if not self.bodies:
            return (head + "\r\n").encode()
        body = str(n).join(self.bodies[turn % len(self.bodies)]).encode()
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def connection(self) -> None:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            while time.perf_counter() < self.end:
                if conn is None or conn.lost:
                    try:
                        _, conn = await loop.create_connection(_Connection, self.host, self.port)
                    except OSError:
                        self.failures["connect"] += 1
                        await asyncio.sleep(0.05)
                        continue
                data = self.render()
                self.in_flight += 1
                sent = time.perf_counter()
                try:
                    status, closing = await conn.request(data)
                except ConnectionError as exc:
                    self.in_flight -= 1
                    self.failures[str(exc)] += 1
                    conn = None
                    continue
                done = time.perf_counter()
                self.in_flight -= 1
                self.answered[status] += 1
                if self.window <= done <= self.end:
                    self.in_window[status] += 1
                    self.latencies.append(done - sent)
                if closing:
                    assert conn.transport is not None
                    conn.transport.close()
                    conn = None
        finally:
            if conn is not None and conn.transport is not None:
                conn.transport.close()

    async def run(self) -> dict:
        await asyncio.sleep(max(0.0, self.start - time.perf_counter()))
        tasks = [asyncio.create_task(self.connection()) for _ in range(self.connections)]
        timeout = self.end - time.perf_counter() + GRACE_SECONDS
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.in_flight:
            self.failures["unanswered"] += self.in_flight
        return {"window": self.in_window, "latencies": self.latencies, "answered": self.answered,
                "failures": self.failures, "last_n": self.last_n}


def _main() -> None:
    """Generator process: the run's spec as JSON on stdin, its report as JSON on stdout."""
    spec = json.loads(sys.stdin.read())
    try:
        report = asyncio.run(_Generator(spec).run())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        sys.exit(130)
    sys.stdout.write(json.dumps(report))


if __name__ == "__main__":
    _main()
