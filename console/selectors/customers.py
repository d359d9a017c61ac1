"""Reads behind the console's customer pages: the profile, its timeline pages, the merge preview, the duplicate queue.

Visibility comes from the apps' own `*_for_user` selectors (the ones the REST API uses); this module only shapes
what they return for templates, with a fixed number of queries per page whatever the customer's history:

- the timeline is `conversations.selectors.customer_timeline` (one keyset query over the identities' index
  streams), plus one query for the channel accounts and one for the authors of the page's rows;
- its cursor is the API's (`socialcrm.api.pagination.encode_cursor` of `{"o": "timeline", "k": [at, id]}`), so a
  `next` link of `GET /api/v1/customers/{id}/timeline/` and an "Older" link of the console are interchangeable;
- the duplicate queue is keyset-paginated on (score, id), newest decisions never shift the pages still to come.

Everything a platform sent us (text, names, handles, file names, links) stays plain text: templates escape it,
and a link is only ever offered for an `http(s)` URL (`safe_url`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import ValidationError

from access.selectors import channel_scope_for_user
from channels.models import ChannelAccount
from contacts.api.selectors import (
    customer_list_for_user,
    customers_search,
    identity_list_for_user,
    suggestion_list_for_user,
)
from contacts.merge import SCALAR_FIELDS, MergePreview, Rule
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.search import search_text_contains
from contacts.selectors import customer_audit_events
from conversations.api.pagination import timeline_cursor_decode, timeline_cursor_encode
from conversations.models import Conversation, Interaction
from conversations.selectors import customer_timeline
from socialcrm.api.filters import MAX_ID
from socialcrm.api.pagination import decode_cursor, encode_cursor
from socialcrm.errors import ServiceError

User = AbstractBaseUser | AnonymousUser

TIMELINE_PAGE_SIZE = 30
DUPLICATES_PAGE_SIZE = 25
SUGGESTIONS_ON_PROFILE = 10
MERGES_ON_PROFILE = 20
LINK_CANDIDATES = 20
MERGE_CANDIDATES = 20
# Primary keys are bigints: anything larger is not an id of ours (and would make PostgreSQL fail, not answer).

MERGE_PERMISSION = "access.merge_customers"
GDPR_PERMISSION = "access.handle_gdpr_requests"

KIND_LABELS: Mapping[str, Any] = {
    Interaction.Kind.POST: _("Post"),
    Interaction.Kind.REPLY: _("Reply"),
    Interaction.Kind.COMMENT: _("Comment"),
    Interaction.Kind.MENTION: _("Mention"),
    Interaction.Kind.DIRECT_MESSAGE: _("Direct message"),
}
DELIVERY_LABELS: Mapping[str, Any] = {
    Interaction.DeliveryState.QUEUED: _("queued"),
    Interaction.DeliveryState.SENDING: _("sending"),
    Interaction.DeliveryState.SENT: _("sent"),
    Interaction.DeliveryState.DELIVERED: _("delivered"),
    Interaction.DeliveryState.READ: _("read"),
    Interaction.DeliveryState.FAILED: _("failed"),
    Interaction.DeliveryState.UNKNOWN: _("outcome unknown"),
}
FIELD_LABELS: Mapping[str, Any] = {
    "display_name": _("Name"),
    "postal_address": _("Postal address"),
    "birth_date": _("Birth date"),
    "language": _("Language"),
    "customer_number": _("Customer number"),
    "tags": _("Tags"),
    "notes": _("Notes"),
}
RULE_LABELS: Mapping[str, Any] = {
    Rule.SAME: _("unchanged"),
    Rule.BOTH_BLANK: _("blank on both"),
    Rule.TARGET_SET: _("this customer's value is kept"),
    Rule.SOURCE_FILLS_BLANK: _("the other customer's value fills the blank"),
    Rule.CHOSEN_TARGET: _("this customer's value, as chosen"),
    Rule.CHOSEN_SOURCE: _("the other customer's value, as chosen"),
    Rule.CONFLICT: _("two different values: choose one"),
    Rule.UNION: _("both sets of tags"),
    Rule.CONCATENATED: _("both notes, this customer's first"),
}
# Attachment summaries differ per platform (see the adapters); the first of these keys that is set names the file.
_ATTACHMENT_NAME_KEYS = ("file_name", "filename", "name", "title", "caption", "type")


class BadInput(ServiceError):
    """A malformed or missing request parameter (a cursor, an id, a reason): a 400 naming the parameter."""


class Forbidden(ServiceError):
    """The user sees the object but lacks the permission for the action: a 403."""

    status_code = 403


def safe_url(url: object) -> str:
    """`url` if it is an absolute http(s) URL, else "": never a `javascript:`, `data:` or relative link."""
    if not isinstance(url, str):
        return ""
    url = url.strip()
    if not url or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


def initials(name: str) -> str:
    """Up to two letters standing in for a picture: "Anna Berg" -> "AB", "@ab_cd" -> "AC", "" -> "?"."""
    words = [w for w in name.replace("@", " ").replace("_", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def parse_id(value: object, *, field: str) -> int:
    """A query or form parameter as a primary key; BadInput naming `field` for anything else."""
    text = str(value or "").strip()
    if not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise BadInput(_("%(field)s must be a customer or record id (a positive whole number).") % {"field": field},
                       code="invalid_id", field=field)
    return int(text)


def conversation_url(conversation_id: int) -> str:
    """The console page of a conversation (by URL name once that page exists, by its path until then)."""
    try:
        return reverse("console:conversation", args=[conversation_id])
    except NoReverseMatch:
        return f"/conversations/{conversation_id}/"


def has_merge_permission(user: User) -> bool:
    return bool(user.is_authenticated and user.has_perm(MERGE_PERMISSION))


def has_gdpr_permission(user: User) -> bool:
    """GDPR export and erasure reach every channel account's data: the permission and an unrestricted view."""
    return bool(user.is_authenticated and user.has_perm(GDPR_PERMISSION)
                and channel_scope_for_user(user).unrestricted)


