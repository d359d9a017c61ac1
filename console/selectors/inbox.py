"""Reads of the inbox: one page of conversations with what a row shows, the counts of the views, the filters.

Every read starts from `conversations.selectors.conversation_list_for_user` (or the same channel scope), so an
agent restricted to some teams never sees a row, a count or a tag of another team's channel accounts.

Cost. A page is one statement for the rows (plus one for their tags): the newest activity first, on
`conversation_inbox_idx` (status, last_activity_at DESC NULLS LAST, id DESC), keyset-paginated, with the
latest message and the SLA clock read per row by index probes of `interaction_thread_idx`. The counts of the
views are one statement of capped counts (`COUNT_CAP`), so they cost the same with a backlog of 100 or of
100,000 conversations; a count at the cap is shown as "999+".

The SLA clock ("waiting since") is the time of the customer's oldest message that we have not answered yet:

- never answered (`first_response_at` is empty): the conversation's first inbound message (`first_inbound_at`);
- answered before: the oldest inbound message after our latest reply that did not fail; nothing when our reply
  is the newest message (the customer is not waiting for us).

A resolved conversation waits for nobody, whatever its messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Case, DateTimeField, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import JSONObject, Substr
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import ValidationError

from access.selectors import channel_scope_for_user
from channels.models import ChannelAccount
from conversations.models import Conversation, Interaction
from conversations.selectors import conversation_list_for_user
from socialcrm.api.pagination import decode_cursor, encode_cursor, keyset_after

PAGE_SIZE = 50
COUNT_CAP = 1000
# How much of the latest message a row reads: the first line of it is shown.
SNIPPET_CHARS = 300
# The tag filter offers the tags of the most recently tagged conversations: a bounded read, whatever the
# number of tags ever given. Any other tag can still be filtered on by name.
RECENT_TAGS_SCANNED = 2000
TAG_CHOICES_MAX = 200

VIEWS = ("open", "pending", "resolved", "mine", "unassigned")
ACTIVE = (Conversation.Status.OPEN, Conversation.Status.PENDING)


@dataclasses.dataclass(frozen=True, slots=True)
class InboxQuery:
    """What the agent asked for: a view, optionally one channel account and one tag, and where the page starts
    (the (last_activity_at, id) of the last row of the previous page)."""

    view: str = "open"
    channel_id: int | None = None
    tag: str = ""
    after: tuple[dt.datetime, int] | None = None


@dataclasses.dataclass(slots=True)
class InboxPage:
    rows: list[Conversation]
    next_after: tuple[dt.datetime, int] | None

    def version(self, *, counts: dict[str, int], now: dt.datetime) -> str:
        """A short digest of what the page shows; equal digests render equal pages (to the minute of the
        waiting times), so a poll that finds nothing new can answer "no change"."""
        digest = hashlib.sha256(now.strftime("%Y%m%d%H%M").encode())
        digest.update(repr(sorted(counts.items())).encode())
        for row in self.rows:
            digest.update(repr((
                row.pk, row.last_activity_at, row.status, row.assignee_id, row.priority,
                [t.name for t in row.tags.all()], row.latest, row.waiting_since,
            )).encode())
        return digest.hexdigest()[:16]


def keyset_cursor(at: dt.datetime, pk: int) -> str:
    """The opaque cursor of a (time, id) keyset position: the inbox's older pages, the thread's earlier windows."""
    return encode_cursor({"t": at, "i": pk})


def keyset_position(raw: str) -> tuple[dt.datetime, int]:
    """The (time, id) a `keyset_cursor` holds; ValueError for anything else (mangled, edited, made up)."""
    try:
        payload = decode_cursor(raw)
    except ValidationError:
        raise ValueError("not a cursor") from None
    at = parse_datetime(payload["t"]) if isinstance(payload.get("t"), str) else None  # ValueError if impossible
    pk = payload.get("i")
    if at is None or timezone.is_naive(at) or not isinstance(pk, int) or isinstance(pk, bool) or pk < 0:
        raise ValueError("not a cursor")
    return at, pk


def aware_datetime(raw: str) -> dt.datetime | None:
    """A time-zone-aware ISO 8601 time from a request parameter, or None for anything else."""
    if not raw or len(raw) > 40:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        return None
    return value if value is not None and timezone.is_aware(value) else None


def _view_filter(view: str, user: AbstractBaseUser) -> Q:
    """open / pending / resolved by status; mine: assigned to the agent and not resolved; unassigned: open and
    nobody's (a pending conversation waits for the customer, not for an agent to take it)."""
    if view == "mine":
        return Q(assignee_id=user.pk, status__in=ACTIVE)
    if view == "unassigned":
        return Q(assignee__isnull=True, status=Conversation.Status.OPEN)
    return Q(status=view)


def _filtered(queryset: QuerySet[Conversation], query: InboxQuery) -> QuerySet[Conversation]:
    if query.channel_id is not None:
        queryset = queryset.filter(channel_account_id=query.channel_id)
    if query.tag:
        queryset = queryset.filter(tags__name=query.tag)
    return queryset


def _latest_message() -> Subquery:
    """The conversation's newest message as {text (its start), kind, direction, deleted}: one index probe."""
    newest = (
        Interaction.objects.filter(conversation_id=OuterRef("pk"), is_stub=False)
        .order_by("-occurred_at", "-id")
        .values(data=JSONObject(text=Substr("text", 1, SNIPPET_CHARS), kind="kind", direction="direction",
                                deleted="deleted_at"))[:1]
    )
    return Subquery(newest)


