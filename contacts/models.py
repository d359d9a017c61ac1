"""Customers (one profile per person) and the social identities that belong to them."""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from socialcrm.models import TimeStampedModel


class Customer(TimeStampedModel):
    """One person, across every network. A merged-away customer stays as a tombstone with `merged_into`."""

    display_name = models.CharField(max_length=255, blank=True)
    postal_address = models.TextField(blank=True)
    birth_date = models.DateField(null=True, blank=True)
    language = models.CharField(max_length=16, blank=True)
    # The customer number in the company's main CRM / billing system.
    customer_number = models.CharField(max_length=64, blank=True)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    notes = models.TextField(blank=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from", db_index=False
    )

    class Meta:
        indexes = [
            models.Index(fields=["customer_number"], name="customer_number_idx", condition=~Q(customer_number="")),
            models.Index(fields=["-updated_at", "-id"], name="customer_updated_idx"),
            # Only tombstones point anywhere; live customers (nearly all rows) stay out of this index.
            models.Index(fields=["merged_into"], name="customer_merged_into_idx",
                         condition=Q(merged_into__isnull=False)),
        ]

    def __str__(self) -> str:
        return self.display_name or f"Customer {self.pk}"

    @property
    def is_tombstone(self) -> bool:
        return self.merged_into_id is not None


class ContactPoint(TimeStampedModel):
    """An e-mail address, phone number or profile link of a customer, with how (and whether) it was verified."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        URL = "url", "Profile link"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contact_points")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=320)
    # Lower-cased e-mail, E.164 phone, canonical URL: what lookups and duplicate blocking use.
    normalized = models.CharField(max_length=320)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "kind", "normalized"], name="contactpoint_unique_per_customer"),
        ]
        indexes = [models.Index(fields=["kind", "normalized"], name="contactpoint_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.value}"


class SocialIdentity(models.Model):
    """One account on one network, belonging to one customer.

    Unique on (platform, scope, external_id): `scope` is set where the platform's user ids are not
    global (a Messenger page id, a Mastodon instance, a WhatsApp business number) and empty otherwise.
    Conversations and interactions point at identities, never at customers, so moving an identity to
    another customer moves its whole history with it.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="identities")
    platform = models.CharField(max_length=32)
    scope = models.CharField(max_length=255, blank=True, default="")
    external_id = models.CharField(max_length=255)
    handle = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=255, blank=True)
    avatar_url = models.URLField(max_length=2048, blank=True)
    profile_url = models.URLField(max_length=2048, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    raw_profile = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "social identities"
        constraints = [
            models.UniqueConstraint(fields=["platform", "scope", "external_id"], name="identity_unique_key"),
        ]
        indexes = [
            models.Index(fields=["platform", "handle"], name="identity_handle_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.handle or self.external_id}"
