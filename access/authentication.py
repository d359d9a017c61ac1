"""DRF authentication by API token: `Authorization: Bearer scrm_<prefix>_<secret>`."""

from __future__ import annotations

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from .models import ApiToken
from .selectors import api_token_get_for_secret
from .services import api_token_touch

KEYWORD = b"bearer"


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
        token = api_token_get_for_secret(presented)
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
