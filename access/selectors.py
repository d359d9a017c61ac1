"""Reads of the access app: who a user is allowed to see, and which token a request presents.

The visibility rule, applied by every API view through the apps' `*_for_user` selectors:

- A user with the `access.view_all_channels` permission (every superuser has it) sees everything.
- Anyone else sees the channel accounts of the teams they belong to, and only what arrived on them:
  conversations, interactions and webhook deliveries of those accounts, and the customers (with all their
  identities) that have at least one identity with a conversation on one of those accounts. A user in no
  team sees nothing. Being staff alone does not widen this.

Objects outside a user's view are absent from lists and searches, and answer 404 (never 403) on detail
views and actions, so an id outside the view cannot even be confirmed to exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from .models import ApiToken, Team

TOKEN_PREFIX = "scrm"
VIEW_ALL_PERMISSION = "access.view_all_channels"


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelScope:
    """The channel accounts a user may see: all of them, or `account_ids`."""

    unrestricted: bool
    account_ids: frozenset[int] = frozenset()

    def allows(self, account_id: int | None) -> bool:
        return self.unrestricted or (account_id is not None and account_id in self.account_ids)

    def restrict(self, ids: Iterable[int]) -> list[int]:
        """The ids among `ids` this scope allows."""
        return [i for i in ids if self.allows(i)]

    def limit(self, queryset: QuerySet, field: str = "channel_account_id") -> QuerySet:
        """`queryset` cut down to rows whose `field` (a channel account id) this scope allows."""
        return queryset if self.unrestricted else queryset.filter(**{f"{field}__in": self.account_ids})


NOTHING = ChannelScope(unrestricted=False)
EVERYTHING = ChannelScope(unrestricted=True)


def channel_scope_for_user(user: AbstractBaseUser | AnonymousUser | None) -> ChannelScope:
    """The channel accounts `user` may see (cached on the user object for the rest of the request)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NOTHING
    cached = getattr(user, "_access_channel_scope", None)
    if cached is not None:
        return cached
    if user.has_perm(VIEW_ALL_PERMISSION):
        scope = EVERYTHING
    else:
        ids = Team.channel_accounts.through.objects.filter(team__members=user).values_list(
            "channelaccount_id", flat=True
        )
        scope = ChannelScope(unrestricted=False, account_ids=frozenset(ids))
    user._access_channel_scope = scope
    return scope


def token_hash(token: str) -> str:
    """The SHA-256 (hex) of a whole token, as stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed `scrm_<prefix>_<secret>` token, else None."""
    head, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if head != TOKEN_PREFIX or not prefix or not secret or len(prefix) > 16 or len(token) > 200:
        return None
    return prefix, secret


def api_token_get_for_secret(token: str) -> ApiToken | None:
    """The stored token this presented token is (with its user), or None; usability is the caller's check.

    The lookup is by the public prefix; the hash is then compared in constant time.
    """
    parts = split_token(token)
    if parts is None:
        return None
    stored = ApiToken.objects.select_related("user").filter(prefix=parts[0]).first()
    if stored is None or not hmac.compare_digest(stored.token_hash, token_hash(token)):
        return None
    return stored
