from django import forms
from django.contrib import admin

from .models import ChannelAccount, WebhookDelivery


class ChannelAccountForm(forms.ModelForm):
    """Secrets are write-only: the form never shows them, and an empty field keeps the stored value."""

    credentials = forms.JSONField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                  help_text="JSON object of tokens. Write-only: leave empty to keep the stored one.")
    webhook_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                     help_text="Write-only: leave empty to keep the stored one.")

    class Meta:
        model = ChannelAccount
        fields = ["platform", "name", "external_id", "config", "enabled", "sync_interval"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial["credentials"] = None

    def save(self, commit: bool = True) -> ChannelAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("credentials"):
            account.credentials = self.cleaned_data["credentials"]
        if self.cleaned_data.get("webhook_secret"):
            account.webhook_secret = self.cleaned_data["webhook_secret"]
        if commit:
            account.save()
        return account


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    form = ChannelAccountForm
    list_display = ["name", "platform", "enabled", "health", "last_synced_at", "paused_until", "last_error_at"]
    list_filter = ["platform", "enabled", "health"]
    readonly_fields = ["sync_cursor", "next_sync_at", "lease_until", "paused_until", "health", "last_synced_at",
                       "last_error", "last_error_at"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel_account", "received_at", "state", "attempts", "last_error"]
    list_filter = ["state"]
    exclude = ["body"]
    readonly_fields = ["channel_account", "received_at", "headers", "state", "attempts", "last_error", "processed_at"]

    def has_add_permission(self, request) -> bool:
        return False
