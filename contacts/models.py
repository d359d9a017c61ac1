"""Customers (one profile per person) and the social identities that belong to them."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Lower, Now, Right

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
    # Blocking keys of duplicate suggestions (contacts.dedupe.name_keys): name tokens `n:...`, Kölner codes `k:...`.
    # A database default too: ingest inserts customers with hand-written SQL that does not name this column.
    dedupe_keys = ArrayField(models.CharField(max_length=64), default=list, blank=True,
                             db_default=Value([], output_field=ArrayField(models.CharField(max_length=64))))
    # GDPR: a non-empty reason blocks erasure (`contacts.gdpr.customer_erase`) of this customer and of every
    # customer merged into it. A database default too, for the same reason as `dedupe_keys`.
    legal_hold_reason = models.TextField(blank=True, default="", db_default="")
    # Search (`contacts.search`): the names, handles and e-mail addresses of the customer and its identities in one
    # upper-cased string, kept up to date by the writes of those values. A database default too, for the same
    # reason as `dedupe_keys`.
    search_text = models.TextField(blank=True, default="", db_default="", editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["customer_number"], name="customer_number_idx", condition=~Q(customer_number="")),
            GinIndex(fields=["dedupe_keys"], name="customer_dedupe_keys_idx"),
            models.Index(fields=["-updated_at", "-id"], name="customer_updated_idx"),
            # Only tombstones point anywhere; live customers (nearly all rows) stay out of this index.
            models.Index(fields=["merged_into"], name="customer_merged_into_idx",
                         condition=Q(merged_into__isnull=False)),
            # Search (`contacts.api.selectors.customers_search`): trigrams of the search text, so "%FRAGMENT%" over
            # every name, handle and e-mail address of a customer is one index scan, not a scan of every row.
            GinIndex(OpClass("search_text", name="gin_trgm_ops"), name="customer_search_trgm_idx"),
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
        indexes = [
            models.Index(fields=["kind", "normalized"], name="contactpoint_lookup_idx"),
            # Duplicate blocking (contacts.dedupe): an e-mail's local part without +tag, a phone's last 8 digits.
            models.Index(
                Func(Func(F("normalized"), Value("@"), Value(1), function="split_part",
                          output_field=models.TextField()),
                     Value("+"), Value(1), function="split_part", output_field=models.TextField()),
                name="contactpoint_email_local_idx", condition=Q(kind="email"),
            ),
            models.Index(Right("normalized", 8), name="contactpoint_phone_last8_idx", condition=Q(kind="phone")),
            # Search: phone number endings (e-mail fragments are searched in `Customer.search_text`).
            GinIndex(OpClass("normalized", name="gin_trgm_ops"), name="contactpoint_trgm_idx"),
        ]

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
            # Duplicate blocking across platforms: contacts.dedupe.canonical_handle / HANDLE_KEY_SQL.
            models.Index(
                Func(Func(Func(Lower(Func(F("handle"), function="btrim")), Value("@"), function="ltrim"),
                          Value("@"), Value(1), function="split_part", output_field=models.TextField()),
                     Value("@._-"), Value(""), function="translate", output_field=models.TextField()),
                name="identity_handle_key_idx", condition=~Q(handle=""),
            ),
            # Search (`contacts.api.selectors.customers_search`): a platform user id given whole (the unique key
            # starts with platform). Names and handles are searched in `Customer.search_text`.
            models.Index(fields=["external_id"], name="identity_external_id_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.handle or self.external_id}"


class AuditLogIsAppendOnly(RuntimeError):
    """Raised on any attempt to change or delete a recorded audit event."""


class AuditEventQuerySet(models.QuerySet):
    """Audit events are written once. The one change allowed is marking a merge as undone (`mark_undone`)."""

    def update(self, **kwargs: object) -> int:
        raise AuditLogIsAppendOnly("audit events cannot be updated")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events cannot be deleted")

    def mark_undone(self, *, by: "AuditEvent") -> int:
        """Point the not-yet-undone events of this queryset at the event that undid them; returns how many."""
        return models.QuerySet.update(self.filter(undone_by__isnull=True), undone_by=by)

    def scrub_for_erasure(self) -> int:
        """Replace the personal values held in `moved` of these events, keeping the event skeleton.

        The one other change allowed, for a GDPR erasure only (`contacts.gdpr.customer_erase`): every string in
        `moved` becomes `ERASED` (empty strings stay empty), except the merge `rules` and the field names under
        `kept`, which name fields, not values; keys, ids, numbers and booleans stay, so the log still says
        which rows moved when. Kind, actor, reason, customers and times are untouched. Returns how many events
        were rewritten.
        """
        changed = 0
        for pk, moved in self.values_list("pk", "moved"):
            scrubbed = _scrub(moved)
            if scrubbed != moved:
                changed += models.QuerySet.update(self.model.objects.filter(pk=pk), moved=scrubbed)
        return changed


ERASED = "[erased]"
_STRUCTURAL_KEYS = frozenset({"rules", "kept"})


def _scrub(value: object, *, key: str = "") -> object:
    """`value` with every non-empty string replaced by `ERASED`, except under the structural keys."""
    if key in _STRUCTURAL_KEYS:
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, key=k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return ERASED if value else value
    return value


class AuditEvent(models.Model):
    """One entry of the append-only resolution log: who changed which customers, why, and exactly what moved.

    `customer` is where things went (a merge's target, a link's or unlink's new owner); `source_customer` is
    where they came from. An unmerge names the same pair as the merge it undoes. `moved` holds everything
    needed to invert the event (identity and contact point ids, field values before and after); its layout
    per kind is described in `contacts/merge.py`. Both customer references are plain ids in the database (no
    constraint, no cascade), so the log outlives an erased customer.
    """

    class Kind(models.TextChoices):
        MERGE = "merge", "Merge"
        UNMERGE = "unmerge", "Unmerge"
        LINK = "link", "Link identity"
        UNLINK = "unlink", "Unlink identity"
        AUTO_LINK = "auto_link", "Automatic link"
        SUGGESTION_REJECTED = "suggestion_rejected", "Suggestion rejected"
        ERASE = "erase", "Erasure"
        EXPORT = "export", "Export"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # A person, or (with no user) a rule or model version named by `actor_label`. The user is protected:
    # deleting an agent must not rewrite the log (deactivate the account instead).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="audit_events"
    )
    source_customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
        related_name="+",
    )
    moved = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once, on a merge, by the unmerge that undid it.
    undone_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undoes"
    )

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="auditevent_customer_idx"),
            models.Index(fields=["source_customer", "-created_at"], name="auditevent_source_idx",
                         condition=Q(source_customer__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} (customer {self.customer_id})"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AuditLogIsAppendOnly("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise AuditLogIsAppendOnly("audit events cannot be deleted")


class ErasureLedger(models.Model):
    """One erased key of a person: a keyed hash (never the value) and when it was erased.

    Written by `contacts.gdpr.customer_erase`; read by ingest (`contacts.gdpr.erasures_lookup`), which drops
    events of an erased identity (or our own replies in an erased thread) that happened at or before
    `erased_at`, so a late webhook, a
    retried delivery or a poll re-creates nothing. Rows are kept: an old replay must still find them.
    """

    class Kind(models.TextChoices):
        IDENTITY = "identity", "Social identity"  # (platform, scope, external id)
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"
        THREAD = "thread", "Conversation thread"  # (channel account id, thread key)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    # HMAC-SHA256, hex: see `contacts.gdpr.ledger_hash`.
    key_hash = models.CharField(max_length=64)
    erased_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["key_hash", "erased_at"], name="erasureledger_hash_idx")]

    def __str__(self) -> str:
        return f"{self.kind} erased at {self.erased_at:%Y-%m-%d %H:%M}"


class DedupeOutbox(models.Model):
    """A customer waiting to be scored for duplicates (`contacts.suggestions.dedupe_outbox_drain`).

    Filled by ingest (`contacts.services.identities_resolve`) for every customer it creates, and by the suggestion
    services after a merge or unmerge. One row per customer; the drain locks rows with `FOR UPDATE SKIP LOCKED` and
    deletes them once scored. The customer is a plain id (no constraint): a row of a customer gone since is dropped.
    """

    customer_id = models.BigIntegerField(unique=True)
    enqueued_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["enqueued_at"], name="dedupeoutbox_enqueued_idx")]

    def __str__(self) -> str:
        return f"customer {self.customer_id} enqueued {self.enqueued_at:%Y-%m-%d %H:%M:%S}"


class DuplicateSuggestion(models.Model):
    """Two customers that may be one person, scored by `contacts.dedupe`, with the evidence field by field.

    One row per pair (`customer_low` < `customer_high`, plain ids like the audit log's). An open suggestion is
    re-scored while it stays open; accepted, rejected and auto-linked ones keep the score they were decided on. A
    rejected pair is a cannot-link constraint: scoring never suggests or auto-links it again.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        AUTO_LINKED = "auto_linked", "Auto-linked"

    customer_low = models.BigIntegerField()
    customer_high = models.BigIntegerField()
    score = models.FloatField(help_text="Match weight in bits.")
    probability = models.FloatField(default=0.0)
    # [{"field", "level", "bits", "left", "right", "note"}, ...]: contacts.dedupe.FieldEvidence, in order.
    explanation = models.JSONField(default=list)
    model_version = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The model version or rule that decided, when no person did (an auto-link).
    decided_by_label = models.CharField(max_length=255, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_low", "customer_high"], name="suggestion_unique_pair"),
            models.CheckConstraint(condition=Q(customer_low__lt=F("customer_high")), name="suggestion_ordered_pair"),
        ]
        indexes = [
            models.Index(fields=["status", "-score"], name="suggestion_status_score_idx"),
            models.Index(fields=["customer_high"], name="suggestion_high_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_low} ~ {self.customer_high} ({self.score:.1f} bits, {self.status})"

    @property
    def pair(self) -> tuple[int, int]:
        return (self.customer_low, self.customer_high)
