"""Fixtures of the end-to-end tests: a real Celery worker, its own Redis database, and the fake platform server.

The worker is `celery -A socialcrm worker` in a subprocess, with the environment of the tests except for:

- `DATABASE_URL`: the test database pytest-django created (its real name is read from the connection once the
  test database exists), so the worker sees what a `transaction=True` test commits;
- `REDIS_URL`, `CELERY_BROKER_URL`, `CACHE_URL`: a Redis database of its own. Other test runs on this machine
  publish into the usual databases (0 and 1), so the worker would take their tasks, and purging the queues would
  drop them. At session start a free database from 15 down to 2 is claimed (see `BrokerDatabase`); the test
  process's Celery app publishes there while an end-to-end test runs (`app.conf.broker_url` set and the app's
  connection and producer pools dropped, undone afterwards);
- `CHANNEL_SYNC_LEASE=8`: the lease a killed worker leaves on an account outlasts the restart of the worker (one to
  three seconds) and expires within the test.

It runs the threads pool: one process, so a SIGKILL takes the whole worker down at once, as a crash or the OOM
killer would, and it gets SIGKILL from the kernel if the test process dies first (no worker outlives a killed run).

One worker serves the whole session (it takes one to three seconds to start). After each test it must be idle,
which Redis shows: no message waiting in a queue and none delivered but unacknowledged (`task_acks_late`: a message
is acknowledged when its task ends; a retry waiting for its countdown is held unacknowledged). A test that killed the
worker, or one that left it busy, gets it stopped and the broker database emptied, and the next test starts a fresh
one. On a failure the test's part of the worker log and the fake platform's request log are added to the report.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from channels.models import ChannelAccount
from channels.tasks import sync_account, sync_due_accounts
from contacts.models import Customer, SocialIdentity
from conversations.models import Conversation, Interaction

from .fakeplatform import FakePlatform

T = TypeVar("T")
ROOT = pathlib.Path(__file__).resolve().parents[2]
QUEUES = "sync,ingest,outbound,default"
SYNC_LEASE_SECONDS = 8
CLAIM_KEY = "socialcrm:e2e:claimed-by"
CLAIM_SECONDS = 24 * 3600  # refreshed by every test; a backstop for claims of other machines
WORKER_LOG = pytest.StashKey[tuple["CeleryWorker", int]]()
FAKE_PLATFORM = pytest.StashKey[FakePlatform]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test with a real Celery worker and the fake platform server")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, add the worker's log of this test and the fake platform's requests to the report."""
    report = yield
    if report.failed:
        found = item.stash.get(WORKER_LOG, None)
        if found is not None:
            worker, offset = found
            report.sections.append(("celery worker log", worker.log_text(offset)[-30_000:]))
        fake = item.stash.get(FAKE_PLATFORM, None)
        if fake is not None:
            lines = [f"{r.method} {r.path} {urllib.parse.urlencode(r.query, doseq=True)}" for r in fake.seen()]
            report.sections.append(("fake platform requests", "\n".join(lines) or "(none)"))
    return report


# -- the broker's Redis database ------------------------------------------------------------------------------------


class BrokerDatabase:
    """A Redis database claimed for this session's worker: its URL, and what its queues hold.

    The claim is a key holding `host:pid:token`. A database is taken when it holds no key and no other client is
    connected to it, or when its claim names a process of this machine that is gone (a run that was killed before
    its teardown): what that run left there is dropped.
    """

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("redis", "rediss"):
            raise pytest.UsageError(f"the end-to-end tests need a Redis broker, not {parts.scheme}://")
        self.claim = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}".encode()
        for number in range(15, 1, -1):  # 0 and 1 are where ./dev run and ./dev test keep their data
            url = urllib.parse.urlunsplit(parts._replace(path=f"/{number}"))
            client = redis.Redis.from_url(url)
            try:
                taken = self._take(client, number)
            except redis.ResponseError:  # the server has fewer databases
                taken = False
            if taken:
                self.url, self.client = url, client
                self.clear()
                return
            client.close()
        raise RuntimeError(f"no free Redis database (2-15) on {parts.hostname}:{parts.port} for the e2e broker")

    def _take(self, client: redis.Redis, number: int) -> bool:
        if self._other_clients(client, number):
            return False
        if client.set(CLAIM_KEY, self.claim, nx=True, ex=CLAIM_SECONDS):
            if client.dbsize() == 1:
                return True
            client.delete(CLAIM_KEY)  # not ours: keys without a claim belong to someone else
            return False
        with client.pipeline() as pipe:
            try:
                pipe.watch(CLAIM_KEY)
                if not _claimed_by_a_dead_run(pipe.get(CLAIM_KEY)):
                    return False
                pipe.multi()
                pipe.set(CLAIM_KEY, self.claim, ex=CLAIM_SECONDS)
                pipe.execute()
            except redis.WatchError:  # another run took it first
                return False
        return True

    @staticmethod
    def _other_clients(client: redis.Redis, number: int) -> list[dict[str, Any]]:
        me = client.client_id()
        return [c for c in client.client_list() if int(c.get("db", -1)) == number and int(c["id"]) != me]

    def keep_claim(self) -> None:
        self.client.set(CLAIM_KEY, self.claim, ex=CLAIM_SECONDS)

    def unacked(self) -> set[bytes]:
        """Delivery tags of messages delivered to a worker and not acknowledged yet."""
        return set(self.client.hkeys("unacked"))

    def backlog(self, *, ignore: set[bytes] | frozenset[bytes] = frozenset()) -> int:
        """Messages waiting in a queue, plus those delivered but unacknowledged (except `ignore`)."""
        waiting = sum(self.client.llen(key) for key in self.client.scan_iter() if self.client.type(key) == b"list")
        return waiting + len(self.unacked() - ignore)

    def clear(self) -> None:
        """Drop every queue, binding and unacknowledged message; keep the claim."""
        for key in self.client.scan_iter():
            if key != CLAIM_KEY.encode():
                self.client.delete(key)

    def release(self) -> None:
        self.clear()
        if self.client.get(CLAIM_KEY) == self.claim:
            self.client.delete(CLAIM_KEY)
        self.client.close()


