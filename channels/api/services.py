"""Channel account writes behind the API, in the conventions of services.py: keyword-only, one transaction
each, returning what they wrote. Secrets are checked like the admin checks them (channels/admin.py)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from channels.admin import WEBHOOK_SECRET_KEYS
from channels.models import ChannelAccount
from socialcrm.errors import Conflict, NotFound, ServiceError

# What a change may touch: everything the API writes but the platform, which is fixed at creation.
UPDATABLE_FIELDS = ("name", "external_id", "config", "credentials", "webhook_secret", "enabled", "sync_interval")


def _check_webhook_secret(platform: str, secret: dict[str, str] | None) -> None:
    missing = [key for key in WEBHOOK_SECRET_KEYS.get(platform, []) if not (secret or {}).get(key)]
    if secret and missing:
        raise ServiceError(f"A {platform} webhook secret needs {', '.join(missing)}.", code="webhook_secret_incomplete",
                           field="webhook_secret")


def _check_unique(platform: str, external_id: str, exclude_id: int | None = None) -> None:
    if not external_id:
        return
    clash = ChannelAccount.objects.filter(platform=platform, external_id=external_id).exclude(pk=exclude_id)
    if clash.exists():
        raise Conflict(f"A {platform} channel account with this external id exists already.",
                       code="duplicate_external_id", field="external_id")


def _save(account: ChannelAccount, **kwargs: Any) -> None:
    try:
        with transaction.atomic():
            account.save(**kwargs)
    except IntegrityError:  # a concurrent request took the same (platform, external id)
        raise Conflict(f"A {account.platform} channel account with this external id exists already.",
                       code="duplicate_external_id", field="external_id") from None


def channel_account_create(*, platform: str, name: str, external_id: str = "", config: dict | None = None,
                           credentials: dict[str, str] | None = None, webhook_secret: dict[str, str] | None = None,
                           enabled: bool = True, sync_interval: int = 60) -> ChannelAccount:
    """A new channel account; empty secrets are stored as none."""
    if platform not in ChannelAccount.Platform.values:
        raise ServiceError(f"Unknown platform {platform!r}.", code="unknown_platform", field="platform")
    _check_webhook_secret(platform, webhook_secret)
    _check_unique(platform, external_id)
    account = ChannelAccount(platform=platform, name=name, external_id=external_id, config=config or {},
                             credentials=credentials or None, webhook_secret=webhook_secret or None, enabled=enabled,
                             sync_interval=sync_interval)
    _save(account)
    return account


def channel_account_update(*, account_id: int, changes: dict[str, Any]) -> ChannelAccount:
    """Change the given fields; a secret given as None or {} is removed, an omitted one is kept."""
    unknown = set(changes) - set(UPDATABLE_FIELDS)
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    with transaction.atomic():
        account = ChannelAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise NotFound("No such channel account.", code="not_found")
        if "webhook_secret" in changes:
            _check_webhook_secret(account.platform, changes["webhook_secret"])
        if "external_id" in changes:
            _check_unique(account.platform, changes["external_id"], exclude_id=account.pk)
        for name, value in changes.items():
            if name in ("credentials", "webhook_secret"):
                value = value or None
            setattr(account, name, value)
        _save(account, update_fields=[*changes, "updated_at"])
    return account


def channel_account_delete(*, account_id: int) -> None:
    """Delete an account that has no conversations or interactions (disable one that has)."""
    with transaction.atomic():
        account = ChannelAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            raise NotFound("No such channel account.", code="not_found")
        try:
            with transaction.atomic():
                account.delete()
        except ProtectedError:
            raise Conflict("The channel account has conversations or interactions; disable it instead.",
                           code="channel_account_in_use") from None
