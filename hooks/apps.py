from django.apps import AppConfig


class HooksConfig(AppConfig):
    """Outbound webhooks: subscriptions of other systems to domain events, signed deliveries and their log."""

    name = "hooks"
    verbose_name = "Outbound webhooks"

    def ready(self) -> None:
        """Subscribe to the event bus of `socialcrm.events`."""
        from socialcrm import events

        from . import services

        events.subscribe(services.on_event)
