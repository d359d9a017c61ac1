"""`manage.py create_api_token <username> --scopes read,write [--expires-in-days N] [--name NAME]`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from access.models import Scope
from access.services import api_token_create
from socialcrm.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it once: only its hash is stored. "
        f"Scopes: {', '.join(Scope.values)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--scopes", required=True, help="Comma-separated, e.g. read,write")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Refused after this many days.")
        parser.add_argument("--name", default="", help="What the token is for (default: 'cli').")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: options["username"]})
        except user_model.DoesNotExist:
            raise CommandError(f"No user {options['username']!r}.") from None
        days = options["expires_in_days"]
        if days is not None and days <= 0:
            raise CommandError("--expires-in-days must be a positive number of days.")
        expires_at = timezone.now() + dt.timedelta(days=days) if days else None
        try:
            stored, token = api_token_create(
                user=user, name=options["name"] or "cli", scopes=options["scopes"].split(","), expires_at=expires_at
            )
        except ServiceError as exc:
            raise CommandError(exc.detail) from None
        expiry = f", expires {stored.expires_at:%Y-%m-%d %H:%M %Z}" if stored.expires_at else ""
        self.stderr.write(f"Token {stored.name!r} for {user} with scopes {','.join(stored.scopes)}{expiry}. "
                          "It is shown only now; store it safely.")
        self.stdout.write(token)