# --- the timeline -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Attachment:
    label: str
    url: str


@dataclasses.dataclass(frozen=True, slots=True)
class TimelinePage:
    items: list[Interaction]
    next_cursor: str | None


def timeline_cursor(interaction: Interaction) -> str:
    """The cursor of the page after `interaction` (the same as the API's `next` link holds)."""
    return timeline_cursor_encode(interaction)


def timeline_position(raw: str | None) -> tuple[dt.datetime, int] | None:
    """The (occurred_at, id) a cursor continues after; None for no cursor, BadInput for a malformed one."""
    if not raw:
        return None
    try:
        return timeline_cursor_decode(raw)
    except ValueError:
        raise BadInput(_("This link to older messages is broken; reload the profile."), code="invalid_cursor",
                       field="cursor") from None


def _attachments(value: object) -> list[Attachment]:
    found = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        label = next((str(item[k]) for k in _ATTACHMENT_NAME_KEYS if item.get(k)), "")
        found.append(Attachment(label=label[:255] or str(_("Attachment")), url=safe_url(item.get("url"))))
    return found


def _decorate(rows: list[Interaction], known: Iterable[SocialIdentity] | None = None) -> None:
    """Give each row what the template shows beside its own fields: platform, author, attachments, links.

    Two queries for the page whatever its size: the channel accounts and the authoring identities (none for the
    identities when the caller has them: `known`, the customer's own).
    """
    accounts = {a["pk"]: a for a in ChannelAccount.objects.filter(pk__in={r.channel_account_id for r in rows})
                .values("pk", "platform", "name")}
    if known is not None:
        identities = {i.pk: {"platform": i.platform, "handle": i.handle, "display_name": i.display_name}
                      for i in known}
    else:
        identities = {i["pk"]: i for i in SocialIdentity.objects.filter(
            pk__in={r.identity_id for r in rows if r.identity_id}).values("pk", "platform", "handle", "display_name")}
    for row in rows:
        account = accounts.get(row.channel_account_id, {})
        author = identities.get(row.identity_id, {})
        row.platform = account.get("platform") or author.get("platform") or ""
        row.account_name = account.get("name", "")
        row.is_outbound = row.direction == Interaction.Direction.OUTBOUND
        # Our own replies sit in the customer's identity stream, but we wrote them: show our channel account.
        row.author_handle = "" if row.is_outbound else author.get("handle", "")
        row.author_name = row.account_name if row.is_outbound else author.get("display_name", "")
        row.kind_label = KIND_LABELS.get(row.kind, row.kind)
        row.is_private = row.kind == Interaction.Kind.DIRECT_MESSAGE
        row.delivery_label = DELIVERY_LABELS.get(row.delivery_state, "") if row.is_outbound else ""
        row.attachment_list = _attachments(row.attachments)
        row.conversation_url = conversation_url(row.conversation_id) if row.conversation_id else ""


