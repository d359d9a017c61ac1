"""Pagination of a customer's timeline: newest first, keyset on (occurred_at, id), an opaque cursor.

The cursor holds the (occurred_at, id) of the last interaction of the page before; the timeline selector
continues strictly after it, so a page 40,000 rows deep costs what the first page costs, and interactions
arriving while a client pages never shift the pages still to come. Only `next` links are given: a timeline
is read from the newest end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from conversations.models import Interaction
from socialcrm.api.pagination import decode_cursor, encode_cursor, page_size_from, paginated_schema

if TYPE_CHECKING:
    from rest_framework.views import APIView

Fetch = Callable[[int, tuple[dt.datetime, int] | None], list[Interaction]]


def timeline_cursor_encode(interaction: Interaction) -> str:
    """The cursor of the page after `interaction` (what a `next` link holds; the console uses it too)."""
    return encode_cursor({"o": "timeline", "k": [interaction.occurred_at, interaction.pk]})


def timeline_cursor_decode(raw: str) -> tuple[dt.datetime, int]:
    """The (occurred_at, id) a timeline cursor continues after; ValueError for anything else."""
    try:
        payload = decode_cursor(raw)
    except ValidationError:
        raise ValueError("not a cursor") from None
    key = payload.get("k")
    if payload.get("o") != "timeline" or not isinstance(key, list) or len(key) != 2:
        raise ValueError("not a timeline cursor")
    at, pk = key
    occurred_at = parse_datetime(at) if isinstance(at, str) else None  # ValueError for an impossible date
    if occurred_at is None or occurred_at.tzinfo is None or isinstance(pk, bool) or not isinstance(pk, int) \
            or not 0 < pk < 2**63:
        raise ValueError("not a timeline position")
    return occurred_at, pk


class TimelinePagination(BasePagination):
    page_size = 50
    max_page_size = 200
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def paginate_timeline(self, request: Request, fetch: Fetch) -> list[Interaction]:
        """One page: `fetch(limit, before)` is the timeline selector with the customer already bound."""
        self.request = request
        size = page_size_from(request, default=self.page_size, maximum=self.max_page_size,
                              param=self.page_size_query_param)
        before = self._before(request.query_params.get(self.cursor_query_param))
        rows = fetch(size + 1, before)
        self._next = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            self._next = replace_query_param(
                request.build_absolute_uri(), self.cursor_query_param, timeline_cursor_encode(last),
            )
        return rows

    def _before(self, raw: str | None) -> tuple[dt.datetime, int] | None:
        if not raw:
            return None
        try:
            return timeline_cursor_decode(raw)
        except ValueError:
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self._next, "previous": None, "results": data})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return paginated_schema(schema)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict]:
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "Opaque position in the timeline: follow the `next` link.", "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Interactions per page (default {self.page_size}).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]
