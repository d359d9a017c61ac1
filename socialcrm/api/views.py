"""Bases for the apps' API views."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.utils.http import parse_etags, quote_etag
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

# Integer ids in URLs: at most 18 digits, so every id that reaches the database fits in a bigint.
ID_PATTERN = r"[0-9]{1,18}"


class ApiViewSetMixin:
    """Scope hooks read by the permission class (`access.permissions.HasScope`).

    `read_scope` / `write_scope` are what safe / unsafe methods need; an `@action(required_scope=...)`
    overrides both for that action. Keyset orderings for `?ordering=` go in `keyset_orderings`.
    """

    lookup_value_regex = ID_PATTERN
    read_scope = "read"
    write_scope = "write"
    required_scope: str | None = None
    keyset_orderings: dict[str, tuple[str, ...]] | None = None


class ApiGenericViewSet(ApiViewSetMixin, viewsets.GenericViewSet):
    """A GenericViewSet with the API's scope hooks."""


def etag_for(data: Any) -> str:
    """A strong ETag of a representation (the SHA-256 of its canonical JSON)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return quote_etag(hashlib.sha256(canonical).hexdigest()[:32])


def conditional_response(request: Request, data: Any, **kwargs: Any) -> Response:
    """A 200 with an ETag, or a 304 when `If-None-Match` already holds it (weak comparison, RFC 9110)."""
    etag = etag_for(data)
    header = request.headers.get("If-None-Match", "")
    if header:
        wanted = {tag.removeprefix("W/") for tag in parse_etags(header)}
        if "*" in wanted or etag in wanted:
            return Response(status=304, headers={"ETag": etag})
    response = Response(data, **kwargs)
    response["ETag"] = etag
    return response
