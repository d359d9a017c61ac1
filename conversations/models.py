"""Conversations (threads on one channel account) and the interactions in them.

Both point at a `SocialIdentity`, never at a customer: a customer's history is reached through its
identities, so merging customers re-points identity rows and the history follows.

The channel account is referenced by model label ("channels.ChannelAccount"): this app imports no code
of `channels`, but its tables do reference the channel account table.
"""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from socialcrm.models import TimeStampedModel


class Conversation(TimeStampedModel):
    """A thread on one channel account, keyed by the platform's thread key (post id, chat id, ...)."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        RESOLVED = "resolved", _("Resolved")

    class Priority(models.IntegerChoices):
        LOW = 0, _("Low")
        NORMAL = 1, _("Normal")
        HIGH = 2, _("High")
        URGENT = 3, _("Urgent")

    # Like interactions (see there), conversations are created in batches by ingest with ids it has just read,
    # so these two foreign keys carry no database constraint: the per-row checks at commit were a tenth of
    # the cost of ingesting 100,000 events (bench/ingest.py: commit 1.5 s with them, 0.5 s without).
    # Deletes go through Django's collector (PROTECT, SET_NULL), which does not depend on the constraint.
    channel_account = models.ForeignKey(
        "channels.ChannelAccount", on_delete=models.PROTECT, related_name="conversations", db_index=False,
        db_constraint=False,
    )
    thread_key = models.CharField(max_length=255)
    # The customer-side identity the conversation is with (the first inbound author).
    identity = models.ForeignKey(
        "contacts.SocialIdentity", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations",
        db_constraint=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations",
        db_index=False,
    )
    # When the current assignee was set (null while unassigned).
    assigned_at = models.DateTimeField(null=True, blank=True)
    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    first_inbound_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel_account", "thread_key"], name="conversation_unique_thread"),
        ]
        indexes = [
            models.Index(F("status"), F("last_activity_at").desc(nulls_last=True), F("id").desc(),
                         name="conversation_inbox_idx"),
            models.Index(fields=["-updated_at", "-id"], name="conversation_updated_idx"),
            # "Mine" and per-agent views; unassigned conversations (most new ones) stay out of it.
            models.Index(F("assignee"), F("status"), F("last_activity_at").desc(nulls_last=True), F("id").desc(),
                         name="conversation_assignee_idx", condition=Q(assignee__isnull=False)),
            # The console inbox's view counts (open, pending, resolved, mine, unassigned) for an agent who sees some
            # channel accounts: index-only scans, measured 40 ms -> 1.4 ms at 240,000 conversations.
            models.Index(F("status"), F("channel_account"), F("assignee"), name="conversation_counts_idx",
                         condition=Q(last_activity_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.thread_key})"


class Interaction(models.Model):
    """One message, post, comment, mention or direct message, inbound or outbound.

    `(channel_account, external_id)` is unique: the platform's id is the idempotency key. An edit or a
    delete that arrives before its create leaves a stub row (`is_stub`) that the create later fills in;
    a late create never undoes a delete or an edit.
    """

    class Direction(models.TextChoices):
        INBOUND = "in", _("Inbound")
        OUTBOUND = "out", _("Outbound")

    class Kind(models.TextChoices):
        POST = "post", _("Post")
        REPLY = "reply", _("Reply")
        COMMENT = "comment", _("Comment")
        MENTION = "mention", _("Mention")
        DIRECT_MESSAGE = "dm", _("Direct message")

    class DeliveryState(models.TextChoices):
        """Where one of our replies is: queued by an agent, being sent, accepted by the platform, then
        delivered and read where the platform reports it; failed (with a reason) or unknown (a send timed
        out and the platform could not tell whether it was posted: an agent decides)."""

        NONE = "", _("Not ours to send")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")
        UNKNOWN = "unknown", _("Outcome unknown")

    # The indexes below lead with these columns, so the foreign keys need no index of their own. Nor do they
    # carry a database constraint: interactions are the one table that grows by millions, written only by
    # `interactions_record` with ids read in the same transaction, and the three per-row foreign key checks
    # tripled the cost of a batch insert (measured: 20,000 rows, 126 ms without, 406 ms with). Deleting a
    # referenced row goes through Django's collector (`on_delete`), which does not depend on the constraint.
    channel_account = models.ForeignKey(
        "channels.ChannelAccount", on_delete=models.PROTECT, related_name="interactions", db_index=False,
        db_constraint=False,
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="interactions", db_index=False,
        db_constraint=False,
    )
    # The customer-side identity: the author of an inbound interaction, the addressee of an outbound one.
    identity = models.ForeignKey(
        "contacts.SocialIdentity", null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions",
        db_index=False, db_constraint=False,
    )
    direction = models.CharField(max_length=3, choices=Direction.choices, default=Direction.INBOUND)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    external_id = models.CharField(max_length=255)
    text = models.TextField(blank=True)
    occurred_at = models.DateTimeField(help_text="The platform's time of the interaction.")
    received_at = models.DateTimeField(help_text="When socialcrm first stored it.")
    reply_to_external_id = models.CharField(max_length=255, blank=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    attachments = models.JSONField(default=list, blank=True)
    # The words of `text`, unstemmed ('simple': messages come in every language), kept by PostgreSQL itself. Stored,
    # so that a search walking the newest rows tests each one cheaply instead of parsing its text again; indexed for
    # rare words. (A trigram index of the text would also answer any fragment, but cost ingest a fifth of its rate.)
    text_words = models.GeneratedField(expression=SearchVector("text", config="simple"),
                                       output_field=SearchVectorField(), db_persist=True)
    raw = models.JSONField(default=dict, blank=True)
    is_stub = models.BooleanField(default=False, help_text="Only an edit or delete has been seen so far.")
    # Our replies: the key that keeps a retried send from posting twice, and where the send stands. Until
    # it is sent, `external_id` is "queued:<idempotency key>"; the platform's id replaces it when sent.
    idempotency_key = models.UUIDField(null=True, blank=True)
    # Database defaults: ingest inserts interactions with its own SQL and leaves these to the database.
    delivery_state = models.CharField(max_length=16, choices=DeliveryState.choices, db_default="", blank=True)
    send_attempts = models.PositiveSmallIntegerField(db_default=0)
    send_started_at = models.DateTimeField(null=True, blank=True)
    send_error = models.TextField(db_default="", blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False, db_index=False,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel_account", "external_id"], name="interaction_unique_external"),
            models.UniqueConstraint(fields=["idempotency_key"], name="interaction_unique_idempotency",
                                    condition=Q(idempotency_key__isnull=False)),
        ]
        indexes = [
            # A customer's timeline merges these per-identity streams, newest first.
            models.Index(F("identity"), F("occurred_at").desc(), F("id").desc(), name="interaction_timeline_idx"),
            models.Index(F("conversation"), F("occurred_at").desc(), F("id").desc(), name="interaction_thread_idx"),
            # The outbox: replies still on their way (a handful of rows, so inbound inserts never touch it).
            models.Index(fields=["send_started_at"], name="interaction_outbox_idx",
                         condition=Q(delivery_state__in=["queued", "sending", "unknown"])),
            # Message text search (the console): word and word-prefix queries over `text_words`.
            GinIndex(fields=["text_words"], name="interaction_text_words_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id}"


class ConversationTag(models.Model):
    """A label on a conversation ("billing", "outage", ...); a conversation carries each tag at most once."""

    # Indexed by the unique constraint, which leads with it.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="tags", db_index=False)
    name = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "name"], name="conversationtag_unique"),
        ]
        indexes = [models.Index(fields=["name"], name="conversationtag_name_idx")]

    def __str__(self) -> str:
        return self.name


class ConversationNote(models.Model):
    """An internal note on a conversation, by an agent: never sent to the customer."""

    # Indexed by conversationnote_idx, which leads with it.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes", db_index=False)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(F("conversation"), F("created_at").desc(), F("id").desc(), name="conversationnote_idx"),
        ]

    def __str__(self) -> str:
        return f"Note {self.pk} on conversation {self.conversation_id}"


class CannedResponse(models.Model):
    """A prepared answer agents insert into the reply composer.

    The text may hold variables, filled in when it is inserted: `{customer_name}`, `{first_name}`, `{handle}`,
    `{agent_name}`, `{agent_initials}`, `{customer_number}`. Unknown variables are left as they are.
    """

    title = models.CharField(max_length=100, unique=True)
    shortcut = models.CharField(max_length=32, blank=True, help_text='Typed in the composer as "/shortcut".')
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title
