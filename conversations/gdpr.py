"""GDPR handlers of conversations: registered with `contacts.gdpr` from `ConversationsConfig.ready()`.

Export: the interactions of the person's identities (their messages and our replies to them, with text,
attachments metadata and the raw payload), the conversations they are in, and the tags and notes of the
conversations that are with them (`Conversation.identity`). Other people's interactions are left out.

Erase: the person's interactions are deleted (our replies to them too). A conversation with them is deleted
with its notes and tags unless other people's interactions remain in it: then it stays, loses its identity
and its notes (agents' notes on it are about the person), and keeps its tags. Either way its thread goes into
the erasure ledger, so that a replay of our own replies in it from before the erasure re-creates nothing.
"""

from __future__ import annotations

from typing import Any

from contacts.gdpr import Subject

from .models import Conversation, ConversationNote, ConversationTag, Interaction

_INTERACTION_FIELDS = (
    "id", "channel_account_id", "conversation_id", "identity_id", "direction", "kind", "external_id", "text",
    "occurred_at", "received_at", "reply_to_external_id", "edited_at", "deleted_at", "attachments", "raw",
    "is_stub", "delivery_state", "send_error",
)
_CONVERSATION_FIELDS = (
    "id", "channel_account_id", "thread_key", "identity_id", "status", "priority", "first_inbound_at",
    "first_response_at", "last_activity_at", "resolved_at", "created_at", "updated_at",
)


def export(subject: Subject) -> dict[str, Any]:
    """The person's interactions, their conversations, and the notes and tags of the conversations with them."""
    ids = subject.identity_ids
    interactions = list(Interaction.objects.filter(identity_id__in=ids).order_by("occurred_at", "pk")
                        .values(*_INTERACTION_FIELDS))
    own = set(Conversation.objects.filter(identity_id__in=ids).values_list("pk", flat=True))
    involved = own | {i["conversation_id"] for i in interactions if i["conversation_id"] is not None}
    return {
        "conversations": list(Conversation.objects.filter(pk__in=involved).order_by("pk")
                              .values(*_CONVERSATION_FIELDS)),
        "interactions": interactions,
        "notes": list(ConversationNote.objects.filter(conversation_id__in=own).order_by("created_at", "pk")
                      .values("id", "conversation_id", "author_id", "text", "created_at")),
        "tags": list(ConversationTag.objects.filter(conversation_id__in=own).order_by("pk")
                     .values("id", "conversation_id", "name", "created_at")),
    }


def erase(subject: Subject) -> dict[str, int]:
    """Delete the person's interactions and conversations (see the module docstring); returns the counts."""
    ids = subject.identity_ids
    own = list(Conversation.objects.filter(identity_id__in=ids).values_list("pk", "channel_account_id",
                                                                           "thread_key"))
    interactions = Interaction.objects.filter(identity_id__in=ids).delete()[0]
    shared = set(Interaction.objects.filter(conversation_id__in=[c[0] for c in own])
                 .values_list("conversation_id", flat=True).distinct())
    alone = [c for c in own if c[0] not in shared]
    for _, account_id, thread_key in own:
        subject.erased_thread(account_id, thread_key)
    notes = ConversationNote.objects.filter(conversation_id__in=[c[0] for c in own]).delete()[0]
    tags = ConversationTag.objects.filter(conversation_id__in=[c[0] for c in alone]).delete()[0]
    Conversation.objects.filter(pk__in=shared).update(identity=None)
    conversations = Conversation.objects.filter(pk__in=[c[0] for c in alone]).delete()[0]
    return {"interactions": interactions, "conversations_deleted": conversations,
            "conversations_anonymised": len(shared), "notes": notes, "tags": tags}
