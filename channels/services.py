"""Writes of the channels app: syncing a polled account and draining stored webhook deliveries.

No network call ever runs inside a transaction: a sync claims a short lease on the account row, fetches a
page, then stores the page and advances the cursor in one short transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections import defaultdict

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .adapters import adapter_class
from .adapters.base import AdapterError, BaseAdapter, PayloadError, PermanentError, RateLimited, TransientError
from .ingest import ingest
from .models import ChannelAccount, WebhookDelivery

logger = logging.getLogger(__name__)

# Pages one sync run fetches at most before it lets other accounts have the worker.
MAX_PAGES_PER_SYNC = 50
# Attempts before a webhook delivery that keeps failing is marked failed (and waits for a replay).
MAX_DELIVERY_ATTEMPTS = 5
DELIVERY_BATCH = 500


class StaleCursor(Exception):
    """The account's cursor moved while this run was fetching: another run owns it now."""


def adapter_for(account: ChannelAccount) -> BaseAdapter:
    return adapter_class(account.platform)(
        external_id=account.external_id, credentials=account.credentials or {}, config=account.config or {},
        webhook_secret=account.webhook_secret or {},
    )


def account_claim_lease(*, account_id: int, now: dt.datetime | None = None) -> str | None:
    """Take the account's sync lease if it is free, enabled and not paused; the lease token, or None."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = (
        ChannelAccount.objects.filter(pk=account_id, enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        .update(lease_until=now + dt.timedelta(seconds=settings.CHANNEL_SYNC_LEASE), lease_token=token)
    )
    return token if claimed else None


def account_release_lease(*, account_id: int, token: str, error: str = "", paused_until: dt.datetime | None = None,
                          health: str | None = None) -> None:
    """Give the lease back and record the run's outcome; schedule the next poll."""
    now = timezone.now()
    account = ChannelAccount.objects.filter(pk=account_id, lease_token=token)
    values: dict = {
        "lease_until": None, "lease_token": "", "next_sync_at": now + dt.timedelta(seconds=1) * F("sync_interval")
    }
    if error:
        values.update(last_error=error[:2000], last_error_at=now, health=health or ChannelAccount.Health.DEGRADED)
    else:
        values.update(last_synced_at=now, health=ChannelAccount.Health.OK)
    if paused_until is not None:
        values.update(paused_until=paused_until, next_sync_at=paused_until)
    account.update(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncOutcome:
    account_id: int
    pages: int = 0
    events: int = 0
    inserted: int = 0
    rejected: int = 0
    skipped: str = ""
    error: str = ""


def account_sync(*, account_id: int) -> SyncOutcome:
    """Poll one account until it has nothing more (or MAX_PAGES_PER_SYNC), storing each page as it comes.

    The cursor advances only in the transaction that stored its page, and only if it still equals the one
    this run started from. A rate limit pauses the account until the platform's reset time (stored in the
    database, not a broker countdown); transient errors propagate so the task retries with backoff; a
    permanent error marks the account failing with its reason.
    """
    token = account_claim_lease(account_id=account_id)
    if token is None:
        return SyncOutcome(account_id, skipped="lease held, disabled, paused or gone")
    account = ChannelAccount.objects.get(pk=account_id)
    adapter = adapter_for(account)
    if not adapter.pollable:
        account_release_lease(account_id=account_id, token=token)
        return SyncOutcome(account_id, skipped=f"{account.platform} is not polled")
    pages = events = inserted = rejected = 0
    cursor = dict(account.sync_cursor or {})
    try:
        for _ in range(MAX_PAGES_PER_SYNC):
            page = adapter.fetch(cursor)  # network: outside any transaction
            with transaction.atomic(durable=True):
                result = ingest(account, page.events)
                moved = ChannelAccount.objects.filter(pk=account_id, lease_token=token, sync_cursor=cursor).update(
                    sync_cursor=page.cursor
                )
                if not moved:
                    raise StaleCursor(f"cursor of account {account_id} moved during the sync")
            cursor = page.cursor
            pages, events = pages + 1, events + len(page.events)
            inserted, rejected = inserted + result.inserted, rejected + len(result.rejected)
            if not page.has_more:
                break
    except RateLimited as exc:
        account_release_lease(account_id=account_id, token=token, error=f"rate limited: {exc}",
                              paused_until=exc.reset_at)
        return SyncOutcome(account_id, pages, events, inserted, rejected, error=str(exc))
    except TransientError as exc:
        account_release_lease(account_id=account_id, token=token, error=f"temporary failure: {exc}")
        raise
    except (PermanentError, PayloadError, StaleCursor) as exc:
        account_release_lease(account_id=account_id, token=token, error=str(exc), health=ChannelAccount.Health.FAILING)
        return SyncOutcome(account_id, pages, events, inserted, rejected, error=str(exc))
    except BaseException:
        account_release_lease(account_id=account_id, token=token, error="unexpected error during sync",
                              health=ChannelAccount.Health.FAILING)
        raise
    account_release_lease(account_id=account_id, token=token)
    return SyncOutcome(account_id, pages, events, inserted, rejected)


def accounts_due_for_sync(*, now: dt.datetime | None = None) -> list[int]:
    """Claim the next poll of every due, enabled, unpaused account (one statement); their ids."""
    now = now or timezone.now()
    pollable = [p for p in ChannelAccount.Platform.values if _pollable(p)]
    due = (
        ChannelAccount.objects.filter(enabled=True, platform__in=pollable)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    )
    ids = list(due.values_list("pk", flat=True))
    # Push next_sync_at ahead now, so the next beat tick does not enqueue the same account again.
    ChannelAccount.objects.filter(pk__in=ids).update(
        next_sync_at=now + dt.timedelta(seconds=1) * F("sync_interval")
    )
    return ids


def _pollable(platform: str) -> bool:
    try:
        return adapter_class(platform).pollable
    except KeyError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class DrainOutcome:
    processed: int = 0
    failed: int = 0
    retried: int = 0


def deliveries_process(*, limit: int = DELIVERY_BATCH) -> DrainOutcome:
    """Parse and ingest pending webhook deliveries, oldest first, in one transaction per drained batch.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so workers running this at once never take the same
    delivery. A delivery whose body cannot be parsed counts an attempt and keeps its reason; after
    MAX_DELIVERY_ATTEMPTS it is marked failed and waits for a replay. The rest of the batch is stored.
    """
    processed = failed = retried = 0
    now = timezone.now()
    with transaction.atomic(durable=True):
        pending = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=WebhookDelivery.State.PENDING)
            .select_related("channel_account")
            .order_by("received_at", "id")[:limit]
        )
        by_account: dict[int, list[WebhookDelivery]] = defaultdict(list)
        for delivery in pending:
            by_account[delivery.channel_account_id].append(delivery)
        done_ids: list[int] = []
        for deliveries in by_account.values():
            account = deliveries[0].channel_account
            adapter = adapter_for(account)
            events = []
            for delivery in deliveries:
                try:
                    events.extend(adapter.parse(bytes(delivery.body)))
                except (AdapterError, ValueError) as exc:
                    delivery.attempts += 1
                    delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    if delivery.attempts >= MAX_DELIVERY_ATTEMPTS:
                        delivery.state = WebhookDelivery.State.FAILED
                        failed += 1
                    else:
                        retried += 1
                    delivery.save(update_fields=["attempts", "last_error", "state"])
                    continue
                done_ids.append(delivery.pk)
            result = ingest(account, events)
            if result.rejected:
                logger.warning("deliveries of account %s: %d events rejected", account.pk, len(result.rejected))
        processed = WebhookDelivery.objects.filter(pk__in=done_ids).update(
            state=WebhookDelivery.State.PROCESSED, processed_at=now, last_error=""
        )
    return DrainOutcome(processed=processed, failed=failed, retried=retried)
