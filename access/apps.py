from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccessConfig(AppConfig):
    """API tokens, teams, the console's groups and the visibility rule every API view and console page applies."""

    name = "access"
    verbose_name = "Access"

    def ready(self) -> None:
        # Registers the token authentication with drf-spectacular (an import for its side effect).
        from . import schema  # noqa: F401
        from .services import groups_ensure

        # After every migrate (and every test database flush), once the permissions exist.
        post_migrate.connect(groups_ensure, dispatch_uid="access.groups_ensure")
