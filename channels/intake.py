"""Webhook intake: what a platform's `POST /webhooks/<platform>/<channel account id>/` does, and the WSGI entry
that serves it ahead of Django's request handling.

`receive` does the least that keeps a delivery safe, so it answers fast: it finds the enabled account (kept for
a few seconds per process), checks the body's size and its signature in constant time against the raw bytes,
and stores body and headers as a `WebhookDelivery`, whose drain runs later in the `ingest` queue. A wrong or
missing signature is refused and nothing is stored; an account without a webhook secret refuses webhooks.

`WebhookIntakeApp` wraps the project's WSGI application (socialcrm/wsgi.py) and hands these POSTs to `receive`
directly. A platform's POST carries no session, cookie, language or CSRF token and no browser reads the answer,
so Django's request object, URL resolution and middleware had nothing to do for it, yet they were a fifth of
the server's time per delivery (bench/webhooks.py). The wrapper keeps what matters of Django's handling: the
request_started and request_finished signals (database connections are checked and recycled as for any
request), a logged 500 with a JSON body for an unexpected error, and the size limit. Everything else, the
platforms' GET handshakes included, goes to Django, where `channels.views.webhook` serves the same routes
through `receive`, so the Django test client and `runserver` take the same path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core import signals

from .adapters.base import BaseAdapter, SignatureError, WebhookRequest
from .models import ChannelAccount
from .services import adapter_for, delivery_store

logger = logging.getLogger(__name__)

# The routes of channels/urls.py as mounted by socialcrm/urls.py: `<slug:platform>/<int:account_id>/` under
# /webhooks/ (a test holds the two together).
ROUTE = re.compile(r"/webhooks/(?P<platform>[-a-zA-Z0-9_]+)/(?P<account_id>[0-9]+)/")
# Headers a delivery keeps for replay and audit; cookies and credentials are never stored.
DROPPED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
# The two request headers WSGI passes without the HTTP_ prefix.
_UNPREFIXED_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes  # JSON


def error(status: int, code: str, detail: str) -> Answer:
    return Answer(status, json.dumps({"code": code, "detail": detail}).encode())


def headers_from_environ(environ: Mapping[str, Any]) -> dict[str, str]:
    """The request's headers, names lower-cased (HTTP_X_HUB_SIGNATURE -> x-hub-signature)."""
    return {
        (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_") or key in _UNPREFIXED_HEADERS
    }


# Enabled accounts this process has read recently, with their adapters: (expires, account, adapter).
_recent: dict[tuple[str, int], tuple[float, ChannelAccount, BaseAdapter]] = {}


def account_and_adapter(platform: str, account_id: int) -> tuple[ChannelAccount, BaseAdapter] | None:
    """The enabled account and its adapter, reused for WEBHOOK_ACCOUNT_CACHE_SECONDS (only found ones are kept)."""
    key = (platform, account_id)
    found = _recent.get(key)
    if found is not None and found[0] > time.monotonic():
        return found[1], found[2]
    account = (
        ChannelAccount.objects.filter(pk=account_id, platform=platform, enabled=True)
        .only("id", "platform", "external_id", "config", "credentials", "webhook_secret").first()
    )
    if account is None:
        _recent.pop(key, None)
        return None
    adapter = adapter_for(account)
    if settings.WEBHOOK_ACCOUNT_CACHE_SECONDS > 0:
        _recent[key] = (time.monotonic() + settings.WEBHOOK_ACCOUNT_CACHE_SECONDS, account, adapter)
    return account, adapter


def _too_large() -> Answer:
    return error(413, "body_too_large", f"Webhook bodies are limited to {settings.WEBHOOK_MAX_BODY} bytes.")


def unknown_channel(platform: str, account_id: int) -> Answer:
    return error(404, "unknown_channel", f"No enabled {platform} channel account {account_id}.")


def receive(*, platform: str, account_id: int, headers: dict[str, str], query: dict[str, str],
            read_body: Callable[[], bytes]) -> Answer:
    """Check and store one delivered webhook; `headers` as `headers_from_environ` gives them. The body is read
    (`read_body`) only once the account is known and the declared length is within WEBHOOK_MAX_BODY."""
    found = account_and_adapter(platform, account_id)
    if found is None:
        return unknown_channel(platform, account_id)
    account, adapter = found
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.WEBHOOK_MAX_BODY:
        return _too_large()
    body = read_body()
    if len(body) > settings.WEBHOOK_MAX_BODY:
        return _too_large()
    try:
        adapter.verify_webhook(WebhookRequest(method="POST", headers=headers, query=query, body=body))
    except SignatureError as exc:
        logger.warning("webhook for %s account %s refused: %s", platform, account_id, exc)
        return error(401, "bad_signature", str(exc))
    kept = {k: v for k, v in headers.items() if k not in DROPPED_HEADERS}
    delivery_id = delivery_store(account_id=account.pk, body=body, headers=kept)
    return Answer(200, b'{"received": %d}' % delivery_id)


_STATUS_LINES = {200: "200 OK", 401: "401 Unauthorized", 404: "404 Not Found", 413: "413 Payload Too Large",
                 500: "500 Internal Server Error"}


class WebhookIntakeApp:
    """WSGI: webhook POSTs straight to `receive`; every other request to `django_app`."""

    def __init__(self, django_app: Callable[..., Iterable[bytes]]) -> None:
        self.django_app = django_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        route = ROUTE.fullmatch(environ.get("PATH_INFO", "")) if environ.get("REQUEST_METHOD") == "POST" else None
        if route is None:
            return self.django_app(environ, start_response)
        signals.request_started.send(sender=self.__class__, environ=environ)
        try:
            answer = self._receive(environ, route)
        finally:
            signals.request_finished.send(sender=self.__class__)
        start_response(_STATUS_LINES.get(answer.status, f"{answer.status} Error"), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(answer.body))),
            ("X-Content-Type-Options", "nosniff"),
        ])
        return [answer.body]

    @staticmethod
    def _receive(environ: dict[str, Any], route: re.Match[str]) -> Answer:
        def read_body() -> bytes:
            # As Django reads it: exactly the declared length; none declared, no body.
            length = environ.get("CONTENT_LENGTH", "")
            return environ["wsgi.input"].read(int(length)) if length.isdigit() else b""

        query_string = environ.get("QUERY_STRING", "")
        try:
            query = dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True)) if query_string else {}
            return receive(platform=route["platform"], account_id=int(route["account_id"]),
                           headers=headers_from_environ(environ), query=query, read_body=read_body)
        except Exception:
            logger.exception("webhook intake failed: %s", environ.get("PATH_INFO"))
            return error(500, "server_error", "The delivery could not be stored; send it again.")
