"""Serializers of the contacts API: output `<Model>Serializer`s, input `<Model><Action>InputSerializer`s."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contacts.merge import SCALAR_FIELDS, ContactPointOutcome, Rule
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.verification import EVIDENCE_ITEMS
from socialcrm.api.filters import MAX_ID
from socialcrm.api.serializers import InputSerializer, StrictCharField, StrictIntegerField, TagField


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


# --- identity resolution and GDPR ------------------------------------------------------------------------------

SIDES = [("target", "target"), ("source", "source")]
REASON_MAX_LENGTH = 2000


def _reason_field(*, required: bool = False) -> StrictCharField:
    if required:
        return StrictCharField(max_length=REASON_MAX_LENGTH, help_text="Why; recorded in the audit log.")
    return StrictCharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True, default="",
                           help_text="Why; recorded in the audit log.")


class AuditEventSerializer(serializers.ModelSerializer):
    """One entry of the append-only audit log. `moved` holds what the event moved and the values before and
    after (its layout per kind is documented with the merge service); erased values read `[erased]`."""

    actor_id = serializers.IntegerField(read_only=True, allow_null=True,
                                        help_text="The user who acted; null for a rule or model (see actor_label).")
    customer_id = serializers.IntegerField(read_only=True, help_text="Where things went (a merge's target).")
    source_customer_id = serializers.IntegerField(read_only=True, allow_null=True,
                                                  help_text="Where things came from (a merge's source).")
    undone_by_id = serializers.IntegerField(read_only=True, allow_null=True,
                                            help_text="On a merge: the unmerge event that undid it.")
    moved = serializers.JSONField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "kind", "actor_id", "actor_label", "reason", "customer_id", "source_customer_id", "moved",
                  "created_at", "undone_by_id"]
        read_only_fields = fields


class MergeFieldPlanSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=list(SCALAR_FIELDS) + ["tags", "notes"], read_only=True)
    target = serializers.JSONField(read_only=True, help_text="The target's value.")
    source = serializers.JSONField(read_only=True, help_text="The source's value.")
    result = serializers.JSONField(read_only=True, help_text="The target's value after the merge.")
    rule = serializers.ChoiceField(choices=[r.value for r in Rule], read_only=True)
    rule_description = serializers.CharField(read_only=True, source="rule.description")
    conflict = serializers.BooleanField(read_only=True, help_text="True if a choice is needed before merging.")


class MergeContactPointPlanSerializer(serializers.Serializer):
    kind = serializers.CharField(read_only=True)
    value = serializers.CharField(read_only=True)
    outcome = serializers.ChoiceField(choices=[o.value for o in ContactPointOutcome], read_only=True)
    target_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="The target's row, if any.")
    source_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="The source's row, if any.")
    verified_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="After the merge.")


class MergePreviewSerializer(serializers.Serializer):
    """What merging `source_id` into `target_id` would do; nothing is written."""

    target_id = serializers.IntegerField(read_only=True)
    source_id = serializers.IntegerField(read_only=True)
    can_merge = serializers.BooleanField(read_only=True, help_text="False while `conflicts` is not empty.")
    conflicts = serializers.ListField(child=serializers.CharField(), read_only=True,
                                      help_text="Fields that need a choice (`choices`) before merging.")
    fields = MergeFieldPlanSerializer(many=True, read_only=True)
    contact_points = MergeContactPointPlanSerializer(many=True, read_only=True)
    identity_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True,
                                         help_text="The source's identities, which would move to the target.")
    target_identity_ids = serializers.ListField(child=serializers.IntegerField(), read_only=True)


class MergePreviewQuerySerializer(serializers.Serializer):
    source = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="The customer to merge in.")


@extend_schema_field({
    "type": "object",
    "description": "Which customer's value to keep, per field (needed where the customer numbers differ).",
    "properties": {name: {"type": "string", "enum": [value for value, _ in SIDES]} for name in SCALAR_FIELDS},
    "additionalProperties": False,
})
class MergeChoicesField(serializers.DictField):
    """{field: "target" | "source"} for the merge's scalar fields; other keys are refused, naming them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.ChoiceField(choices=SIDES), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(SCALAR_FIELDS))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class CustomerMergeInputSerializer(InputSerializer):
    source = StrictIntegerField(min_value=1, max_value=MAX_ID,
                                help_text="The customer merged into this one; it becomes a tombstone.")
    reason = _reason_field()
    choices = MergeChoicesField(required=False)


class MergeUndoInputSerializer(InputSerializer):
    reason = _reason_field()


class IdentityLinkInputSerializer(InputSerializer):
    customer = StrictIntegerField(min_value=1, max_value=MAX_ID, help_text="The customer the identity moves to.")
    reason = _reason_field()


class IdentityUnlinkInputSerializer(InputSerializer):
    reason = _reason_field()


_NO_CONTROL_CHARACTERS = RegexValidator(r"^[^\x00-\x1f\x7f]*$", "Must not contain control characters.")