def _waiting_since() -> Case:
    """The SLA clock (see the module docstring), read by at most two short index scans per row."""
    latest_reply = (
        Interaction.objects.filter(conversation_id=OuterRef(OuterRef("pk")), direction=Interaction.Direction.OUTBOUND,
                                   is_stub=False)
        .exclude(delivery_state=Interaction.DeliveryState.FAILED)
        .order_by("-occurred_at", "-id").values("occurred_at")[:1]
    )
    oldest_unanswered = (
        Interaction.objects.filter(conversation_id=OuterRef("pk"), direction=Interaction.Direction.INBOUND,
                                   is_stub=False, occurred_at__gt=Subquery(latest_reply))
        .order_by("occurred_at", "id").values("occurred_at")[:1]
    )
    return Case(
        When(status=Conversation.Status.RESOLVED, then=Value(None)),
        When(first_response_at__isnull=True, then=F("first_inbound_at")),
        default=Subquery(oldest_unanswered),
        output_field=DateTimeField(),
    )


def inbox_page(*, user: AbstractBaseUser, query: InboxQuery, size: int = PAGE_SIZE) -> InboxPage:
    """One page of the inbox, newest activity first: two statements (rows, their tags), whatever the size.

    Each row carries `latest` (the newest message: text start, kind, direction, deleted) and `waiting_since`.
    Conversations without any activity time (none are made that way: ingest sets it) are left out, so the
    keyset order is total.
    """
    queryset = (
        _filtered(conversation_list_for_user(user=user), query)
        .filter(_view_filter(query.view, user), last_activity_at__isnull=False)
        .select_related("channel_account", "identity__customer", "assignee")
        .only(
            "id", "status", "priority", "assignee_id", "identity_id", "channel_account_id", "first_inbound_at",
            "first_response_at", "last_activity_at",
            "channel_account__platform", "channel_account__name",
            "identity__platform", "identity__handle", "identity__display_name", "identity__avatar_url",
            "identity__customer_id",
            "identity__customer__display_name",
            "assignee__username", "assignee__first_name", "assignee__last_name",
        )
        .annotate(latest=_latest_message(), waiting_since=_waiting_since())
    )
    if query.after is not None:
        queryset = queryset.filter(keyset_after(["last_activity_at", "id"], list(query.after), descending=True))
    rows = list(queryset.order_by(F("last_activity_at").desc(nulls_last=True), "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    for row in rows:
        row.latest = row.latest or {}
    next_after = (rows[-1].last_activity_at, rows[-1].pk) if more else None
    return InboxPage(rows=rows, next_after=next_after)


def inbox_counts(*, user: AbstractBaseUser, query: InboxQuery) -> dict[str, int]:
    """How many conversations each view holds under the current channel and tag filter, each counted up to
    `COUNT_CAP`: one statement."""
    base = _filtered(channel_scope_for_user(user).limit(Conversation.objects.all()), query).filter(
        last_activity_at__isnull=False
    )
    parts, params = [], []
    for view in VIEWS:
        try:
            sql, view_params = base.filter(_view_filter(view, user)).values("pk")[:COUNT_CAP].query.sql_with_params()
        except EmptyResultSet:  # a user who sees no channel account
            return dict.fromkeys(VIEWS, 0)
        parts.append(f"(SELECT count(*) FROM ({sql}) AS capped_{view})")
        params.extend(view_params)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        values = cursor.fetchone()
    return dict(zip(VIEWS, values, strict=True))


def inbox_channel_choices(*, user: AbstractBaseUser) -> list[ChannelAccount]:
    """The channel accounts the agent may filter on: those in view, by platform and name; secrets not loaded."""
    accounts = ChannelAccount.objects.only("id", "platform", "name").order_by("platform", "name", "id")
    return list(channel_scope_for_user(user).limit(accounts, "pk"))


# The newest tags first (primary key order), each with its conversation's channel account looked up by primary
# key (a correlated subquery, so PostgreSQL probes instead of hashing the whole conversation table), then only
# those in view: a bounded read (about 10 ms), however many tags and conversations exist.
_RECENT_TAGS_SQL = """
SELECT DISTINCT recent.name
FROM (
    SELECT t.name,
           (SELECT c.channel_account_id FROM conversations_conversation c WHERE c.id = t.conversation_id) AS account_id
    FROM conversations_conversationtag t
    ORDER BY t.id DESC
    LIMIT %(scanned)s
) recent
WHERE %(accounts)s::bigint[] IS NULL OR recent.account_id = ANY(%(accounts)s::bigint[])
ORDER BY recent.name
LIMIT %(limit)s
"""


def inbox_tag_choices(*, user: AbstractBaseUser, selected: str = "") -> list[str]:
    """Tag names to offer in the filter: those among the `RECENT_TAGS_SCANNED` newest tags that sit on
    conversations in view, sorted, at most `TAG_CHOICES_MAX`; the selected tag is always among them. One
    statement (none for a user who sees no channel account)."""
    scope = channel_scope_for_user(user)
    names: list[str] = []
    if scope.unrestricted or scope.account_ids:
        accounts = None if scope.unrestricted else sorted(scope.account_ids)
        with connection.cursor() as cursor:
            cursor.execute(_RECENT_TAGS_SQL, {"scanned": RECENT_TAGS_SCANNED, "accounts": accounts,
                                              "limit": TAG_CHOICES_MAX})
            names = [name for (name,) in cursor.fetchall()]
    if selected and selected not in names:
        names = sorted([*names, selected])
    return names
