"""Celery tasks of the channels app: thin wrappers that re-read rows and call services."""

from __future__ import annotations

import logging

from celery import shared_task

from . import services
from .adapters.base import TransientError
from .models import ChannelAccount

logger = logging.getLogger(__name__)


@shared_task(name="channels.sync_due_accounts", ignore_result=True)
def sync_due_accounts() -> int:
    """Beat runs this; it enqueues one `sync_account` per due channel account."""
    ids = services.accounts_due_for_sync()
    for account_id in ids:
        sync_account.delay(account_id)
    return len(ids)


@shared_task(
    name="channels.sync_account", ignore_result=True, autoretry_for=(TransientError,), retry_backoff=5,
    retry_backoff_max=600, retry_jitter=True, max_retries=5,
)
def sync_account(account_id: int) -> dict:
    """Poll one channel account. Idempotent: a second run finds the lease taken or nothing new."""
    if not ChannelAccount.objects.filter(pk=account_id).exists():
        return {"skipped": "gone"}
    outcome = services.account_sync(account_id=account_id)
    logger.info("sync_account %s: %s", account_id, outcome)
    return {"pages": outcome.pages, "inserted": outcome.inserted, "skipped": outcome.skipped, "error": outcome.error}


@shared_task(name="channels.process_deliveries", ignore_result=True)
def process_deliveries() -> dict:
    """Drain pending webhook deliveries; beat also runs it every minute as the sweeper."""
    total = {"processed": 0, "failed": 0, "retried": 0}
    while True:
        outcome = services.deliveries_process()
        total = {k: total[k] + getattr(outcome, k) for k in total}
        if outcome.processed + outcome.failed + outcome.retried < services.DELIVERY_BATCH:
            return total


@shared_task(
    name="channels.send_outbound", ignore_result=True, autoretry_for=(TransientError,), retry_backoff=5,
    retry_backoff_max=600, retry_jitter=True, max_retries=8,
)
def send_outbound(interaction_id: int) -> dict:
    """Send one queued reply. Idempotent: a settled reply is left alone; an ambiguous one is looked up first."""
    outcome = services.reply_send(interaction_id=interaction_id)
    logger.info("send_outbound %s: %s", interaction_id, outcome)
    return {"state": outcome.state, "external_id": outcome.external_id, "error": outcome.error}


@shared_task(name="channels.sweep_outbound", ignore_result=True)
def sweep_outbound() -> int:
    """Beat runs this: re-enqueue replies a lost task left queued or a dead worker left sending."""
    ids = services.replies_stuck()
    for interaction_id in ids:
        send_outbound.delay(interaction_id)
    return len(ids)
