"""One error shape for the whole API: `{"code": ..., "detail": ..., "fields": {name: [messages]}}`.

`code` is stable and machine-readable, `detail` is for people, `fields` names the inputs at fault (empty when
the error is not about one input). Validation errors, service errors (status from the error class), 404s,
authentication, permission and throttling errors all take this shape; bad input is never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from socialcrm.errors import ServiceError

logger = logging.getLogger(__name__)

NON_FIELD = "non_field_errors"


def error_body(code: str, detail: str, fields: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"code": code, "detail": detail, "fields": fields or {}}


def flatten_field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field": [...], "parent.child": [...], "items.0.name": [...]}."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            out.update(flatten_field_errors(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or NON_FIELD: [str(item) for item in detail]} if detail else {}
        out = {}
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                out.update(flatten_field_errors(item, f"{prefix}.{index}" if prefix else str(index)))
            else:
                out.setdefault(prefix or NON_FIELD, []).append(str(item))
        return out
    return {prefix or NON_FIELD: [str(detail)]}


def _validation_response(detail: Any, headers: dict[str, str] | None = None) -> Response:
    fields = flatten_field_errors(detail)
    first = next(iter(fields.items()), None)
    if first is None:
        message = "Invalid input."
    elif first[0] == NON_FIELD:
        message = first[1][0]
    else:
        message = f"{first[0]}: {first[1][0]}"
    return Response(error_body("invalid", message, fields), status=status.HTTP_400_BAD_REQUEST, headers=headers)


def _code_of(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error the API answers, in one shape."""
    if isinstance(exc, ServiceError):
        set_rollback()
        fields = {exc.field: [exc.detail]} if exc.field else {}
        return Response(error_body(exc.code, exc.detail, fields), status=exc.status_code)
    if isinstance(exc, ObjectDoesNotExist):
        exc = Http404()
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    if isinstance(exc, ProtectedError | RestrictedError):
        set_rollback()
        return Response(error_body("protected", "Other records still refer to this one; it cannot be deleted."),
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IntegrityError):
        # The services check what a client can cause; this is the net under a race between two requests.
        logger.warning("integrity error answered as 409: %s", exc)
        set_rollback()
        return Response(error_body("conflict", "The request conflicts with the stored data; retry or change it."),
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DataError):
        logger.warning("data error answered as 400: %s", exc)
        set_rollback()
        return Response(error_body("invalid", "A value is out of range or not storable."),
                        status=status.HTTP_400_BAD_REQUEST)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling (logged), answered by `server_error` below
    headers = {k: v for k, v in response.headers.items() if k.lower() in ("www-authenticate", "retry-after", "allow")}
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc.detail, headers)
    if isinstance(exc, Http404 | exceptions.NotFound):
        body = error_body("not_found", "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        body = error_body("permission_denied", "You do not have permission to perform this action.")
    elif isinstance(exc, exceptions.APIException):
        body = error_body(_code_of(exc), str(exc.detail))
    else:  # pragma: no cover - DRF handles only the classes above
        body = error_body("error", str(exc))
    return Response(body, status=response.status_code, headers=headers)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse | None:
    """A 404 in the error shape for paths under /api/ that match no route (None elsewhere)."""
    if not _is_api(request):
        return None
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def api_server_error(request: HttpRequest) -> JsonResponse | None:
    """A 500 in the error shape for paths under /api/ (None elsewhere)."""
    if not _is_api(request):
        return None
    return JsonResponse(error_body("server_error", "An unexpected error occurred; it has been logged."), status=500)
