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
import functools
import hashlib
import hmac
from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import connection
from django.db.models import Model, QuerySet

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


@functools.cache
def _lookup_plan() -> tuple[str, list[str], type[Model], list[str]] | None:
    """The SQL of the token lookup (by prefix, with the user), built once from the models; None when a column
    needs a conversion from its database value, which only the ORM's iterator applies."""
    user_field = ApiToken._meta.get_field("user")
    user_model = user_field.related_model
    token_fields, user_fields = ApiToken._meta.concrete_fields, user_model._meta.concrete_fields
    if any(f.get_db_converters(connection) for f in (*token_fields, *user_fields)):
        return None
    quote = connection.ops.quote_name
    columns = [f"t.{quote(f.column)}" for f in token_fields] + [f"u.{quote(f.column)}" for f in user_fields]
    join = f"u.{quote(user_model._meta.pk.column)} = t.{quote(user_field.column)}"
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(ApiToken._meta.db_table)} t "
        f"JOIN {quote(user_model._meta.db_table)} u ON {join} "
        f"WHERE t.{quote(ApiToken._meta.get_field('prefix').column)} = %s"
    )
    return sql, [f.attname for f in token_fields], user_model, [f.attname for f in user_fields]


def _token_with_user(prefix: str) -> ApiToken | None:
    """The token with this prefix and its user, in one plain query built once (the ORM spends about a millisecond
    building and reading this one row, and every API request asks for it)."""
    plan = _lookup_plan()
    if plan is None:
        return ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    sql, token_names, user_model, user_names = plan
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    stored = ApiToken.from_db(connection.alias, token_names, row[:len(token_names)])
    ApiToken._meta.get_field("user").set_cached_value(
        stored, user_model.from_db(connection.alias, user_names, row[len(token_names):]))
    return stored


def api_token_get_for_secret(token: str) -> ApiToken | None:
    """The stored token this presented token is (with its user), or None; usability is the caller's check.

    The lookup is by the public prefix; the hash is then compared in constant time.
    """
    parts = split_token(token)
    if parts is None:
        return None
    stored = _token_with_user(parts[0])
    if stored is None or not hmac.compare_digest(stored.token_hash, token_hash(token)):
        return None
    return stored
