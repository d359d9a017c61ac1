"""How drf-spectacular documents the token authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "access.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "scrm_<prefix>_<secret>",
            "description": "An API token from `manage.py create_api_token` or the admin, sent as "
            "`Authorization: Bearer <token>`. Each token carries scopes: read, write, merge, gdpr, admin.",
        }
