"""Channel accounts (the brand accounts we serve) and the raw webhook deliveries they receive."""

from django.db import models
from django.db.models import Q

from socialcrm.crypto import EncryptedJSONField
from socialcrm.models import TimeStampedModel


class ChannelAccount(TimeStampedModel):
    """One brand account on one platform: an X account, a Facebook page, a Telegram bot, ...

    `credentials` and `webhook_secret` are encrypted at rest and never leave the server. `sync_cursor`
    is the platform's position in the account's stream; it advances only in the transaction that stored
    the page it came with. `lease_until` keeps two sync runs of one account apart without holding a
    transaction across network calls.
    """

    class Platform(models.TextChoices):
        X = "x", "X"
        FACEBOOK = "facebook", "Facebook"
        INSTAGRAM = "instagram", "Instagram"
        WHATSAPP = "whatsapp", "WhatsApp"
        TELEGRAM = "telegram", "Telegram"
        MASTODON = "mastodon", "Mastodon"
        EMAIL = "email", "E-mail"
        DEMO = "demo", "Demo (recorded payloads)"

    class Health(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        OK = "ok", "OK"
        DEGRADED = "degraded", "Degraded"
        FAILING = "failing", "Failing"

    platform = models.CharField(max_length=32, choices=Platform.choices)
    name = models.CharField(max_length=255)
    # The account's own id on the platform: page id, bot id, phone number id, instance host, mailbox.
    external_id = models.CharField(max_length=255, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="Settings that are not secret.")
    credentials = EncryptedJSONField(null=True, blank=True)
    webhook_secret = EncryptedJSONField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    sync_cursor = models.JSONField(default=dict, blank=True)
    sync_interval = models.PositiveIntegerField(default=60, help_text="Seconds between polls.")
    next_sync_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=64, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True, help_text="Rate-limited until then.")
    health = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "external_id"], name="channelaccount_unique_external",
                condition=~Q(external_id=""),
            ),
        ]
        indexes = [models.Index(fields=["next_sync_at"], name="channelaccount_due_idx", condition=Q(enabled=True))]

    def __str__(self) -> str:
        return f"{self.get_platform_display()}: {self.name}"


class WebhookDelivery(models.Model):
    """A webhook request exactly as received, stored before any parsing; the queue of record for ingest."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        FAILED = "failed", "Failed"

    # No constraint in the database: its check takes a share lock on the account row for every stored delivery,
    # which all deliveries of an account contend for (a fifth of intake's database time). Deleting an account
    # still deletes its deliveries (Django cascades); one stored in that same instant is failed by the drain.
    # No index of its own: delivery_account_idx starts with it.
    channel_account = models.ForeignKey(ChannelAccount, on_delete=models.CASCADE, related_name="deliveries",
                                        db_constraint=False, db_index=False)
    received_at = models.DateTimeField()
    headers = models.JSONField(default=dict)
    body = models.BinaryField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["received_at", "id"], name="delivery_pending_idx", condition=Q(state="pending")),
            models.Index(fields=["channel_account", "-received_at"], name="delivery_account_idx"),
            # The console's channel health page lists each account's latest failures: a handful of rows among
            # millions of processed ones.
            models.Index(fields=["channel_account", "-received_at", "-id"], name="delivery_failed_idx",
                         condition=Q(state="failed")),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.pk} ({self.state})"
