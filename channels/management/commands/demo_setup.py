"""Create the demo channel (real recorded payloads) and an admin login, and queue the demo's first sync."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from channels.models import ChannelAccount
from channels.services import account_sync
from channels.tasks import sync_account


class Command(BaseCommand):
    help = "Create the demo channel account and an admin user, then sync the demo (queued, or --now)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="Sync in this process instead of queueing it.")
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-password", default="", help="Default: a random password, printed once.")

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            account, created = ChannelAccount.objects.get_or_create(
                platform=ChannelAccount.Platform.DEMO, external_id="demo",
                defaults={"name": "Demo (recorded X, Facebook, Telegram and Mastodon payloads)", "sync_interval": 3600},
            )
            user_model = get_user_model()
            username = options["admin_username"]
            password = ""
            if not user_model.objects.filter(username=username).exists():
                password = options["admin_password"] or secrets.token_urlsafe(12)
                user_model.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"demo channel account {account.pk} {'created' if created else 'exists'}")
        if password:
            self.stdout.write(self.style.SUCCESS(f"admin login: {username} / {password}"))
        else:
            self.stdout.write(f"admin login: {username} (exists; password unchanged - "
                              f"`python manage.py changepassword {username}` resets it)")
        if options["now"]:
            outcome = account_sync(account_id=account.pk)
            self.stdout.write(f"demo synced: {outcome.pages} pages, {outcome.inserted} new interactions"
                              + (f" ({outcome.skipped})" if outcome.skipped else ""))
        else:
            transaction.on_commit(lambda: sync_account.delay(account.pk))
            self.stdout.write("demo sync queued (the Celery worker stores it in a few seconds)")
