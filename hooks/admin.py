"""Admin of outbound webhooks: read-mostly; the secret is never shown."""

from django.contrib import admin

from .models import OutboundEvent, WebhookSubscription


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "url", "active", "failure_count", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    exclude = ["secret"]
    readonly_fields = ["url", "failure_count", "disabled_reason", "created_by", "created_at", "updated_at"]

    def has_add_permission(self, request: object) -> bool:
        return False  # created through the API, which checks the URL and takes the secret


@admin.register(OutboundEvent)
class OutboundEventAdmin(admin.ModelAdmin):
    list_display = ["id", "subscription", "event_type", "state", "attempts", "last_status_code", "created_at"]
    list_filter = ["state", "event_type"]
    search_fields = ["event_id"]
    readonly_fields = [f.name for f in OutboundEvent._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False
