"""Serializers of the webhook API. The signing secret is write-only: output says only that one is set."""

from __future__ import annotations

from rest_framework import serializers

from hooks.models import EventType, OutboundEvent, WebhookSubscription
from socialcrm.api.serializers import InputSerializer, StrictBooleanField, StrictCharField


class WebhookSubscriptionSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices), read_only=True)

    class Meta:
        model = WebhookSubscription
        fields = ["id", "name", "url", "event_types", "active", "failure_count", "disabled_reason", "created_at",
                  "updated_at"]
        read_only_fields = fields


class WebhookSubscriptionUpdateInputSerializer(InputSerializer):
    """The fields a PATCH may change, each optional. An omitted secret keeps the stored one."""

    name = StrictCharField(max_length=100, required=False)
    url = StrictCharField(max_length=2000, required=False,
                          help_text="http(s) URL that resolves to a public address; no credentials.")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices), required=False,
                                        allow_empty=False, max_length=len(EventType.values))
    secret = StrictCharField(min_length=16, max_length=200, required=False, write_only=True,
                             help_text="Key of the HMAC-SHA256 signature. Write-only.")
    active = StrictBooleanField(required=False, help_text="true re-enables a disabled subscription.")


class WebhookSubscriptionCreateInputSerializer(WebhookSubscriptionUpdateInputSerializer):
    name = StrictCharField(max_length=100)
    url = StrictCharField(max_length=2000, help_text="http(s) URL that resolves to a public address.")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=EventType.choices), allow_empty=False,
                                        max_length=len(EventType.values))
    secret = StrictCharField(min_length=16, max_length=200, write_only=True,
                             help_text="Key of the HMAC-SHA256 signature. Write-only.")


class OutboundEventSerializer(serializers.ModelSerializer):
    subscription_id = serializers.IntegerField(read_only=True)
    status_codes = serializers.ListField(child=serializers.IntegerField(), read_only=True,
                                         help_text="HTTP status of every attempt (0: no response).")

    class Meta:
        model = OutboundEvent
        fields = ["id", "subscription_id", "event_type", "event_id", "payload", "state", "attempts",
                  "last_status_code", "last_error", "status_codes", "created_at", "next_attempt_at", "delivered_at"]
        read_only_fields = fields
