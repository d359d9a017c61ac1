"""Celery tasks of the hooks app: thin wrappers around `hooks.services`."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="hooks.deliver", ignore_result=True)
def deliver(delivery_id: int) -> dict:
    """Attempt one webhook delivery; on failure schedule the next attempt after its backoff."""
    outcome = services.delivery_send(delivery_id=delivery_id)
    if outcome.retry_in is not None:
        services._enqueue_delivery(delivery_id, countdown=outcome.retry_in)
    return {"state": outcome.state, "status_code": outcome.status_code, "skipped": outcome.skipped}


@shared_task(name="hooks.sweep", ignore_result=True)
def sweep() -> int:
    """Beat runs this: enqueue pending deliveries whose time has come (a lost task or a broker outage)."""
    ids = services.deliveries_due()
    for delivery_id in ids:
        services._enqueue_delivery(delivery_id)
    return len(ids)
