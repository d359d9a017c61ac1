"""`manage.py replay_deliveries`: put failed webhook deliveries back in the ingest queue."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from channels.models import WebhookDelivery
from channels.services import deliveries_process, deliveries_replay


class Command(BaseCommand):
    help = "Replay failed webhook deliveries (all, one account's, or chosen ids); ingest is idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="Delivery ids (default: every failed delivery).")
        parser.add_argument("--account", type=int, help="Only this channel account's deliveries.")
        parser.add_argument("--include-processed", action="store_true",
                            help="Also replay deliveries that were processed (to re-parse with a fixed adapter).")
        parser.add_argument("--now", action="store_true",
                            help="Process them in this process instead of waiting for a worker.")

    def handle(self, *args, ids: list[int], account: int | None, include_processed: bool, now: bool,
               **options) -> None:
        count = deliveries_replay(delivery_ids=ids or None, account_id=account, include_processed=include_processed)
        self.stdout.write(f"{count} deliveries queued for replay")
        if now and count:
            processed = failed = 0
            while WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING).exists():
                outcome = deliveries_process()
                processed, failed = processed + outcome.processed, failed + outcome.failed
                self.stdout.write(f"  processed {processed}, failed {failed}, retrying {outcome.retried}")
                if outcome.processed + outcome.failed == 0:
                    break
            self.stdout.write(self.style.SUCCESS(f"done: {processed} processed, {failed} failed"))
