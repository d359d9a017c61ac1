"""Celery tasks of the contacts app: thin wrappers around `contacts.suggestions`."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from . import suggestions

logger = logging.getLogger(__name__)

# A run stops taking new batches after this long (well inside the soft time limit); beat runs it every minute.
RUN_BUDGET_SECONDS = 60.0


@shared_task(name="contacts.score_new_customers", ignore_result=True)
def score_new_customers() -> dict[str, int]:
    """Score the customers queued in the dedupe outbox. Ingest enqueues it after a batch that created customers;
    beat runs it every minute as the sweeper (it also closes open suggestions naming a merged-away customer)."""
    started = time.monotonic()
    total = {"closed": suggestions.suggestions_sweep_merged(), "scored": 0, "suggested": 0, "auto_linked": 0}
    while True:
        outcome = suggestions.dedupe_outbox_drain()
        total["scored"] += len(outcome.scored)
        total["suggested"] += outcome.suggested
        total["auto_linked"] += outcome.auto_linked
        if outcome.taken < suggestions.DRAIN_BATCH or time.monotonic() - started > RUN_BUDGET_SECONDS:
            logger.info("score_new_customers: %s", total)
            return total
