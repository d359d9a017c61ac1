"""Conversation writes behind the API, in the conventions of services.py: keyword-only, one transaction
each, the conversation row locked while it changes, returning what they wrote. Each change that alters the
conversation moves its `updated_at`, so `updated_since` syncs pick it up; repeating a change is a no-op."""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from access.selectors import channel_scope_for_user
from conversations.models import Conversation, ConversationNote, ConversationTag
from socialcrm.errors import NotFound, ServiceError
from socialcrm.events import emit


def _locked(conversation_id: int) -> Conversation:
    conversation = Conversation.objects.select_for_update(of=("self",)).filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("No such conversation.", code="not_found")
    return conversation


def conversation_assign(*, conversation_id: int, assignee_id: int | None,
                        now: dt.datetime | None = None) -> Conversation:
    """Assign the conversation to an active user who can see its channel account, or unassign it (None)."""
    now = now or timezone.now()
    assignee = None
    if assignee_id is not None:
        assignee = get_user_model().objects.filter(pk=assignee_id, is_active=True).first()
        if assignee is None:
            raise ServiceError("No active user with this id.", code="unknown_user", field="assignee_id")
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if assignee is not None and not channel_scope_for_user(assignee).allows(conversation.channel_account_id):
            raise ServiceError("This user cannot see the conversation's channel account.",
                               code="assignee_cannot_see", field="assignee_id")
        if conversation.assignee_id == assignee_id:
            return conversation
        conversation.assignee = assignee
        conversation.assigned_at = now if assignee is not None else None
        conversation.updated_at = now
        conversation.save(update_fields=["assignee", "assigned_at", "updated_at"])
    return conversation


def conversation_set_status(*, conversation_id: int, status: str, now: dt.datetime | None = None) -> Conversation:
    """Open, pend or resolve the conversation; resolving stamps `resolved_at`, reopening clears it."""
    if status not in Conversation.Status.values:
        raise ServiceError(f"Unknown status {status!r}.", code="unknown_status", field="status")
    now = now or timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id)
        if conversation.status == status:
            return conversation
        conversation.status = status
        conversation.resolved_at = now if status == Conversation.Status.RESOLVED else None
        conversation.updated_at = now
        conversation.save(update_fields=["status", "resolved_at", "updated_at"])
        emit("conversation.status_changed", {"conversation_id": conversation.pk, "status": status})
    return conversation


def conversation_add_note(*, conversation_id: int, author: AbstractBaseUser | None, text: str,
                          now: dt.datetime | None = None) -> ConversationNote:
    """An internal note on the conversation (never sent to the customer)."""
    text = (text or "").strip()
    if not text:
        raise ServiceError("A note needs text.", code="note_empty", field="text")
    now = now or timezone.now()
    with transaction.atomic():
        _locked(conversation_id)
        note = ConversationNote.objects.create(conversation_id=conversation_id, author=author, text=text)
        Conversation.objects.filter(pk=conversation_id).update(updated_at=now)
    return note


def conversation_add_tag(*, conversation_id: int, name: str, now: dt.datetime | None = None) -> bool:
    """Tag the conversation; False if it already carried the tag."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("A tag needs a name.", code="tag_empty", field="tag")
    now = now or timezone.now()
    with transaction.atomic():
        _locked(conversation_id)  # tag changes of one conversation take turns on this lock
        if ConversationTag.objects.filter(conversation_id=conversation_id, name=name).exists():
            return False
        ConversationTag.objects.create(conversation_id=conversation_id, name=name)
        Conversation.objects.filter(pk=conversation_id).update(updated_at=now)
    return True


def conversation_remove_tag(*, conversation_id: int, name: str, now: dt.datetime | None = None) -> bool:
    """Take the tag off the conversation; False if it did not carry it."""
    now = now or timezone.now()
    with transaction.atomic():
        _locked(conversation_id)
        removed, _ = ConversationTag.objects.filter(conversation_id=conversation_id, name=name).delete()
        if removed:
            Conversation.objects.filter(pk=conversation_id).update(updated_at=now)
    return bool(removed)
