"""Serializers of the conversations API."""

from __future__ import annotations

from rest_framework import serializers

from conversations.models import Conversation, ConversationNote, Interaction
from socialcrm.api.serializers import InputSerializer, StrictCharField, StrictIntegerField, TagField


class ConversationSerializer(serializers.ModelSerializer):
    channel_account_id = serializers.IntegerField(read_only=True)
    identity_id = serializers.IntegerField(read_only=True, allow_null=True)
    customer_id = serializers.IntegerField(read_only=True, allow_null=True,
                                           help_text="The customer of the identity the conversation is with.")
    assignee_id = serializers.IntegerField(read_only=True, allow_null=True)
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = Conversation
        fields = ["id", "channel_account_id", "thread_key", "identity_id", "customer_id", "status", "priority",
                  "assignee_id", "assigned_at", "tags", "first_inbound_at", "first_response_at", "last_activity_at",
                  "resolved_at", "created_at", "updated_at"]
        read_only_fields = fields


class InteractionSerializer(serializers.ModelSerializer):
    channel_account_id = serializers.IntegerField(read_only=True)
    conversation_id = serializers.IntegerField(read_only=True, allow_null=True)
    identity_id = serializers.IntegerField(read_only=True, allow_null=True)
    customer_id = serializers.IntegerField(read_only=True, allow_null=True)
    sent_by_id = serializers.IntegerField(read_only=True, allow_null=True)
    attachments = serializers.ListField(child=serializers.DictField(), read_only=True)

    class Meta:
        model = Interaction
        fields = ["id", "channel_account_id", "conversation_id", "identity_id", "customer_id", "direction", "kind",
                  "external_id", "text", "occurred_at", "received_at", "reply_to_external_id", "edited_at",
                  "deleted_at", "attachments", "delivery_state", "send_attempts", "send_error", "sent_by_id"]
        read_only_fields = fields


class ConversationNoteSerializer(serializers.ModelSerializer):
    conversation_id = serializers.IntegerField(read_only=True)
    author_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ConversationNote
        fields = ["id", "conversation_id", "author_id", "text", "created_at"]
        read_only_fields = fields


class ConversationAssignInputSerializer(InputSerializer):
    assignee_id = StrictIntegerField(min_value=1, max_value=2**31 - 1, allow_null=True,
                                           help_text="The user to assign; null unassigns.")


class ConversationStatusInputSerializer(InputSerializer):
    status = serializers.ChoiceField(choices=Conversation.Status.choices)


class ConversationNoteCreateInputSerializer(InputSerializer):
    text = StrictCharField(max_length=10000)


class ConversationTagInputSerializer(InputSerializer):
    tag = TagField()
