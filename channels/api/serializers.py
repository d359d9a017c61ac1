"""Serializers of the channels API. Secrets are write-only: no output serializer has them, only whether
they are set (`has_credentials`, `has_webhook_secret`)."""

from __future__ import annotations

from rest_framework import serializers

from channels.models import ChannelAccount, WebhookDelivery
from socialcrm.api.serializers import (
    InputSerializer,
    JSONObjectField,
    SecretObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
)


class ChannelAccountSerializer(serializers.ModelSerializer):
    has_credentials = serializers.BooleanField(read_only=True)
    has_webhook_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = ChannelAccount
        fields = ["id", "platform", "name", "external_id", "config", "enabled", "sync_interval", "health",
                  "has_credentials", "has_webhook_secret", "last_synced_at", "next_sync_at", "paused_until",
                  "last_error", "last_error_at", "created_at", "updated_at"]
        read_only_fields = fields


class ChannelAccountUpdateInputSerializer(InputSerializer):
    """The fields a PATCH may change, each optional. Omitted secrets keep their stored value; the platform
    is fixed when the account is created."""

    name = StrictCharField(max_length=255, required=False)
    external_id = StrictCharField(max_length=255, required=False, allow_blank=True,
                                  help_text="The account's own id on the platform.")
    config = JSONObjectField(required=False, help_text="Settings that are not secret.")
    credentials = SecretObjectField(required=False, allow_null=True,
                                    help_text="JSON object of API tokens. Write-only; null removes them.")
    webhook_secret = SecretObjectField(
        required=False, allow_null=True,
        help_text="JSON object with the platform's keys (see the README). Write-only; null removes it.",
    )
    enabled = StrictBooleanField(required=False)
    sync_interval = StrictIntegerField(min_value=10, max_value=86400, required=False,
                                       help_text="Seconds between polls.")


class ChannelAccountCreateInputSerializer(ChannelAccountUpdateInputSerializer):
    platform = serializers.ChoiceField(choices=ChannelAccount.Platform.choices)
    name = StrictCharField(max_length=255)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    channel_account_id = serializers.IntegerField(read_only=True)
    body_size = serializers.IntegerField(read_only=True, help_text="Bytes of the stored body.")

    class Meta:
        model = WebhookDelivery
        fields = ["id", "channel_account_id", "received_at", "state", "attempts", "last_error", "processed_at",
                  "body_size"]
        read_only_fields = fields


class WebhookDeliveryReplayInputSerializer(InputSerializer):
    channel_account_id = StrictIntegerField(min_value=1, max_value=2**63 - 1)
    include_processed = StrictBooleanField(default=False,
                                                 help_text="Replay processed deliveries too, not only failed ones.")


class ReplayResultSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Deliveries put back in the queue.")


class ReplyCreateInputSerializer(InputSerializer):
    text = StrictCharField(max_length=10000, help_text="The reply; platforms limit its length further.")
    private = StrictBooleanField(
        required=False, allow_null=True, default=None,
        help_text="Answer privately (direct message); default: privately when the customer last wrote one.",
    )
