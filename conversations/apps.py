from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        """Register this app's GDPR export and erase handlers with `contacts.gdpr`."""
        from contacts import gdpr as registry

        from . import gdpr

        registry.register(
            "conversations",
            models=["conversations.Conversation", "conversations.Interaction", "conversations.ConversationNote",
                    "conversations.ConversationTag"],
            export=gdpr.export, erase=gdpr.erase,
        )
