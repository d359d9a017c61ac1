from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from .models import ChannelAccount, WebhookDelivery
from .services import deliveries_replay

# What each platform's webhook secret holds (see the README's Channels section).
WEBHOOK_SECRET_KEYS = {
    "x": ["consumer_secret"],
    "facebook": ["app_secret", "verify_token"],
    "instagram": ["app_secret", "verify_token"],
    "whatsapp": ["app_secret", "verify_token"],
    "telegram": ["secret_token"],
    "mastodon": ["secret"],
    "email": ["signing_key"],
    "demo": [],
}


def _secret_object(value: object, field: str) -> dict:
    if value in (None, "", {}):
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise forms.ValidationError(f"{field} must be a JSON object of strings.")
    return value


class ChannelAccountForm(forms.ModelForm):
    """Secrets are write-only: the form never shows them, and an empty field keeps the stored value."""

    credentials = forms.JSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="JSON object of API tokens. Write-only: leave empty to keep the stored one.",
    )
    webhook_secret = forms.JSONField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="JSON object, by platform: " + "; ".join(
            f"{p}: {', '.join(keys)}" for p, keys in WEBHOOK_SECRET_KEYS.items() if keys
        ) + ". Write-only: leave empty to keep the stored one.",
    )

    class Meta:
        model = ChannelAccount
        fields = ["platform", "name", "external_id", "config", "enabled", "sync_interval"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The stored secrets, kept aside: the admin copies every form field onto the instance, so an empty
        # field would otherwise overwrite them.
        self._stored = {"credentials": self.instance.credentials, "webhook_secret": self.instance.webhook_secret}
        self.initial["credentials"] = None
        self.initial["webhook_secret"] = None

    def clean_credentials(self) -> dict:
        return _secret_object(self.cleaned_data.get("credentials"), "Credentials")

    def clean_webhook_secret(self) -> dict:
        secret = _secret_object(self.cleaned_data.get("webhook_secret"), "The webhook secret")
        platform = self.cleaned_data.get("platform") or getattr(self.instance, "platform", "")
        missing = [k for k in WEBHOOK_SECRET_KEYS.get(platform, []) if not secret.get(k)]
        if secret and missing:
            raise forms.ValidationError(f"A {platform} webhook secret needs {', '.join(missing)}.")
        return secret

    def save(self, commit: bool = True) -> ChannelAccount:
        account = super().save(commit=False)
        for name in ("credentials", "webhook_secret"):
            setattr(account, name, self.cleaned_data.get(name) or self._stored[name])
        if commit:
            account.save()
        return account


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    """Channel accounts with their health: last sync, last error, webhook backlog, paused until."""

    form = ChannelAccountForm
    list_display = ["name", "platform", "enabled", "health", "last_synced_at", "backlog", "failed_deliveries",
                    "paused_until", "last_error_at", "last_error_short", "secrets"]
    list_filter = ["platform", "enabled", "health"]
    readonly_fields = ["sync_cursor", "next_sync_at", "lease_until", "paused_until", "health", "last_synced_at",
                       "last_error", "last_error_at"]
    actions = ["enable", "disable", "replay_failed"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(
            pending=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.PENDING)),
            failed=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.FAILED)),
        )

    @admin.display(description="backlog", ordering="pending")
    def backlog(self, account: ChannelAccount) -> int:
        return account.pending

    @admin.display(description="failed deliveries", ordering="failed")
    def failed_deliveries(self, account: ChannelAccount) -> int:
        return account.failed

    @admin.display(description="last error")
    def last_error_short(self, account: ChannelAccount) -> str:
        return account.last_error[:120]

    @admin.display(description="secrets")
    def secrets(self, account: ChannelAccount) -> str:
        return ", ".join(
            f"{name} {'set' if value else 'missing'}"
            for name, value in (("credentials", account.credentials), ("webhook secret", account.webhook_secret))
        )

    @admin.action(description="Enable the selected channel accounts")
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.message_user(request, f"{queryset.update(enabled=True)} enabled")

    @admin.action(description="Disable the selected channel accounts (webhooks refused, no polling, no sending)")
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self.message_user(request, f"{queryset.update(enabled=False)} disabled")

    @admin.action(description="Replay the failed webhook deliveries of the selected accounts")
    def replay_failed(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(deliveries_replay(account_id=account.pk) for account in queryset)
        self.message_user(request, f"{count} deliveries queued for replay", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "channel_account", "received_at", "state", "attempts", "last_error"]
    list_filter = ["state", "channel_account__platform"]
    exclude = ["body"]
    readonly_fields = ["channel_account", "received_at", "headers", "state", "attempts", "last_error", "processed_at"]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Replay the selected deliveries (ingest is idempotent)")
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = deliveries_replay(delivery_ids=list(queryset.values_list("pk", flat=True)), include_processed=True)
        self.message_user(request, f"{count} deliveries queued for replay", messages.SUCCESS)