def _claimed_by_a_dead_run(claim: bytes | None) -> bool:
    """Whether a claim names a process of this machine that no longer exists."""
    host, _, rest = (claim or b"").decode(errors="replace").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


# -- the worker -----------------------------------------------------------------------------------------------------


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
PR_SET_PDEATHSIG = 1


def _die_with_the_tests() -> None:
    """In the forked worker (Linux): SIGKILL when the test process dies, so that no worker outlives a killed run."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class CeleryWorker:
    """`celery -A socialcrm worker` as a subprocess: start, kill (SIGKILL), stop, and wait for what it does."""

    def __init__(self, *, env: dict[str, str], log_path: pathlib.Path, broker: BrokerDatabase) -> None:
        self.env = env
        self.log_path = log_path
        self.broker = broker
        self.proc: subprocess.Popen[bytes] | None = None
        self.hostname = ""
        self.starts = 0
        self.killed = False
        self.lost: set[bytes] = set()  # unacknowledged messages of a killed worker: Redis keeps them for an hour
        self._control = Celery("socialcrm-e2e-control", broker=broker.url, set_as_current=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start a worker on every queue and wait until it answers a ping."""
        self.starts += 1
        self.hostname = f"e2e-{os.getpid()}-{self.starts}@{socket.gethostname()}"
        argv = [sys.executable, "-m", "celery", "-A", "socialcrm", "worker", "-Q", QUEUES,
                "--pool", "threads", "--concurrency", "4", "--without-gossip", "--without-mingle",
                "--without-heartbeat", "--loglevel", "INFO", "--hostname", self.hostname]
        offset = self.log_size()
        with self.log_path.open("ab") as log:
            log.write(f"\n===== starting worker {self.hostname}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_the_tests if _LIBC is not None else None,
            )
        deadline = time.monotonic() + timeout
        while not self._control.control.ping(destination=[self.hostname], timeout=0.3):
            if not self.running or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the Celery worker did not start:\n{self.log_text(offset)[-10_000:]}")

    def kill(self) -> None:
        """SIGKILL the worker (its whole process group), as a crash or the OOM killer would."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.killed = True
        self.lost |= self.broker.unacked()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (a warm shutdown: running tasks finish), then SIGKILL after `grace` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group that outlived it
        self.proc = None

    def reset(self) -> None:
        """Stop the worker and empty the broker database: the next test starts from nothing."""
        self.stop()
        self.broker.clear()
        self.killed = False
        self.lost = set()

    def idle(self) -> bool:
        return self.broker.backlog(ignore=self.lost) == 0

    def wait_idle(self, timeout: float = 15.0) -> bool:
        """Whether the broker shows no work left (twice in a row, 0.2 s apart) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            streak = streak + 1 if self.idle() else 0
            if streak >= 2:
                return True
            time.sleep(0.2)
        return False

    def wait_for(self, condition: Callable[[], T], *, what: str, timeout: float = 20.0) -> T:
        """Poll `condition` until it returns something true (returned), failing after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if not self.running:
                raise AssertionError(f"the Celery worker is not running while waiting for {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}; last value: {value!r}")
            time.sleep(0.1)

    def sync(self, account: ChannelAccount, *, via_beat: bool = False, timeout: float = 20.0) -> ChannelAccount:
        """Enqueue a sync of `account` (`sync_account`, or beat's `sync_due_accounts`) and wait until it ended."""
        before = ChannelAccount.objects.values_list("last_synced_at", "last_error_at").get(pk=account.pk)
        if via_beat:
            sync_due_accounts.delay()
        else:
            sync_account.delay(account.pk)

        def ended() -> ChannelAccount | None:
            row = ChannelAccount.objects.get(pk=account.pk)
            return row if (row.last_synced_at, row.last_error_at) != before and not row.lease_token else None

        return self.wait_for(ended, what=f"a sync of channel account {account.pk} to end", timeout=timeout)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")


def _database_url(name: str) -> str:
    """The tests' DATABASE_URL with another database name: same server, user, password and options."""
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name)))


