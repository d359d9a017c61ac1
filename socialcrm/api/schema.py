"""OpenAPI schema generation (drf-spectacular): every operation also documents its error answers.

Errors share one component, `Error` (see `errors.py`); each operation lists the statuses it can answer
with it, so clients (and schemathesis) know the shape of every response the API gives.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "detail", "fields"],
    "properties": {
        "code": {"type": "string", "description": "Stable, machine-readable error code."},
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "fields": {
            "type": "object",
            "description": "Messages per input at fault (`parent.child` for nested inputs); empty otherwise.",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}

_DESCRIPTIONS = {
    "400": "Bad input; `fields` names the inputs at fault.",
    "401": "No credentials, or a token that is unknown, revoked or expired.",
    "403": "The token lacks the scope this needs.",
    "404": "No such object, or not one the caller may see.",
    "409": "Conflicts with the stored state (the `code` says how).",
    "415": "The body is not JSON.",
    "429": "Too many requests for this token; retry after `Retry-After` seconds.",
}


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's AutoSchema plus the error responses of each operation."""

    def _error_statuses(self) -> list[str]:
        statuses = ["400"]
        public = all(issubclass(p, AllowAny) for p in getattr(self.view, "permission_classes", []))
        if not public:
            statuses += ["401", "403"]
        if "{" in self.path:
            statuses.append("404")
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            statuses.append("409")
        if self.method in ("POST", "PUT", "PATCH"):
            statuses.append("415")
        if getattr(self.view, "throttle_classes", None):
            statuses.append("429")
        return statuses

    def _get_response_bodies(self, direction: str = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        component = ResolvedComponent(name="Error", type=ResolvedComponent.SCHEMA, schema=ERROR_SCHEMA,
                                      object="socialcrm.api.Error")
        self.registry.register_on_missing(component)
        for status in self._error_statuses():
            responses.setdefault(status, {
                "description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": component.ref}},
            })
        return responses


def strict_request_bodies(result: dict, generator: object, request: object, public: bool) -> dict:
    """drf-spectacular postprocessing hook: request bodies admit no properties they do not declare.

    The input serializers refuse unknown fields (a 400 naming them); the schema says so.
    """
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and schema.get("type") == "object" and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    return result


def integer_path_ids(result: dict, generator: object, request: object, public: bool) -> dict:
    """drf-spectacular postprocessing hook: ids in paths are integers of at most 18 digits (what the routes
    accept, so every id that reaches the database fits in a bigint)."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                name = parameter.get("name", "")
                if parameter.get("in") == "path" and (name == "id" or name.endswith("_pk")):
                    parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
    return result
