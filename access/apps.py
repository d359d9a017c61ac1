from django.apps import AppConfig


class AccessConfig(AppConfig):
    """API tokens, teams and the visibility rule every API view applies."""

    name = "access"
    verbose_name = "Access"

    def ready(self) -> None:
        # Registers the token authentication with drf-spectacular (an import for its side effect).
        from . import schema  # noqa: F401
