"""A strict Content-Security-Policy on the console's pages.

Message text, names and file names shown in the console come from strangers on the internet. Templates escape
them; the policy is the second wall: no inline script or style, no plugin, no foreign script, no form posting
elsewhere, no framing. Images may come from the server itself and `data:` only (avatars are proxied through the
console, so an agent's browser never calls a platform's image host with the agent's IP and referrer).

The admin and the API's Swagger page keep their own pages' needs and are left alone: the policy applies to the
console's paths (everything but /admin/, /api/, /webhooks/).
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
EXEMPT_PREFIXES = ("/admin/", "/api/", "/webhooks/")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith(EXEMPT_PREFIXES):
            response.headers.setdefault("Content-Security-Policy", POLICY)
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


TIME_ZONE_COOKIE = "console_tz"


class AgentTimeZoneMiddleware:
    """Show times in the agent's own time zone.

    The browser reports its IANA zone (`console.js` writes the `console_tz` cookie from
    `Intl.DateTimeFormat().resolvedOptions().timeZone`); an unknown or missing value leaves `TIME_ZONE`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = unquote(request.COOKIES.get(TIME_ZONE_COOKIE, ""))  # console.js writes it URL-encoded
        zone = _zone(name) if name and len(name) <= 64 else None
        if zone is None:
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
