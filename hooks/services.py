"""Outbound webhooks: subscriptions, fan-out of domain events, signed delivery with retries, replay.

Flow: a lower app calls `socialcrm.events.emit(...)` inside its transaction; after commit the bus calls
`on_event`, which writes one `OutboundEvent` per matching active subscription (one INSERT) and, after that
commits, enqueues `hooks.deliver` per row. `delivery_send` claims the row (a short transaction), sends
outside any transaction, then records the attempt. Non-2xx answers, timeouts and refused targets are retried
with exponential backoff and jitter (`next_attempt_at`; the task re-schedules itself and the beat sweeper
`hooks.sweep` re-drives anything a lost task left behind). `MAX_CONSECUTIVE_FAILURES` failed attempts in a
row, across deliveries, disable the subscription.

Signature: `X-Socialcrm-Signature: t=<unix ts>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`, with the same
timestamp in `X-Socialcrm-Timestamp`; receivers recompute it over the raw body and reject old timestamps.

SSRF: a target URL must be http(s), carry no credentials, and resolve only to public addresses (checked on
create, on update and again before every send; redirects are not followed) unless
`settings.HOOKS_ALLOW_PRIVATE_TARGETS` is on (development).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from socialcrm.errors import Conflict, NotFound, ServiceError
from socialcrm.netguard import UrlRefused, guarded_client, public_url_check

from .models import EventType, OutboundEvent, WebhookSubscription

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 10  # failed attempts in a row, across deliveries, before a subscription is disabled
MAX_ATTEMPTS = 8  # attempts of one delivery before it is marked failed (replay starts it over)
BACKOFF_BASE = 10.0  # seconds before the first retry; doubles per attempt
BACKOFF_MAX = 3600.0
CLAIM_LEASE = dt.timedelta(seconds=120)  # a claimed delivery is not picked up again for this long
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
SWEEP_BATCH = 500
MIN_SECRET_LENGTH = 16
USER_AGENT = "socialcrm-webhooks/1"


# --- SSRF guard ----------------------------------------------------------------------------------------------


def url_check(url: str) -> list[str]:
    """Refuse (400 naming `url`) a target that is not plain http(s) or resolves to a non-public address
    (`socialcrm.netguard`; HOOKS_ALLOW_PRIVATE_TARGETS lifts the address check for development).

    Returns the addresses the host resolved to.
    """
    try:
        return public_url_check(url, allow_private=settings.HOOKS_ALLOW_PRIVATE_TARGETS)
    except UrlRefused as exc:
        raise ServiceError(str(exc), code=exc.code, field="url") from None


# --- subscriptions -------------------------------------------------------------------------------------------


def _check_event_types(event_types: Iterable[str]) -> list[str]:
    types = list(dict.fromkeys(event_types))
    unknown = [t for t in types if t not in EventType.values]
    if unknown:
        raise ServiceError(f"Unknown event types: {', '.join(unknown)}.", code="unknown_event_type",
                           field="event_types")
    if not types:
        raise ServiceError("Subscribe to at least one event type.", code="no_event_types", field="event_types")
    return types


def _check_secret(secret: str) -> dict[str, str]:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ServiceError(f"The secret needs {MIN_SECRET_LENGTH} or more characters.", code="secret_too_short",
                           field="secret")
    return {"key": secret}


def subscription_create(*, name: str, url: str, event_types: Iterable[str], secret: str | None = None,
                        active: bool = True, created_by: AbstractBaseUser | None = None) -> WebhookSubscription:
    """A new subscription; without `secret` a random one is generated (read it from the object once)."""
    url_check(url)
    types = _check_event_types(event_types)
    key = _check_secret(secret if secret is not None else secrets.token_urlsafe(32))
    with transaction.atomic():
        return WebhookSubscription.objects.create(name=name, url=url, event_types=types, secret=key, active=active,
                                                  created_by=created_by)


def subscription_update(*, subscription_id: int, changes: Mapping[str, Any]) -> WebhookSubscription:
    """Change name, url, event_types, secret or active; re-activating clears the failure count and reason."""
    changes = dict(changes)
    if "url" in changes:
        url_check(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = _check_event_types(changes["event_types"])
    if "secret" in changes:
        changes["secret"] = _check_secret(changes["secret"])
    with transaction.atomic():
        sub = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id).first()
        if sub is None:
            raise NotFound("No such webhook subscription.", code="not_found")
        if changes.get("active") and not sub.active:
            sub.failure_count = 0
            sub.disabled_reason = ""
        for field, value in changes.items():
            setattr(sub, field, value)
        sub.save()
    return sub


def subscription_delete(*, subscription_id: int) -> None:
    """Delete a subscription and its delivery log."""
    with transaction.atomic():
        WebhookSubscription.objects.filter(pk=subscription_id).delete()


# --- fan-out -------------------------------------------------------------------------------------------------


def on_event(event_type: str, payload: dict[str, Any]) -> list[OutboundEvent]:
    """Bus subscriber (runs after the emitting transaction committed): log the event for every active
    subscription to its type in one INSERT, and enqueue their deliveries after that commits."""
    with transaction.atomic():
        sub_ids = list(WebhookSubscription.objects.filter(active=True, event_types__contains=[event_type])
                       .order_by("pk").values_list("pk", flat=True))
        if not sub_ids:
            return []
        event_id = OutboundEvent._meta.get_field("event_id").default()
        now = timezone.now()
        rows = OutboundEvent.objects.bulk_create([
            OutboundEvent(subscription_id=sid, event_type=event_type, event_id=event_id, payload=payload,
                          next_attempt_at=now)
            for sid in sub_ids
        ])
        ids = [row.pk for row in rows]
        transaction.on_commit(lambda: [_enqueue_delivery(pk) for pk in ids])
    return rows


def _enqueue_delivery(delivery_id: int, countdown: float | None = None) -> None:
    """Queue `hooks.deliver`; if the broker is down the sweeper re-drives the row."""
    from .tasks import deliver  # the task module imports this one

    try:
        deliver.apply_async((delivery_id,), countdown=countdown, retry=False)
    except Exception:
        logger.exception("could not enqueue webhook delivery %s; the sweeper will pick it up", delivery_id)


def deliveries_due(*, now: dt.datetime | None = None, limit: int = SWEEP_BATCH) -> list[int]:
    """Pending deliveries whose time has come, of active subscriptions (the sweeper enqueues them)."""
    now = now or timezone.now()
    return list(OutboundEvent.objects.filter(state=OutboundEvent.State.PENDING, subscription__active=True)
                .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit])


# --- delivery ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one call of `delivery_send` did. `retry_in` is set when another attempt is scheduled."""

    state: str
    status_code: int | None = None
    error: str = ""
    retry_in: float | None = None
    skipped: str = ""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Socialcrm-Signature` header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def body_of(delivery: OutboundEvent) -> bytes:
    """The JSON body sent for a delivery: `{id, type, created_at, data}`."""
    return json.dumps({"id": str(delivery.event_id), "type": delivery.event_type,
                       "created_at": delivery.created_at.isoformat(), "data": delivery.payload},
                      separators=(",", ":"), sort_keys=True, default=str).encode()


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` (1-based): exponential, capped, with +-25 % jitter."""
    delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return delay * random.uniform(0.75, 1.25)  # noqa: S311 - jitter, not cryptography


def _claim(delivery_id: int, now: dt.datetime) -> tuple[OutboundEvent | None, str]:
    with transaction.atomic():
        row = (OutboundEvent.objects.select_for_update(skip_locked=True).select_related("subscription")
               .filter(pk=delivery_id).first())
        if row is None:
            return None, "locked or gone"
        if row.state != OutboundEvent.State.PENDING:
            return None, f"already {row.state}"
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            return None, "not due"
        if not row.subscription.active:
            return None, "subscription disabled"
        row.next_attempt_at = now + CLAIM_LEASE
        row.save(update_fields=["next_attempt_at"])
    return row, ""


def _post(sub: WebhookSubscription, row: OutboundEvent) -> tuple[int | None, str]:
    """Send once; (status code or None, error text)."""
    try:
        url_check(sub.url)
    except ServiceError as exc:
        return None, f"target refused: {exc.detail}"
    body = body_of(row)
    ts = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Socialcrm-Event": row.event_type,
        "X-Socialcrm-Delivery": str(row.pk),
        "X-Socialcrm-Event-Id": str(row.event_id),
        "X-Socialcrm-Timestamp": str(ts),
        "X-Socialcrm-Signature": sign(sub.secret["key"], ts, body),
    }
    try:
        with guarded_client(allow_private=settings.HOOKS_ALLOW_PRIVATE_TARGETS, timeout=TIMEOUT,
                            follow_redirects=False) as client:
            response = client.post(sub.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:2000]
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"HTTP {response.status_code}: {response.text[:500]}"


def delivery_send(*, delivery_id: int, now: dt.datetime | None = None) -> SendOutcome:
    """Attempt one pending, due delivery and record the outcome. Idempotent: a settled, locked or not-yet-due
    delivery is left alone."""
    row, skipped = _claim(delivery_id, now or timezone.now())
    if row is None:
        return SendOutcome(state="", skipped=skipped)
    status_code, error = _post(row.subscription, row)
    ok = status_code is not None and 200 <= status_code < 300
    done = timezone.now()
    with transaction.atomic():
        sub = WebhookSubscription.objects.select_for_update().get(pk=row.subscription_id)
        row = OutboundEvent.objects.select_for_update().get(pk=row.pk)
        row.attempts += 1
        row.status_codes = [*row.status_codes, status_code or 0]
        row.last_status_code = status_code
        row.last_error = error
        retry_in = None
        if ok:
            row.state, row.delivered_at, row.next_attempt_at = OutboundEvent.State.DELIVERED, done, None
            sub.failure_count = 0
        else:
            sub.failure_count += 1
            if sub.failure_count >= MAX_CONSECUTIVE_FAILURES and sub.active:
                sub.active = False
                sub.disabled_reason = (f"Disabled after {sub.failure_count} failed attempts in a row; last: "
                                       f"{error}")[:500]
                logger.warning("webhook subscription %s disabled: %s", sub.pk, sub.disabled_reason)
            if row.attempts >= MAX_ATTEMPTS or not sub.active:
                row.state, row.next_attempt_at = OutboundEvent.State.FAILED, None
            else:
                retry_in = backoff(row.attempts)
                row.next_attempt_at = done + dt.timedelta(seconds=retry_in)
        row.save(update_fields=["attempts", "status_codes", "last_status_code", "last_error", "state",
                                "delivered_at", "next_attempt_at"])
        sub.save(update_fields=["failure_count", "active", "disabled_reason", "updated_at"])
    logger.info("webhook delivery %s attempt %d: %s %s", row.pk, row.attempts, status_code, row.state)
    return SendOutcome(state=row.state, status_code=status_code, error=error, retry_in=retry_in)


def delivery_replay(*, delivery_id: int, subscription_id: int | None = None) -> OutboundEvent:
    """Send a delivery again (delivered or failed alike), with a fresh attempt budget; same event id."""
    with transaction.atomic():
        qs = OutboundEvent.objects.select_for_update().select_related("subscription").filter(pk=delivery_id)
        if subscription_id is not None:
            qs = qs.filter(subscription_id=subscription_id)
        row = qs.first()
        if row is None:
            raise NotFound("No such webhook delivery.", code="not_found")
        if not row.subscription.active:
            raise Conflict("The subscription is disabled; enable it first.", code="subscription_disabled")
        OutboundEvent.objects.filter(pk=row.pk).update(state=OutboundEvent.State.PENDING, attempts=0,
                                                       next_attempt_at=timezone.now(), delivered_at=None)
        transaction.on_commit(lambda: _enqueue_delivery(row.pk))
    row.refresh_from_db()
    return row

