"""DRF authentication by API token: `Authorization: Bearer scrm_<prefix>_<secret>`."""

from __future__ import annotations

import functools
import hmac

from django.db import connection
from django.db.models import Model
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from .models import ApiToken
from .selectors import split_token, token_hash
from .services import api_token_touch

KEYWORD = b"bearer"


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


def token_for_secret(presented: str) -> ApiToken | None:
    """`access.selectors.api_token_get_for_secret` (the stored token, with its user, or None), in one plain query
    built once: the ORM spends about a millisecond building and reading this one row on every request."""
    parts = split_token(presented)
    if parts is None:
        return None
    plan = _lookup_plan()
    if plan is None:
        stored = ApiToken.objects.select_related("user").filter(prefix=parts[0]).first()
    else:
        sql, token_names, user_model, user_names = plan
        with connection.cursor() as cursor:
            cursor.execute(sql, [parts[0]])
            row = cursor.fetchone()
        stored = None
        if row is not None:
            stored = ApiToken.from_db(connection.alias, token_names, row[:len(token_names)])
            user = user_model.from_db(connection.alias, user_names, row[len(token_names):])
            ApiToken._meta.get_field("user").set_cached_value(stored, user)
    if stored is None or not hmac.compare_digest(stored.token_hash, token_hash(presented)):
        return None
    return stored


class ApiTokenAuthentication(BaseAuthentication):
    """Authenticates a request by its bearer token; `request.auth` is then the `ApiToken`.

    A missing or non-bearer Authorization header leaves the request to the next authenticator (session);
    a bearer token that is unknown, revoked, expired or whose user is inactive is a 401.
    """

    def authenticate(self, request: Request) -> tuple[object, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("The Authorization header must be 'Bearer <token>'.", code="token_malformed")
        try:
            presented = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The token is not valid.", code="token_invalid") from None
        token = token_for_secret(presented)
        if token is None:
            raise AuthenticationFailed("The token is not valid.", code="token_invalid")
        now = timezone.now()
        if token.revoked_at is not None:
            raise AuthenticationFailed("The token has been revoked.", code="token_revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthenticationFailed("The token has expired.", code="token_expired")
        if not token.user.is_active:
            raise AuthenticationFailed("The token's user is inactive.", code="user_inactive")
        api_token_touch(token=token, now=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Present, so an unauthenticated request is a 401 (with this challenge), not a 403.
        return 'Bearer realm="api"'
