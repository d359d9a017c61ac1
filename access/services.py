"""Writes of the access app: creating and revoking API tokens; the console's groups."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from socialcrm.errors import ServiceError

from .models import ApiToken, Scope
from .selectors import TOKEN_PREFIX, token_hash

# last_used_at is written at most this often per token, so reads do not turn into writes.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _clean_scopes(scopes: Iterable[str]) -> list[str]:
    cleaned = sorted({s.strip() for s in scopes if s.strip()})
    unknown = [s for s in cleaned if s not in Scope.values]
    if unknown:
        raise ServiceError(f"Unknown scope(s): {', '.join(unknown)}; known: {', '.join(Scope.values)}.",
                           code="unknown_scope", field="scopes")
    if not cleaned:
        raise ServiceError("A token needs at least one scope.", code="no_scope", field="scopes")
    return cleaned


def api_token_create(
    *, user: AbstractBaseUser, name: str, scopes: Iterable[str], expires_at: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `user`; the stored row and the token itself, which exists nowhere else afterwards."""
    cleaned = _clean_scopes(scopes)
    name = (name or "").strip()
    if not name:
        raise ServiceError("A token needs a name.", code="name_required", field="name")
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("The expiry must be in the future.", code="expiry_in_past", field="expires_at")
    for _ in range(3):  # a 48-bit prefix collides practically never; a retry covers it if it does
        prefix = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                stored = ApiToken.objects.create(
                    name=name[:100], user=user, prefix=prefix, token_hash=token_hash(token), scopes=cleaned,
                    expires_at=expires_at,
                )
        except IntegrityError:
            continue
        return stored, token
    raise RuntimeError("could not find a free token prefix")


def api_token_revoke(*, token: ApiToken, now: dt.datetime | None = None) -> ApiToken:
    """Refuse the token from now on (revoking twice keeps the first time)."""
    now = now or timezone.now()
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    token.refresh_from_db(fields=["revoked_at"])
    return token


def api_token_touch(*, token: ApiToken, now: dt.datetime | None = None) -> None:
    """Record that the token was used, at most once a minute (one UPDATE, no read)."""
    now = now or timezone.now()
    if token.last_used_at is None or token.last_used_at + LAST_USED_RESOLUTION < now:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


# The console's roles. Agents see the channel accounts of their teams and answer there; CRM staff see every
# customer and may merge, undo merges and answer GDPR requests; admins may also manage channel accounts, teams and
# tokens in the Django admin. Membership in a team (channel accounts) is separate from the role.
GROUP_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "Agents": (),
    "CRM staff": ("access.view_all_channels", "access.merge_customers", "access.handle_gdpr_requests"),
    "Admins": (
        "access.view_all_channels", "access.merge_customers", "access.handle_gdpr_requests",
        "access.add_team", "access.change_team", "access.view_team",
        "access.add_apitoken", "access.change_apitoken", "access.view_apitoken",
        "channels.add_channelaccount", "channels.change_channelaccount", "channels.view_channelaccount",
    ),
}


def _has_models(migrated: object, *labels: str) -> bool:
    try:
        for label in labels:
            migrated.get_model(label)  # type: ignore[attr-defined]
    except LookupError:
        return False
    return True


def groups_ensure(sender: object = None, using: str = "default", **kwargs: object) -> None:
    """Create the console's groups with their permissions; idempotent (a `post_migrate` receiver).

    Permissions an admin added to a group by hand are kept; missing ones are added.
    """
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    last_app = [config for config in apps.get_app_configs() if config.models_module][-1]
    if sender is not None and sender is not last_app:  # once per migrate, after every app's permissions exist
        return
    migrated = kwargs.get("apps")
    if migrated is not None and not _has_models(migrated, "auth.Group", "auth.Permission"):
        return  # a partial migrate (`migrate channels 0002`) that left auth's tables uncreated
    wanted = {p for perms in GROUP_PERMISSIONS.values() for p in perms}
    found = {
        f"{app}.{codename}": pk
        for pk, app, codename in Permission.objects.using(using)
        .filter(codename__in=[p.split(".", 1)[1] for p in wanted])
        .values_list("pk", "content_type__app_label", "codename")
    }
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*[found[p] for p in perms if p in found])