def timeline_page(*, user: User, customer_id: int, cursor: str | None = None, size: int = TIMELINE_PAGE_SIZE,
                  identities: Iterable[SocialIdentity] | None = None) -> TimelinePage:
    """One page of a (visible, live) customer's timeline, newest first, limited to what `user` may see.

    Three queries: the timeline itself (one row more than the page, to know whether there is a next page),
    the channel accounts and the authors of the page's rows (two when the customer's `identities` are given: the
    timeline holds only theirs).
    """
    before = timeline_position(cursor)
    scope = channel_scope_for_user(user)
    rows = customer_timeline(customer_id=customer_id, limit=size + 1, before=before,
                             channel_account_ids=None if scope.unrestricted else scope.account_ids)
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = timeline_cursor(rows[-1])
    _decorate(rows, identities)
    return TimelinePage(items=rows, next_cursor=next_cursor)


# --- the profile --------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Evidence:
    field: str
    level: str
    bits: float
    left: str
    right: str
    note: str

    @property
    def against(self) -> bool:
        return self.bits < 0


@dataclasses.dataclass(slots=True)
class SuggestionRow:
    """An open duplicate suggestion as a page shows it: both customers, which one a merge keeps, the evidence."""

    suggestion: DuplicateSuggestion
    target_id: int  # the older customer: where an accepted suggestion merges the pair (`suggestion_accept`)
    source_id: int
    target_name: str
    source_name: str
    evidence: list[Evidence]

    @property
    def pk(self) -> int:
        return self.suggestion.pk

    @property
    def percent(self) -> int:
        return round(self.suggestion.probability * 100)


def _evidence(explanation: object) -> list[Evidence]:
    rows = []
    for entry in explanation if isinstance(explanation, list) else []:
        if not isinstance(entry, dict):
            continue
        try:
            bits = float(entry.get("bits") or 0)
        except (TypeError, ValueError):
            bits = 0.0
        rows.append(Evidence(field=str(entry.get("field") or ""), level=str(entry.get("level") or ""), bits=bits,
                             left=str(entry.get("left") or ""), right=str(entry.get("right") or ""),
                             note=str(entry.get("note") or "")))
    return rows


def _with_created(queryset: QuerySet[DuplicateSuggestion]) -> QuerySet[DuplicateSuggestion]:
    created = Customer.objects.values("created_at")
    return queryset.annotate(
        customer_low_created_at=Subquery(created.filter(pk=OuterRef("customer_low"))[:1]),
        customer_high_created_at=Subquery(created.filter(pk=OuterRef("customer_high"))[:1]),
    )


def _suggestion_row(s: DuplicateSuggestion) -> SuggestionRow:
    low = (s.customer_low_created_at or dt.datetime.max.replace(tzinfo=dt.UTC), s.customer_low)
    high = (s.customer_high_created_at or dt.datetime.max.replace(tzinfo=dt.UTC), s.customer_high)
    low_name = s.customer_low_display_name or str(_("Customer %(id)s") % {"id": s.customer_low})
    high_name = s.customer_high_display_name or str(_("Customer %(id)s") % {"id": s.customer_high})
    if low <= high:
        return SuggestionRow(s, s.customer_low, s.customer_high, low_name, high_name, _evidence(s.explanation))
    return SuggestionRow(s, s.customer_high, s.customer_low, high_name, low_name, _evidence(s.explanation))


def customer_suggestions(*, user: User, customer_id: int) -> list[SuggestionRow]:
    """The open duplicate suggestions naming this customer that `user` sees, best first (one query)."""
    queryset = _with_created(suggestion_list_for_user(user=user)).filter(
        Q(customer_low=customer_id) | Q(customer_high=customer_id), status=DuplicateSuggestion.Status.OPEN,
    ).order_by("-score", "-id")[:SUGGESTIONS_ON_PROFILE]
    return [_suggestion_row(s) for s in queryset]


