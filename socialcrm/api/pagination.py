"""Keyset ("cursor") pagination: stable, as fast on page 40,000 as on page one, and safe while rows change.

A list is ordered on a tuple of non-null columns that ends in the primary key, all in one direction, e.g.
(`updated_at` DESC, `id` DESC). A page is the next `page_size` rows strictly after the last row seen, so rows
inserted or deleted while a client walks the list never shift the rows it has not seen yet: nothing is
returned twice and nothing is skipped (rows inserted behind the walk's position are picked up by the next
`updated_since` sync). No COUNT and no OFFSET are ever run.

The cursor is opaque to clients: URL-safe base64 of a small JSON object holding the ordering's name, the
key of the row the page starts after and the direction. Clients follow the `next` and `previous` links.
A view declares its orderings as `keyset_orderings = {"-updated_at": ("-updated_at", "-id"), ...}`; the
first is the default and `?ordering=` picks another.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model, Q, QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

if TYPE_CHECKING:
    from rest_framework.views import APIView

DEFAULT_ORDERINGS: dict[str, tuple[str, ...]] = {"-id": ("-id",), "id": ("id",)}
MAX_CURSOR_LENGTH = 1000


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), default=_json_default).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, param: str = "cursor") -> dict[str, Any]:
    """The payload of a cursor made by `encode_cursor`; a 400 naming `param` for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError("not an object")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError({param: ["Invalid cursor: use the `next` or `previous` link of a page."]}) from None
    return payload


def _json_default(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def page_size_from(request: Request, *, default: int, maximum: int, param: str = "page_size") -> int:
    """`?page_size=` as an int in 1..maximum (a 400 naming it otherwise); `default` when absent."""
    value = request.query_params.get(param)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise ValidationError({param: [f"Must be a whole number from 1 to {maximum}."]})
    return int(value)


def keyset_after(fields: Sequence[str], values: Sequence[Any], *, descending: bool) -> Q:
    """Rows strictly after `values` in the order of `fields` (a row-value comparison written as Q).

    For (a, b) descending: a <= va AND (a < va OR b < vb), which PostgreSQL answers with a range scan of
    an index on (a DESC, b DESC).
    """
    op = "lt" if descending else "gt"
    op_or_equal = "lte" if descending else "gte"
    head, rest = fields[0], fields[1:]
    if not rest:
        return Q(**{f"{head}__{op}": values[0]})
    return Q(**{f"{head}__{op_or_equal}": values[0]}) & (
        Q(**{f"{head}__{op}": values[0]}) | keyset_after(rest, values[1:], descending=descending)
    )


class KeysetPagination(BasePagination):
    """The API's default pagination (see the module docstring)."""

    page_size = 50
    max_page_size = 200
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"
    ordering_query_param = "ordering"

    def _orderings(self, view: APIView | None) -> dict[str, tuple[str, ...]]:
        return getattr(view, "keyset_orderings", None) or DEFAULT_ORDERINGS

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: APIView | None = None) -> list[Any]:
        self.request = request
        orderings = self._orderings(view)
        name = request.query_params.get(self.ordering_query_param, next(iter(orderings)))
        if name not in orderings:
            raise ValidationError({self.ordering_query_param: [f"Must be one of: {', '.join(orderings)}."]})
        ordering = orderings[name]
        descending = ordering[0].startswith("-")
        if any(f.startswith("-") != descending for f in ordering) or ordering[-1].lstrip("-") not in ("id", "pk"):
            raise AssertionError(f"keyset ordering {ordering} must have one direction and end in the primary key")
        fields = [f.lstrip("-") for f in ordering]
        size = page_size_from(request, default=self.page_size, maximum=self.max_page_size,
                              param=self.page_size_query_param)

        backwards = False
        raw_cursor = request.query_params.get(self.cursor_query_param)
        if raw_cursor:
            payload = decode_cursor(raw_cursor, param=self.cursor_query_param)
            if payload.get("o") != name:
                raise ValidationError({self.cursor_query_param: ["The cursor belongs to another ordering."]})
            values = self._key_from_cursor(queryset.model, fields, payload.get("k"))
            backwards = bool(payload.get("r"))
            queryset = queryset.filter(keyset_after(fields, values, descending=descending != backwards))
        order_by = [f"-{f}" if descending != backwards else f for f in fields]
        rows = list(queryset.order_by(*order_by)[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        self._name, self._fields = name, fields
        self._next = self._previous = None
        if rows:
            if more or backwards:
                self._next = self._link(rows[-1], reverse=False)
            if (more and backwards) or (raw_cursor and not backwards):
                self._previous = self._link(rows[0], reverse=True)
        elif backwards:
            self._next = remove_query_param(request.build_absolute_uri(), self.cursor_query_param)
        return rows

    def _key_from_cursor(self, model: type[Model], fields: list[str], key: Any) -> list[Any]:
        if not isinstance(key, list) or len(key) != len(fields):
            raise ValidationError({self.cursor_query_param: ["Invalid cursor."]})
        values = []
        for name, value in zip(fields, key, strict=True):
            try:
                field = model._meta.pk if name == "pk" else model._meta.get_field(name)
                python = field.to_python(value)
            except (FieldDoesNotExist, DjangoValidationError, TypeError, ValueError, OverflowError):
                raise ValidationError({self.cursor_query_param: ["Invalid cursor."]}) from None
            if python is None or (isinstance(python, int) and not -(2**63) <= python < 2**63):
                raise ValidationError({self.cursor_query_param: ["Invalid cursor."]})
            if isinstance(python, dt.datetime) and python.tzinfo is None:
                raise ValidationError({self.cursor_query_param: ["Invalid cursor."]})
            values.append(python)
        return values

    def _link(self, row: Any, *, reverse: bool) -> str:
        key = [getattr(row, f) for f in self._fields]
        payload = {"o": self._name, "k": key}
        if reverse:
            payload["r"] = 1
        return replace_query_param(self.request.build_absolute_uri(), self.cursor_query_param, encode_cursor(payload))

    def get_paginated_response(self, data: Any) -> Response:
        return Response({"next": self._next, "previous": self._previous, "results": data})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return paginated_schema(schema)

    def get_schema_operation_parameters(self, view: APIView) -> list[dict]:
        orderings = list(self._orderings(view))
        return [
            {"name": self.cursor_query_param, "required": False, "in": "query",
             "description": "Opaque position in the list: follow the `next` / `previous` links.",
             "schema": {"type": "string"}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Rows per page (default {self.page_size}).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
            {"name": self.ordering_query_param, "required": False, "in": "query",
             "description": f"Sort order (default {orderings[0]}); each ends in the id, so it is stable.",
             "schema": {"type": "string", "enum": orderings}},
        ]


def paginated_schema(schema: dict) -> dict:
    """The OpenAPI schema of a page whose results are `schema` (an array schema)."""
    link = {"type": "string", "format": "uri", "nullable": True}
    return {
        "type": "object",
        "required": ["next", "previous", "results"],
        "properties": {"next": link, "previous": link, "results": schema},
    }
