"""The base of every error a service raises on purpose, mapped to an HTTP status by the API layer."""

from __future__ import annotations


class ServiceError(Exception):
    """A rule of the domain refused the request. `code` is stable; `field` names the input at fault."""

    status_code = 400

    def __init__(self, detail: str, *, code: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409
