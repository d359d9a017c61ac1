"""Webhook intake on a short path: the platforms' requests skip the console's middleware.

A platform's POST carries no session, cookie, language or CSRF token, and no browser reads its answer, so the
session, authentication, messages, locale, CSRF, clickjacking, htmx, CSP and time-zone middleware have nothing to
do for it; on intake's hot path they took a third of the server's time per delivery (bench/webhooks.py). This
middleware sits right after SecurityMiddleware (its HTTPS redirect and headers still apply) and hands a request
for one of `channels/urls.py`'s routes straight to its view. Any other request, including a path under the
prefix that matches no route, goes down the whole stack.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, URLResolver
from django.urls.resolvers import RegexPattern

# Where socialcrm/urls.py includes channels.urls (a test holds the two together).
PREFIX = "/webhooks/"


class WebhookShortPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.resolver = URLResolver(RegexPattern(f"^{PREFIX}"), "channels.urls")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        try:
            match = self.resolver.resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        # As CommonMiddleware would: platforms' clients get a length, not a chunked answer.
        if not response.streaming and "Content-Length" not in response:
            response.headers["Content-Length"] = str(len(response.content))
        return response