def customer_merges(*, customer_id: int) -> list[AuditEvent]:
    """The latest merges with this customer on either side, newest first, with both customers' names and who
    merged (one query). Only called for a customer the user sees."""
    names = Customer.objects.values("display_name")
    return list(
        customer_audit_events(customer_id=customer_id).filter(kind=AuditEvent.Kind.MERGE)
        .select_related("undone_by")
        .annotate(target_name=Subquery(names.filter(pk=OuterRef("customer_id"))[:1]),
                  source_name=Subquery(names.filter(pk=OuterRef("source_customer_id"))[:1]))
        [:MERGES_ON_PROFILE]
    )


@dataclasses.dataclass(slots=True)
class Profile:
    customer: Customer
    initials: str
    identities: list[SocialIdentity]
    emails: list[ContactPoint]
    phones: list[ContactPoint]
    links: list[ContactPoint]
    timeline: TimelinePage
    suggestions: list[SuggestionRow]
    merges: list[AuditEvent]
    can_merge: bool
    can_gdpr: bool


def customer_profile(*, user: User, customer: Customer, cursor: str | None = None) -> Profile:
    """Everything the profile page shows of a live customer in view (fetched with `customer_get_for_user`, which
    prefetched its identities and contact points): a fixed number of queries."""
    identities = sorted(customer.identities.all(), key=lambda i: (i.platform, i.handle.lower(), i.pk))
    for identity in identities:
        identity.safe_profile_url = safe_url(identity.profile_url)
    points = sorted(customer.contact_points.all(), key=lambda p: (p.verified_at is None, p.pk))
    for point in points:
        point.safe_url = safe_url(point.value) if point.kind == ContactPoint.Kind.URL else ""
    return Profile(
        customer=customer,
        initials=initials(customer.display_name),
        identities=identities,
        emails=[p for p in points if p.kind == ContactPoint.Kind.EMAIL],
        phones=[p for p in points if p.kind == ContactPoint.Kind.PHONE],
        links=[p for p in points if p.kind == ContactPoint.Kind.URL],
        timeline=timeline_page(user=user, customer_id=customer.pk, cursor=cursor, identities=identities),
        suggestions=customer_suggestions(user=user, customer_id=customer.pk),
        merges=customer_merges(customer_id=customer.pk),
        can_merge=has_merge_permission(user),
        can_gdpr=has_gdpr_permission(user),
    )


def legal_holds(*, customer_id: int) -> list[Customer]:
    """The customer and its direct tombstones that are under a legal hold (erasure checks every depth)."""
    return list(Customer.objects.filter(Q(pk=customer_id) | Q(merged_into_id=customer_id))
                .exclude(legal_hold_reason="").order_by("pk").only("pk", "display_name", "legal_hold_reason"))


# --- linking identities and choosing a merge partner ----------------------------------------------------------


def link_candidates(*, user: User, customer_id: int, text: str) -> list[SocialIdentity]:
    """Identities `user` sees that could be linked to the customer: by id, or by handle or name (one query)."""
    text = text.strip()
    if not text:
        return []
    handle = text.lstrip("@") or text
    # Names and handles through the customers' search text and its trigram index (`contacts.search`), then
    # checked on the identity itself.
    holders = Customer.objects.filter(search_text_contains(text) | search_text_contains(handle)).values("pk")
    condition = (Q(customer_id__in=holders) & (Q(handle__icontains=handle) | Q(display_name__icontains=text))
                 | Q(external_id=text))
    if text.isdigit() and int(text) <= MAX_ID:
        condition |= Q(pk=int(text))
    rows = list(identity_list_for_user(user=user).filter(condition).exclude(customer_id=customer_id)
                .select_related("customer").order_by("platform", "handle", "pk")[:LINK_CANDIDATES])
    for row in rows:
        row.safe_profile_url = safe_url(row.profile_url)
    return rows


def merge_candidates(*, user: User, customer_id: int, text: str) -> list[Customer]:
    """Live customers `user` sees that match `text` (id, name, handle, e-mail, phone, customer number), without
    the customer itself: three queries (the customers, their identities and contact points)."""
    text = text.strip()
    if not text:
        return []
    queryset = customer_list_for_user(user=user)
    matches = customers_search(queryset, text)
    if text.isdigit() and int(text) <= MAX_ID:
        matches = matches | queryset.filter(pk=int(text))
    return list(matches.exclude(pk=customer_id).order_by("-updated_at", "-id")[:MERGE_CANDIDATES])


