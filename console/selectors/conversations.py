"""Reads of the conversation page: the conversation, its thread with the internal notes interleaved, the customer
card beside it, and what the actions and the composer offer.

Visibility comes from the apps' selectors (`conversation_list_for_user`, `interaction_list_for_user`,
`conversation_notes_for_user`, `identity_list_for_user`): a conversation outside the agent's channel accounts is
a NotFound, and the customer card lists only the other conversations the agent may open.

Each read is one statement with a bounded result: the thread shows the newest `THREAD_WINDOW` messages (older
ones a window at a time, by keyset on `interaction_thread_idx`), so a page costs the same for a conversation of
ten messages or of ten thousand.

Text from platforms is handed to the templates as it is (they escape it). Links from platforms (attachments,
profile URLs) are passed on only when they are plain http(s) URLs: `safe_http_url`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F

from contacts.api.selectors import identity_list_for_user
from contacts.models import SocialIdentity
from conversations.models import CannedResponse, Conversation, ConversationNote, Interaction
from conversations.selectors import (
    conversation_list_for_user,
    conversation_notes_for_user,
    interaction_list_for_user,
)
from socialcrm.api.pagination import keyset_after
from socialcrm.errors import NotFound

THREAD_WINDOW = 100
NOTES_WINDOW = 100
OTHER_CONVERSATIONS_MAX = 20
ASSIGNEES_MAX = 200
CANNED_MAX = 200
ACTIVE = (Conversation.Status.OPEN, Conversation.Status.PENDING)
# Keys of an attachment summary that name a file, in the order the adapters fill them.
_FILE_NAME_KEYS = ("file_name", "filename", "name", "title", "description")
# Whitespace or control characters: browsers drop some of them inside a scheme ("java\tscript:"), so a URL
# holding any of them is not passed on at all.
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f]")


def safe_http_url(value: object) -> str:
    """`value` if it is an absolute http(s) URL without whitespace or control characters, else ""."""
    if not isinstance(value, str) or not value or len(value) > 2048 or _UNSAFE_URL_CHARS.search(value):
        return ""
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def conversation_page_get(*, user: AbstractBaseUser, conversation_id: int,
                          with_secrets: bool = False) -> Conversation:
    """The conversation with its channel account, customer-side identity and customer, assignee and tags; a
    NotFound for any conversation `user` may not see. Two statements.

    The channel account's secrets are decrypted only `with_secrets` (queuing a reply builds the platform's
    adapter with them); a page view has no use for them.
    """
    queryset = (
        conversation_list_for_user(user=user)
        .select_related("channel_account", "identity__customer", "assignee")
        .defer("identity__raw_profile", "assignee__password")
    )
    if not with_secrets:
        queryset = queryset.defer("channel_account__credentials", "channel_account__webhook_secret",
                                  "channel_account__sync_cursor")
    conversation = queryset.filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("No such conversation.", code="not_found")
    return conversation


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    url: str


def _attachments(raw: Any) -> list[Attachment]:
    found = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        name = next((str(item[k]) for k in _FILE_NAME_KEYS if isinstance(item.get(k), str) and item[k]), "")
        kind = str(item.get("type") or "")
        found.append(Attachment(name=name or kind or "attachment", url=safe_http_url(item.get("url"))))
    return found


@dataclasses.dataclass(slots=True)
class ThreadItem:
    """One entry of the thread: a message (`interaction`) or an internal note (`note`)."""

    at: dt.datetime
    interaction: Interaction | None = None
    note: ConversationNote | None = None


@dataclasses.dataclass(slots=True)
class Thread:
    items: list[ThreadItem]
    # The (occurred_at, id) to pass as `before` for the window of older messages; None when there are none.
    earlier: tuple[dt.datetime, int] | None
    version: str


def _decorate(message: Interaction) -> Interaction:
    """What the template shows of a message, worked out once: public or private, who wrote it, its files."""
    message.is_public = message.kind != Interaction.Kind.DIRECT_MESSAGE
    message.is_outbound = message.direction == Interaction.Direction.OUTBOUND
    message.files = _attachments(message.attachments)
    if message.is_outbound:
        sender = message.sent_by
        message.author_name = (sender.get_full_name() or sender.get_username()) if sender else ""
        message.author_handle = ""
    else:
        identity = message.identity
        message.author_name = (identity.display_name or identity.handle) if identity else ""
        message.author_handle = identity.handle if identity else ""
    message.is_ours_to_send = message.idempotency_key is not None or bool(message.delivery_state)
    message.can_retry = message.delivery_state in (Interaction.DeliveryState.FAILED,
                                                   Interaction.DeliveryState.UNKNOWN)
    return message


def conversation_thread(*, user: AbstractBaseUser, conversation: Conversation,
                        before: tuple[dt.datetime, int] | None = None) -> Thread:
    """The newest `THREAD_WINDOW` messages of the conversation (older than `before`, when given) and the
    internal notes of the same span, oldest first. Three statements."""
    messages = (
        interaction_list_for_user(user=user)
        .filter(conversation_id=conversation.pk)
        .select_related("identity", "sent_by")
        .defer("identity__raw_profile", "sent_by__password")
    )
    if before is not None:
        messages = messages.filter(keyset_after(["occurred_at", "id"], list(before), descending=True))
    window = list(messages.order_by("-occurred_at", "-id")[: THREAD_WINDOW + 1])
    more = len(window) > THREAD_WINDOW
    window = window[:THREAD_WINDOW]

    notes = (conversation_notes_for_user(user=user, conversation_id=conversation.pk)
             .select_related("author").defer("author__password"))
    if more:  # older notes belong with the older messages
        notes = notes.filter(created_at__gte=window[-1].occurred_at)
    if before is not None:
        notes = notes.filter(created_at__lt=before[0])
    notes = list(notes.order_by("-created_at", "-id")[:NOTES_WINDOW])

    items = [ThreadItem(at=m.occurred_at, interaction=_decorate(m)) for m in window]
    items += [ThreadItem(at=n.created_at, note=n) for n in notes]
    items.sort(key=lambda item: (item.at, item.note is not None, (item.interaction or item.note).pk))
    earlier = (window[-1].occurred_at, window[-1].pk) if more else None
    return Thread(items=items, earlier=earlier, version=_thread_version(window, notes))


def _thread_version(messages: list[Interaction], notes: list[ConversationNote]) -> str:
    digest = hashlib.sha256()
    for m in messages:
        digest.update(repr((m.pk, m.delivery_state, m.send_error, m.edited_at, m.deleted_at, m.external_id)).encode())
    for n in notes:
        digest.update(repr(("note", n.pk)).encode())
    return digest.hexdigest()[:16]


def last_inbound(*, conversation: Conversation) -> Interaction | None:
    """The customer's newest message in the conversation (what a reply answers, and what opens the platform's
    private-reply window): one probe of `interaction_thread_idx`."""
    return (
        Interaction.objects.filter(conversation_id=conversation.pk, direction=Interaction.Direction.INBOUND,
                                   is_stub=False)
        .order_by("-occurred_at", "-id").only("id", "kind", "occurred_at").first()
    )


@dataclasses.dataclass(slots=True)
class CustomerCard:
    customer: Any
    identities: list[SocialIdentity]
    other_conversations: list[Conversation]


def customer_card(*, user: AbstractBaseUser, conversation: Conversation) -> CustomerCard | None:
    """The customer the conversation is with: every identity (profile links made safe), and the customer's
    other open or pending conversations `user` may see, newest activity first. Two statements; None when the
    conversation has no customer-side identity."""
    identity = conversation.identity
    if identity is None:
        return None
    customer = identity.customer
    identities = list(
        identity_list_for_user(user=user).filter(customer_id=customer.pk).defer("raw_profile")
        .order_by("platform", "handle", "id")
    )
    for each in identities:
        each.safe_profile_url = safe_http_url(each.profile_url)
    others = list(
        conversation_list_for_user(user=user).prefetch_related(None)
        .filter(identity__customer_id=customer.pk, status__in=ACTIVE)
        .exclude(pk=conversation.pk)
        .select_related("channel_account")
        .only("id", "status", "last_activity_at", "channel_account__platform", "channel_account__name")
        .order_by(F("last_activity_at").desc(nulls_last=True), "-id")[:OTHER_CONVERSATIONS_MAX]
    )
    return CustomerCard(customer=customer, identities=identities, other_conversations=others)


def assignable_users(*, conversation: Conversation) -> list[AbstractBaseUser]:
    """Active members of the teams that see the conversation's channel account, by name: one statement."""
    users = (
        get_user_model().objects.filter(is_active=True, teams__channel_accounts=conversation.channel_account_id)
        .distinct().only("id", "username", "first_name", "last_name")
        .order_by("first_name", "last_name", "username", "id")
    )
    return list(users[:ASSIGNEES_MAX])


def canned_responses() -> list[CannedResponse]:
    return list(CannedResponse.objects.order_by("title", "id")[:CANNED_MAX])
