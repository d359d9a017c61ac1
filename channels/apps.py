from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # The Python package is `channels`; the label stays "channels".
    name = "channels"
    verbose_name = "Channels"

    def ready(self) -> None:
        """Register this app's GDPR export and erase handlers with `contacts.gdpr`."""
        from contacts import gdpr as registry

        from . import gdpr

        registry.register("webhook_deliveries", models=["channels.WebhookDelivery"], export=gdpr.export,
                          erase=gdpr.erase)
