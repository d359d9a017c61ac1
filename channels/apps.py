from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    # The Python package is `channels`; the label stays "channels".
    name = "channels"
    verbose_name = "Channels"
