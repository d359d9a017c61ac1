"""Fixtures of the outbound webhook tests: a real HTTP receiver on 127.0.0.1 and a recorder of enqueued tasks."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hooks import services


@dataclasses.dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Receiver:
    """A webhook receiver: answers with the queued status codes in order (then 200) and records requests."""

    url: str
    statuses: list[int] = dataclasses.field(default_factory=list)
    requests: list[Received] = dataclasses.field(default_factory=list)


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = True  # the receiver is on loopback
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.requests.append(Received(headers={k.lower(): v for k, v in self.headers.items()}, body=body))
            code = state.statuses.pop(0) if state.statuses else 200
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """Delivery ids queued for `hooks.deliver` (nothing reaches the broker)."""
    ids: list[int] = []
    monkeypatch.setattr(services, "_enqueue_delivery", lambda delivery_id, countdown=None: ids.append(delivery_id))
    return ids
