from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        """Register this app's GDPR export and erase handlers with `contacts.gdpr`, and its group co-presence
        lookup (contrary duplicate evidence) with `contacts.copresence`."""
        from contacts import copresence
        from contacts import gdpr as registry

        from . import gdpr, selectors

        copresence.register_copresence(selectors.copresent_customer_pairs)

        registry.register(
            "conversations",
            models=["conversations.Conversation", "conversations.Interaction", "conversations.ConversationNote",
                    "conversations.ConversationTag"],
            export=gdpr.export, erase=gdpr.erase,
        )
