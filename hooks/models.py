"""Outbound webhook subscriptions and the log of events delivered to them (the database is the queue)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from socialcrm.crypto import EncryptedJSONField
from socialcrm.models import TimeStampedModel


class EventType(models.TextChoices):
    """The domain events another system can subscribe to."""

    INTERACTION_CREATED = "interaction.created", "Interactions created (one event per ingest batch)"
    INTERACTION_UPDATED = "interaction.updated", "Interactions updated"
    CONVERSATION_STATUS_CHANGED = "conversation.status_changed", "Conversation status changed"
    CUSTOMER_CREATED = "customer.created", "Customer created"
    CUSTOMER_MERGED = "customer.merged", "Customers merged"
    CUSTOMER_UNMERGED = "customer.unmerged", "Merge undone"
    CUSTOMER_ERASED = "customer.erased", "Customer erased (GDPR; ids only)"
    PING = "ping", "Test event"


class WebhookSubscription(TimeStampedModel):
    """A target URL that receives the events it subscribed to, signed with its own secret.

    `secret` holds `{"key": "..."}` encrypted at rest and is never returned by the API. After
    `hooks.services.MAX_CONSECUTIVE_FAILURES` failed attempts in a row the subscription is disabled
    (`active` false, `disabled_reason` set); a successful delivery resets `failure_count`.
    """

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=2000)
    event_types = ArrayField(models.CharField(max_length=64, choices=EventType.choices), default=list)
    secret = EncryptedJSONField()
    active = models.BooleanField(default=True)
    failure_count = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        verbose_name = "webhook subscription"
        constraints = [
            models.CheckConstraint(condition=models.Q(event_types__contained_by=EventType.values),
                                   name="webhooksubscription_known_event_types"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


class OutboundEvent(models.Model):
    """One event for one subscription, and the state of its delivery (the delivery log)."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    event_id = models.UUIDField(default=uuid.uuid4, help_text="The event's id; the same for every subscription.")
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    status_codes = ArrayField(models.IntegerField(), default=list, blank=True,
                              help_text="HTTP status of every attempt in order (0: no response).")
    created_at = models.DateTimeField(auto_now_add=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook delivery"
        indexes = [
            models.Index(fields=["subscription", "-id"], name="hooks_event_sub_id"),
            models.Index(fields=["next_attempt_at"], condition=models.Q(state="pending"), name="hooks_event_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> subscription {self.subscription_id} ({self.state})"