# --- the merge preview --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRow:
    field: str
    label: Any
    target: Any
    source: Any
    result: Any
    rule: Any
    conflict: bool
    choosable: bool  # both sides hold different values: the agent may pick either
    chosen: str  # "target", "source" or "" (a conflict nobody chose yet)


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or (isinstance(value, str) and not value.strip())


def merge_field_rows(preview: MergePreview, choices: Mapping[str, str]) -> list[FieldRow]:
    rows = []
    for plan in preview.fields:
        choosable = plan.field in SCALAR_FIELDS and not _blank(plan.target) and not _blank(plan.source) \
            and plan.target != plan.source
        chosen = choices.get(plan.field) or ("" if plan.conflict or not choosable else "target")
        rows.append(FieldRow(field=plan.field, label=FIELD_LABELS.get(plan.field, plan.field), target=plan.target,
                             source=plan.source, result=plan.result, rule=RULE_LABELS.get(plan.rule, plan.rule),
                             conflict=plan.conflict, choosable=choosable, chosen=chosen))
    return rows


def merge_sides(*, user: User, target_id: int, source_id: int) -> dict[int, Customer]:
    """Both customers of a merge with their identities and contact points (three queries), by id."""
    rows = customer_list_for_user(user=user, include_merged=True).filter(pk__in=[target_id, source_id])
    found = {c.pk: c for c in rows}
    for customer in found.values():
        for identity in customer.identities.all():
            identity.safe_profile_url = safe_url(identity.profile_url)
    return found


def conversation_counts(customer_ids: Iterable[int]) -> dict[int, int]:
    """How many conversations each customer's identities hold (one grouped query)."""
    rows = (Conversation.objects.filter(identity__customer_id__in=list(customer_ids))
            .values("identity__customer_id").annotate(n=Count("id")))
    return {r["identity__customer_id"]: r["n"] for r in rows}


def rejected_pair(target_id: int, source_id: int) -> DuplicateSuggestion | None:
    """The rejected duplicate suggestion of this pair (a cannot-link decision), if any (one query)."""
    low, high = sorted((target_id, source_id))
    return (DuplicateSuggestion.objects.filter(customer_low=low, customer_high=high,
                                               status=DuplicateSuggestion.Status.REJECTED)
            .select_related("decided_by").first())


def open_suggestion(*, user: User, suggestion_id: int, target_id: int, source_id: int) -> DuplicateSuggestion | None:
    """The open suggestion `suggestion_id` if it is about exactly this pair and `user` sees it (one query)."""
    low, high = sorted((target_id, source_id))
    return suggestion_list_for_user(user=user).filter(
        pk=suggestion_id, customer_low=low, customer_high=high, status=DuplicateSuggestion.Status.OPEN,
    ).first()


# --- the duplicate queue --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DuplicatesPage:
    rows: list[SuggestionRow]
    next_cursor: str | None


def _duplicates_position(raw: str | None) -> tuple[float, int] | None:
    if not raw:
        return None
    invalid = BadInput(_("This link to more suggestions is broken; start from the first page."),
                       code="invalid_cursor", field="cursor")
    try:
        payload = decode_cursor(raw)
    except ValidationError:
        raise invalid from None
    key = payload.get("k")
    if payload.get("o") != "duplicates" or not isinstance(key, list) or len(key) != 2:
        raise invalid
    score, pk = key
    if isinstance(score, bool) or not isinstance(score, int | float) or isinstance(pk, bool) \
            or not isinstance(pk, int) or not 0 < pk <= MAX_ID:
        raise invalid
    return float(score), pk


def duplicates_page(*, user: User, cursor: str | None = None, size: int = DUPLICATES_PAGE_SIZE) -> DuplicatesPage:
    """One page of the open duplicate suggestions `user` sees, best score first: one query, keyset on
    (score, id) descending."""
    position = _duplicates_position(cursor)
    queryset = _with_created(suggestion_list_for_user(user=user)).filter(status=DuplicateSuggestion.Status.OPEN)
    if position is not None:
        score, pk = position
        queryset = queryset.filter(Q(score__lt=score) | Q(score=score, pk__lt=pk))
    rows = list(queryset.order_by("-score", "-id")[:size + 1])
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = encode_cursor({"o": "duplicates", "k": [rows[-1].score, rows[-1].pk]})
    return DuplicatesPage(rows=[_suggestion_row(s) for s in rows], next_cursor=next_cursor)