@pytest.fixture(scope="session")
def e2e_broker() -> Iterator[BrokerDatabase]:
    broker = BrokerDatabase(settings.CELERY_BROKER_URL)
    yield broker
    broker.release()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup: None, e2e_broker: BrokerDatabase,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    """The session's worker (started by the first test that needs it), bound to the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
        "REDIS_URL": e2e_broker.url, "CELERY_BROKER_URL": e2e_broker.url, "CACHE_URL": e2e_broker.url,
        "CHANNEL_SYNC_LEASE": str(SYNC_LEASE_SECONDS), "PYTHONUNBUFFERED": "1",
    }
    worker = CeleryWorker(env=env, log_path=tmp_path_factory.mktemp("e2e") / "celery-worker.log", broker=e2e_broker)
    yield worker
    worker.stop()


@contextlib.contextmanager
def publishing_to(url: str) -> Iterator[None]:
    """Make this process's Celery app publish to `url` for the duration of the block."""
    from socialcrm.celery import app

    before = app.conf.broker_url
    app.conf.broker_url = url
    _drop_broker_connections(app)
    try:
        yield
    finally:
        app.conf.broker_url = before
        _drop_broker_connections(app)


def _drop_broker_connections(app: Celery) -> None:
    """Forget the app's connection and producer pools, which stay bound to the broker URL of their first use.

    `app.close()` forgets only the connection pool. This is what Celery itself resets in a forked child
    (`Celery._after_fork`), so that the next publish takes the pools of `app.conf.broker_url` as it is now. The
    pools are kombu's, shared per URL, so they are left open for the next time that URL is used.
    """
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def worker(request: pytest.FixtureRequest, transactional_db: None,
           celery_worker_process: CeleryWorker) -> Iterator[CeleryWorker]:
    """The running worker, for a test whose rows are committed; idle again (or reset) before the database is flushed."""
    if any(model.objects.exists() for model in (ChannelAccount, Customer, SocialIdentity, Conversation, Interaction)):
        # A run killed before its teardown left its rows in the reused test database: flush, as the teardown would.
        call_command("flush", interactive=False, verbosity=0)
    worker = celery_worker_process
    worker.broker.keep_claim()
    request.node.stash[WORKER_LOG] = (worker, worker.log_size())
    if not worker.running:
        worker.reset()
        worker.start()
    with publishing_to(worker.broker.url):
        yield worker
    if worker.killed or not worker.running or not worker.wait_idle():
        worker.reset()


@pytest.fixture
def fake_platform(request: pytest.FixtureRequest) -> Iterator[FakePlatform]:
    fake = FakePlatform().start()
    request.node.stash[FAKE_PLATFORM] = fake
    yield fake
    fake.stop()


# -- what the worker stored -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stored:
    """One stored interaction as a reader sees it: its thread, and whose it is."""

    kind: str
    direction: str
    thread_key: str | None
    reply_to: str
    identity: tuple[str, str, str] | None  # (platform, scope, external id)
    customer_id: int | None
    is_stub: bool


class Crm:
    """Reads of what the worker stored (the test process sees committed rows only)."""

    @staticmethod
    def counts() -> dict[str, int]:
        return {"interactions": Interaction.objects.count(), "conversations": Conversation.objects.count(),
                "identities": SocialIdentity.objects.count(), "customers": Customer.objects.count()}

    @staticmethod
    def interactions(account: ChannelAccount) -> dict[str, Stored]:
        """The account's interactions by external id."""
        rows = Interaction.objects.filter(channel_account=account).values_list(
            "external_id", "kind", "direction", "conversation__thread_key", "reply_to_external_id",
            "identity__platform", "identity__scope", "identity__external_id", "identity__customer_id", "is_stub",
        )
        return {
            external_id: Stored(kind, direction, thread_key, reply_to,
                                (platform, scope, identity) if identity is not None else None, customer, stub)
            for external_id, kind, direction, thread_key, reply_to, platform, scope, identity, customer, stub in rows
        }

    @staticmethod
    def replies_outside_their_parents_conversation(account: ChannelAccount) -> list[str]:
        """External ids of replies whose parent is stored in another conversation of the account."""
        stored = dict(Interaction.objects.filter(channel_account=account).values_list("external_id",
                                                                                        "conversation_id"))
        return [external_id for external_id, parent in Interaction.objects.filter(channel_account=account)
                .exclude(reply_to_external_id="").values_list("external_id", "reply_to_external_id")
                if parent in stored and stored[parent] != stored[external_id]]


@pytest.fixture
def crm() -> Crm:
    return Crm()