class IdentityVerifyCustomerNumberInputSerializer(InputSerializer):
    """The customer number a person gave in DM, and the details they gave to prove it is theirs."""

    customer_number = StrictCharField(max_length=64, validators=[_NO_CONTROL_CHARACTERS],
                                      help_text="As the customer gave it; spaces and dashes are ignored.")
    postal_code = StrictCharField(max_length=16, required=False,
                                  validators=[RegexValidator(r"^[0-9A-Za-z][0-9A-Za-z -]*$",
                                                             "Letters, digits, spaces and dashes only.")],
                                  help_text="Must occur in the customer's postal address.")
    birth_date = serializers.DateField(required=False, help_text="Must equal the customer's birth date.")
    last_name = StrictCharField(max_length=255, required=False, validators=[_NO_CONTROL_CHARACTERS],
                                help_text="Compared with the last word of the customer's name, ignoring case and "
                                "accents. Never enough on its own.")
    reason = _reason_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not any(attrs.get(name) for name in EVIDENCE_ITEMS):
            raise serializers.ValidationError(
                {"postal_code": ["Give at least one of postal_code, birth_date, last_name: what the customer "
                                 "told you in DM (a last name alone is not enough)."]})
        return attrs


class CustomerNumberLinkSerializer(serializers.Serializer):
    """The outcome of a customer number verification."""

    identity_id = serializers.IntegerField(read_only=True)
    customer_id = serializers.IntegerField(read_only=True, help_text="The customer holding the number.")
    changed = serializers.BooleanField(read_only=True,
                                       help_text="False if the identity already belonged to that customer.")
    merged = serializers.BooleanField(read_only=True, help_text="True if the identity's former customer (which "
                                      "had only this identity) was merged into the customer; undo the merge "
                                      "(`move_event`) to reverse it.")
    event = AuditEventSerializer(read_only=True, allow_null=True,
                                 help_text="The `link` event recording the verification (null if unchanged).")
    move_event = AuditEventSerializer(read_only=True, allow_null=True,
                                      help_text="The merge or link event that moved the identity.")


class CustomerEraseInputSerializer(InputSerializer):
    reason = _reason_field(required=True)


class CustomerExportSerializer(serializers.Serializer):
    """Everything held about the person; apps add further sections (lists of rows) beside these."""

    format = serializers.CharField(read_only=True, help_text="`socialcrm.gdpr.export/1`.")
    exported_at = serializers.DateTimeField(read_only=True)
    customer_id = serializers.IntegerField(read_only=True, help_text="The live customer (tombstones resolve).")
    customers = serializers.ListField(child=serializers.DictField(), read_only=True,
                                      help_text="The customer and every tombstone merged into it.")
    identities = serializers.ListField(child=serializers.DictField(), read_only=True)
    contact_points = serializers.ListField(child=serializers.DictField(), read_only=True)
    audit_events = serializers.ListField(child=serializers.DictField(), read_only=True)


# --- duplicate suggestions -------------------------------------------------------------------------------------


class SuggestionEvidenceSerializer(serializers.Serializer):
    """One comparison of the pair, as stored (`contacts.dedupe.FieldEvidence`)."""

    field = serializers.CharField(read_only=True, help_text="What was compared (e.g. `email`, `name_handle`).")
    level = serializers.CharField(read_only=True, help_text="How well it agreed; `missing` when a side lacks it.")
    bits = serializers.FloatField(read_only=True, help_text="Its weight in bits (negative: against the pair).")
    left = serializers.CharField(read_only=True, help_text="One customer's value (the customer scored).")
    right = serializers.CharField(read_only=True, help_text="The other customer's value (the candidate).")
    note = serializers.CharField(read_only=True, help_text="Further detail; may be empty.")


@extend_schema_field({
    # Wrapped in allOf so that the enum stays inline: a property named `status` with another set of choices
    # exists elsewhere (conversations), and a shared enum component name would collide.
    "allOf": [{"type": "string", "enum": list(DuplicateSuggestion.Status.values)}],
    "description": "`open` until someone decides; `accepted` (merged), `rejected` (kept apart for good) or "
    "`auto_linked` (merged by the model).",
})
class SuggestionStatusField(serializers.CharField):
    """The suggestion's status, documented as an inline enum."""


class DuplicateSuggestionSerializer(serializers.ModelSerializer):
    """Two customers that may be one person, with the model's score and its evidence field by field."""

    customer_low_id = serializers.IntegerField(read_only=True, source="customer_low",
                                               help_text="The customer with the lower id.")
    customer_low_display_name = serializers.CharField(read_only=True, allow_null=True,
                                                      help_text="Null once the customer was erased.")
    customer_high_id = serializers.IntegerField(read_only=True, source="customer_high",
                                                help_text="The customer with the higher id.")
    customer_high_display_name = serializers.CharField(read_only=True, allow_null=True,
                                                       help_text="Null once the customer was erased.")
    score = serializers.FloatField(read_only=True, help_text="Match weight in bits: the sum of the evidence.")
    probability = serializers.FloatField(read_only=True, help_text="The model's probability of one person.")
    status = SuggestionStatusField(read_only=True)
    explanation = SuggestionEvidenceSerializer(many=True, read_only=True,
                                               help_text="The evidence, field by field, in the model's order.")
    decided_by_id = serializers.IntegerField(read_only=True, allow_null=True,
                                             help_text="The user who accepted or rejected it; null for a model.")

    class Meta:
        model = DuplicateSuggestion
        fields = ["id", "customer_low_id", "customer_low_display_name", "customer_high_id",
                  "customer_high_display_name", "score", "probability", "model_version", "status", "explanation",
                  "created_at", "updated_at", "decided_at", "decided_by_id", "decided_by_label", "reason"]
        read_only_fields = fields


class SuggestionAcceptInputSerializer(InputSerializer):
    reason = _reason_field()


class SuggestionRejectInputSerializer(InputSerializer):
    reason = _reason_field(required=True)
