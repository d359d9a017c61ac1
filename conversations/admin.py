from django.contrib import admin

from .models import CannedResponse, Conversation, Interaction


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "channel_account", "thread_key", "status", "assignee", "last_activity_at"]
    list_filter = ["status", "channel_account"]
    raw_id_fields = ["identity", "assignee"]


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ["id", "channel_account", "kind", "direction", "external_id", "occurred_at", "deleted_at"]
    list_filter = ["kind", "direction"]
    raw_id_fields = ["conversation", "identity"]
    show_full_result_count = False


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ["title", "shortcut", "updated_at"]
    search_fields = ["title", "shortcut", "text"]
