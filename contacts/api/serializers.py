"""Serializers of the contacts API: output `<Model>Serializer`s, input `<Model><Action>InputSerializer`s."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework import serializers

from contacts.models import ContactPoint, Customer, SocialIdentity
from socialcrm.api.serializers import InputSerializer, StrictCharField, TagField


class ContactPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactPoint
        fields = ["id", "kind", "value", "verified_at"]
        read_only_fields = fields


class IdentityBriefSerializer(serializers.ModelSerializer):
    """An identity as part of its customer."""

    profile_url = serializers.CharField(read_only=True, help_text="Link to the profile; may be empty.")
    avatar_url = serializers.CharField(read_only=True, help_text="Link to the avatar; may be empty.")

    class Meta:
        model = SocialIdentity
        fields = ["id", "platform", "scope", "external_id", "handle", "display_name", "profile_url", "avatar_url"]
        read_only_fields = fields


class CustomerSerializer(serializers.ModelSerializer):
    merged_into_id = serializers.IntegerField(read_only=True, allow_null=True,
                                              help_text="Set on a tombstone: the customer it was merged into.")
    identities = IdentityBriefSerializer(many=True, read_only=True)
    contact_points = ContactPointSerializer(many=True, read_only=True)

    class Meta:
        model = Customer
        fields = ["id", "display_name", "language", "customer_number", "postal_address", "birth_date", "tags",
                  "notes", "merged_into_id", "identities", "contact_points", "created_at", "updated_at"]
        read_only_fields = fields


class SocialIdentitySerializer(serializers.ModelSerializer):
    customer_id = serializers.IntegerField(read_only=True)
    profile_url = serializers.CharField(read_only=True, help_text="Link to the profile; may be empty.")
    avatar_url = serializers.CharField(read_only=True, help_text="Link to the avatar; may be empty.")

    class Meta:
        model = SocialIdentity
        fields = ["id", "customer_id", "platform", "scope", "external_id", "handle", "display_name", "profile_url",
                  "avatar_url", "first_seen_at", "last_seen_at"]
        read_only_fields = fields


class CustomerCreateInputSerializer(InputSerializer):
    display_name = StrictCharField(max_length=255, required=False, allow_blank=True)
    language = StrictCharField(max_length=16, required=False, allow_blank=True)
    customer_number = StrictCharField(max_length=64, required=False, allow_blank=True)
    postal_address = StrictCharField(max_length=2000, required=False, allow_blank=True)
    birth_date = serializers.DateField(required=False, allow_null=True)
    tags = serializers.ListField(child=TagField(), required=False, max_length=50)
    notes = StrictCharField(max_length=20000, required=False, allow_blank=True)

    def validate_birth_date(self, value: dt.date | None) -> dt.date | None:
        if value is not None and not dt.date(1900, 1, 1) <= value <= timezone.localdate():
            raise serializers.ValidationError("Must be a date between 1900-01-01 and today.")
        return value

    def validate_tags(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class CustomerUpdateInputSerializer(CustomerCreateInputSerializer):
    """The same fields, each optional (PATCH)."""
