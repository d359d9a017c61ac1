"""Webhook intake: `POST /webhooks/<platform>/<channel account id>/`, and GET for the platforms' handshakes.

The view does the least that keeps a delivery safe, so it answers fast: it checks the signature in
constant time against the raw body, stores the body and headers as a `WebhookDelivery`, and asks for a
drain of pending deliveries after commit. Parsing and ingest happen in the `ingest` queue. A wrong or
missing signature is refused and nothing is stored; an account without a webhook secret refuses webhooks.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .adapters.base import BaseAdapter, SignatureError, WebhookRequest
from .models import ChannelAccount
from .services import adapter_for, delivery_store

logger = logging.getLogger(__name__)

# Headers a delivery keeps for replay and audit; cookies and credentials are never stored.
_DROPPED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
# The two request headers WSGI passes without the HTTP_ prefix.
_UNPREFIXED_HEADERS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


# Enabled accounts this process has read recently, with their adapters: (expires, account, adapter).
_recent: dict[tuple[str, int], tuple[float, ChannelAccount, BaseAdapter]] = {}


def _account_and_adapter(platform: str, account_id: int) -> tuple[ChannelAccount, BaseAdapter] | None:
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


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _webhook_request(request: HttpRequest, body: bytes) -> WebhookRequest:
    # request.headers, lower-cased, read straight off the WSGI environ (HTTP_X_HUB_SIGNATURE -> x-hub-signature).
    headers = {
        (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").lower(): value
        for key, value in request.META.items()
        if key.startswith("HTTP_") or key in _UNPREFIXED_HEADERS
    }
    return WebhookRequest(method=request.method or "", headers=headers, query=request.GET.dict(), body=body)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def webhook(request: HttpRequest, platform: str, account_id: int) -> HttpResponse:
    found = _account_and_adapter(platform, account_id)
    if found is None:
        return _error(404, "unknown_channel", f"No enabled {platform} channel account {account_id}.")
    account, adapter = found

    if request.method == "GET":
        try:
            answer = adapter.handshake(_webhook_request(request, b""))
        except SignatureError as exc:
            return _error(403, "handshake_refused", str(exc))
        if answer is None:
            return _error(400, "not_a_handshake", "A GET here must be the platform's verification request.")
        return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)

    length = request.META.get("CONTENT_LENGTH", "")
    if length.isdigit() and int(length) > settings.WEBHOOK_MAX_BODY:
        return _error(413, "body_too_large", f"Webhook bodies are limited to {settings.WEBHOOK_MAX_BODY} bytes.")
    body = request.body
    if len(body) > settings.WEBHOOK_MAX_BODY:
        return _error(413, "body_too_large", f"Webhook bodies are limited to {settings.WEBHOOK_MAX_BODY} bytes.")
    wrapped = _webhook_request(request, body)
    try:
        adapter.verify_webhook(wrapped)
    except SignatureError as exc:
        logger.warning("webhook for %s account %s refused: %s", platform, account_id, exc)
        return _error(401, "bad_signature", str(exc))
    headers = {k: v for k, v in wrapped.headers.items() if k not in _DROPPED_HEADERS}
    delivery_id = delivery_store(account_id=account.pk, body=body, headers=headers)
    return HttpResponse(b'{"received": %d}' % delivery_id, content_type="application/json")
