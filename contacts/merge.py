"""Reversible merges, links and unlinks of customers, each recorded in the append-only audit log.

Every write runs in one transaction and locks the customers it touches first, in primary-key order
(`SELECT ... FOR NO KEY UPDATE`: other merges, unmerges and links of the same customers wait, ingest does
not, as it never locks an existing customer), then the identity rows it moves, again in primary-key order.
A second merge of the same pair therefore waits for the first and then finds its source (or target) a
tombstone. An ingest batch that refreshes the same identity rows waits for the merge, or the merge for it;
interactions point at identities, so either way they end up with the identity's customer. The batch updates
those rows in the order of its events, so the two can deadlock: a merge picked as the victim is run again
(`_retry_deadlocks`). Each service costs a fixed number of statements, whatever the number of identities,
contact points or interactions: rows move by batch UPDATEs over id lists, and interactions and
conversations are never touched; one more statement rewrites the search text (`contacts.search`) of the
customers involved.

Merge rules (`customer_merge_preview` shows them before anything is written):

- display name, postal address, birth date, language: the target's value wins where it is set, the
  source's value fills a blank; `choices={"field": "source"}` (or "target") overrides either way;
- customer number: the same, except that two different numbers are a conflict: the merge is refused
  (`customer_number_conflict`) unless `choices` says which one to keep;
- tags: union, the target's first and in its order, then the source's new ones;
- notes: the target's, then a separator naming the source, then the source's (no separator if one is empty);
- contact points: the source's move to the target, except those the target already has (same kind and
  normalized value): the target's row stays, takes the source's verification if only the source's was
  verified, and the source's row stays with the tombstone;
- identities: all move to the target (their conversations and interactions follow);
- the source becomes a tombstone (`merged_into`): it keeps its own field values, gives its tags and notes
  to the target and is never deleted.

Unmerge restores both profiles as they were before the merge, and interactions that arrived in between
follow their identities back. It is refused when the merge was already undone, or when a later merge in
which the target or the source took part (as either side) is not undone yet: merges are undone in reverse
order, because a later merge may have built its field values on this one's result. It is also refused
when one of the identities the merge moved is no longer with the target (a later link or unlink moved it:
undo that first). A field of the target that was edited after the merge keeps its edit (listed under
`kept` in the unmerge event); tags and notes lose exactly what the merge added.

`AuditEvent.moved` per kind:

- merge: `identity_ids`, `contact_point_ids` (moved from the source), `contact_points_verified`
  (`[{"id", "from_id", "before": {...}, "after": {...}}]`, target rows that took the source's verification),
  `source_before`, `target_before`, `target_after` (profile field values), `rules` (field -> rule),
  `tags_added`, `notes_added`;
- unmerge: `merge_event_id`, `identity_ids`, `contact_point_ids`, `contact_points_unverified`,
  `target_before` and `target_after` (at the unmerge), `source_after`, `kept`;
- link: `identity_ids`, `from_customer_id`, `to_customer_id` (inverted by linking back);
- unlink: `identity_ids`, `from_customer_id`, `new_customer_id` (inverted by merging the new customer
  back into the old one, or linking the identity back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, ParamSpec, TypeVar

import psycopg.errors
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from socialcrm.errors import Conflict, NotFound, ServiceError
from socialcrm.events import emit

from .models import AuditEvent, ContactPoint, Customer, SocialIdentity
from .search import customers_search_text_refresh

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SCALAR_FIELDS = ("display_name", "postal_address", "birth_date", "language", "customer_number")
PROFILE_FIELDS = (*SCALAR_FIELDS, "tags", "notes")
NOTES_SEPARATOR = "\n\n--- merged from customer {source_id} ---\n"
# A user, or the label of a rule or model version acting on its own ("rule:verified-phone", "dedupe-v3").
Actor = AbstractBaseUser | str
Side = Literal["target", "source"]

_DEADLOCK_ATTEMPTS = 3
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class ErrorCode(enum.StrEnum):
    """Stable codes of the errors raised here (the API maps them to 400 / 404 / 409)."""

    CUSTOMER_NOT_FOUND = "customer_not_found"
    IDENTITY_NOT_FOUND = "identity_not_found"
    AUDIT_EVENT_NOT_FOUND = "audit_event_not_found"
    ACTOR_REQUIRED = "actor_required"
    INVALID_CHOICE = "invalid_choice"
    MERGE_INTO_SELF = "merge_into_self"
    TARGET_MERGED = "target_merged"
    SOURCE_MERGED = "source_merged"
    CUSTOMER_NUMBER_CONFLICT = "customer_number_conflict"
    NOT_A_MERGE = "not_a_merge"
    ALREADY_UNDONE = "already_undone"
    LATER_MERGE_NOT_UNDONE = "later_merge_not_undone"
    IDENTITY_MOVED_SINCE = "identity_moved_since"
    MERGE_STATE_CHANGED = "merge_state_changed"
    ALREADY_LINKED = "already_linked"
    IDENTITY_MOVED = "identity_moved"
    ONLY_IDENTITY = "only_identity"


class Rule(enum.StrEnum):
    """How the merged value of one field was decided."""

    SAME = "same"
    BOTH_BLANK = "both_blank"
    TARGET_SET = "target_set"
    SOURCE_FILLS_BLANK = "source_fills_blank"
    CHOSEN_TARGET = "chosen_target"
    CHOSEN_SOURCE = "chosen_source"
    CONFLICT = "conflict"
    UNION = "union"
    CONCATENATED = "concatenated"

    @property
    def description(self) -> str:
        return _RULE_DESCRIPTIONS[self]


_RULE_DESCRIPTIONS = {
    Rule.SAME: "both hold the same value",
    Rule.BOTH_BLANK: "blank on both",
    Rule.TARGET_SET: "the target's value is kept where it is set",
    Rule.SOURCE_FILLS_BLANK: "the source's value fills the target's blank",
    Rule.CHOSEN_TARGET: "the target's value, as chosen",
    Rule.CHOSEN_SOURCE: "the source's value, as chosen",
    Rule.CONFLICT: "two different values: choose one",
    Rule.UNION: "union, the target's first",
    Rule.CONCATENATED: "the target's, a separator, then the source's",
}


class ContactPointOutcome(enum.StrEnum):
    KEPT = "kept"  # the target's, the source has none like it
    MOVED = "moved"  # the source's, moves to the target
    DUPLICATE = "duplicate"  # both have it: the target's row stays as it is, the source's stays with the tombstone
    VERIFICATION_FROM_SOURCE = "verification_from_source"  # both have it, only the source's is verified


@dataclasses.dataclass(frozen=True, slots=True)
class FieldPlan:
    """One profile field: what each side has, what the merge keeps, and the rule that decided it."""

    field: str
    target: Any
    source: Any
    result: Any
    rule: Rule

    @property
    def conflict(self) -> bool:
        return self.rule == Rule.CONFLICT


@dataclasses.dataclass(frozen=True, slots=True)
class ContactPointPlan:
    """One contact point (by kind and normalized value) of either side, and what the merge does with it."""

    kind: str
    normalized: str
    value: str
    outcome: ContactPointOutcome
    target_id: int | None
    source_id: int | None
    verified_at: dt.datetime | None  # after the merge
    verified_by: str


@dataclasses.dataclass(frozen=True, slots=True)
class MergePreview:
    """What merging `source_id` into `target_id` would do, field by field; nothing is written."""

    target_id: int
    source_id: int
    fields: tuple[FieldPlan, ...]
    contact_points: tuple[ContactPointPlan, ...]
    identity_ids: tuple[int, ...]  # the source's identities, which would move
    target_identity_ids: tuple[int, ...]

    @property
    def conflicts(self) -> tuple[str, ...]:
        """Fields that need a choice before the merge can run."""
        return tuple(f.field for f in self.fields if f.conflict)

    @property
    def can_merge(self) -> bool:
        return not self.conflicts

    def field(self, name: str) -> FieldPlan:
        return next(f for f in self.fields if f.field == name)

    def result(self) -> dict[str, Any]:
        """The target's profile fields after the merge."""
        return {f.field: f.result for f in self.fields}


# --- helpers -------------------------------------------------------------------------------------------------


def _retry_deadlocks(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` again (up to 3 times) when PostgreSQL picked its transaction as a deadlock victim.

    Only when `fn` runs its own outermost transaction: inside a caller's transaction the caller decides.
    A merge locks identity rows in primary-key order, but a concurrent ingest batch updates the same rows in
    the order of its events, so the two can, rarely, deadlock; the retried merge then simply waits its turn.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        attempts = 1 if connection.in_atomic_block else _DEADLOCK_ATTEMPTS
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs)
            except OperationalError as exc:
                if attempt >= attempts or not isinstance(exc.__cause__, _RETRYABLE):
                    raise
                logger.info("%s: %s, attempt %d of %d", fn.__name__, type(exc.__cause__).__name__, attempt,
                            attempts)
                attempt += 1

    return wrapper


def _pk(value: object, field: str, code: ErrorCode) -> int:
    pk = getattr(value, "pk", value)
    if isinstance(pk, bool) or not isinstance(pk, int):
        raise NotFound(f"{field} must be a saved object or an id", code=code, field=field)
    return pk


def _actor_fields(actor: Actor | None) -> dict[str, Any]:
    if isinstance(actor, str):
        if not actor.strip():
            raise ServiceError("an actor (user, rule or model version) is required", code=ErrorCode.ACTOR_REQUIRED,
                               field="actor")
        return {"actor": None, "actor_label": actor.strip()[:255]}
    if actor is None or getattr(actor, "pk", None) is None:
        raise ServiceError("an actor (user, rule or model version) is required", code=ErrorCode.ACTOR_REQUIRED,
                           field="actor")
    return {"actor": actor, "actor_label": actor.get_username()[:255]}


def _check_choices(choices: Mapping[str, Side] | None) -> dict[str, Side]:
    choices = dict(choices or {})
    for name, side in choices.items():
        if name not in SCALAR_FIELDS:
            raise ServiceError(f"no choice can be made for {name!r}; fields: {', '.join(SCALAR_FIELDS)}",
                               code=ErrorCode.INVALID_CHOICE, field=f"choices.{name}")
        if side not in ("target", "source"):
            raise ServiceError(f"choose 'target' or 'source' for {name}, not {side!r}",
                               code=ErrorCode.INVALID_CHOICE, field=f"choices.{name}")
    return choices


def _lock_customers(ids: Iterable[int]) -> dict[int, Customer]:
    """The customers, locked in primary-key order (one statement)."""
    rows = Customer.objects.select_for_update(no_key=True).filter(pk__in=sorted(set(ids))).order_by("pk")
    return {c.pk: c for c in rows}


def _customer(customers: Mapping[int, Customer], pk: int, field: str) -> Customer:
    try:
        return customers[pk]
    except KeyError:
        raise NotFound(f"customer {pk} does not exist", code=ErrorCode.CUSTOMER_NOT_FOUND, field=field) from None


def _check_pair(target: Customer, source: Customer) -> None:
    if target.merged_into_id is not None:
        raise Conflict(f"customer {target.pk} was merged into customer {target.merged_into_id}; merge into that one",
                       code=ErrorCode.TARGET_MERGED, field="target")
    if source.merged_into_id is not None:
        raise Conflict(f"customer {source.pk} was already merged into customer {source.merged_into_id}",
                       code=ErrorCode.SOURCE_MERGED, field="source")


def _profile(customer: Customer) -> dict[str, Any]:
    values = {f: getattr(customer, f) for f in PROFILE_FIELDS}
    values["tags"] = list(values["tags"] or [])
    return values


def _dump_profile(values: Mapping[str, Any]) -> dict[str, Any]:
    """Profile values as JSON (dates as ISO strings)."""
    return {f: v.isoformat() if isinstance(v, dt.date) else v for f, v in values.items()}


def _load_profile(data: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(data)
    if isinstance(values.get("birth_date"), str):
        values["birth_date"] = dt.date.fromisoformat(values["birth_date"])
    return values


def _dump_verification(verified_at: dt.datetime | None, verified_by: str) -> dict[str, Any]:
    # isoformat keeps the microseconds (Django's JSON encoder would cut them to milliseconds).
    return {"verified_at": verified_at.isoformat() if verified_at else None, "verified_by": verified_by}


def _load_verification(data: Mapping[str, Any]) -> tuple[dt.datetime | None, str]:
    at = data.get("verified_at")
    return (dt.datetime.fromisoformat(at) if at else None), data.get("verified_by") or ""


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _plan_scalar(name: str, target: Any, source: Any, choice: Side | None) -> FieldPlan:
    if choice == "target":
        return FieldPlan(name, target, source, target, Rule.CHOSEN_TARGET)
    if choice == "source":
        return FieldPlan(name, target, source, source, Rule.CHOSEN_SOURCE)
    if _blank(target) and _blank(source):
        return FieldPlan(name, target, source, target, Rule.BOTH_BLANK)
    if _blank(target):
        return FieldPlan(name, target, source, source, Rule.SOURCE_FILLS_BLANK)
    if _blank(source) or target == source:
        return FieldPlan(name, target, source, target, Rule.TARGET_SET if target != source else Rule.SAME)
    if name == "customer_number" and target.strip() != source.strip():
        # Two different numbers in the business system: most likely two people. A person decides.
        return FieldPlan(name, target, source, target, Rule.CONFLICT)
    return FieldPlan(name, target, source, target, Rule.TARGET_SET)


def _merged_notes(target: str, source: str, source_id: int) -> str:
    if not source:
        return target
    if not target:
        return source
    return target + NOTES_SEPARATOR.format(source_id=source_id) + source


def _plan_fields(target: Customer, source: Customer, choices: Mapping[str, Side]) -> tuple[FieldPlan, ...]:
    t, s = _profile(target), _profile(source)
    plans = [_plan_scalar(name, t[name], s[name], choices.get(name)) for name in SCALAR_FIELDS]
    tags = list(dict.fromkeys([*t["tags"], *s["tags"]]))
    plans.append(FieldPlan("tags", t["tags"], s["tags"], tags, Rule.SAME if tags == t["tags"] else Rule.UNION))
    notes = _merged_notes(t["notes"], s["notes"], source.pk)
    plans.append(FieldPlan("notes", t["notes"], s["notes"], notes, Rule.SAME if notes == t["notes"]
                           else Rule.CONCATENATED))
    return tuple(plans)


def _plan_contact_points(points: Iterable[ContactPoint], target_id: int) -> tuple[ContactPointPlan, ...]:
    ours: dict[tuple[str, str], ContactPoint] = {}
    theirs: dict[tuple[str, str], ContactPoint] = {}
    for p in points:
        (ours if p.customer_id == target_id else theirs)[(p.kind, p.normalized)] = p
    plans = []
    for key, p in ours.items():
        twin = theirs.get(key)
        if twin is None:
            outcome, at, by = ContactPointOutcome.KEPT, p.verified_at, p.verified_by
        elif p.verified_at is None and twin.verified_at is not None:
            outcome, at, by = ContactPointOutcome.VERIFICATION_FROM_SOURCE, twin.verified_at, twin.verified_by
        else:
            outcome, at, by = ContactPointOutcome.DUPLICATE, p.verified_at, p.verified_by
        plans.append(ContactPointPlan(p.kind, p.normalized, p.value, outcome, p.pk, twin.pk if twin else None, at,
                                      by))
    for key, p in theirs.items():
        if key not in ours:
            plans.append(ContactPointPlan(p.kind, p.normalized, p.value, ContactPointOutcome.MOVED, None, p.pk,
                                          p.verified_at, p.verified_by))
    return tuple(plans)


def _preview(target: Customer, source: Customer, points: Iterable[ContactPoint], identity_ids: Iterable[int],
             target_identity_ids: Iterable[int], choices: Mapping[str, Side]) -> MergePreview:
    return MergePreview(
        target_id=target.pk, source_id=source.pk, fields=_plan_fields(target, source, choices),
        contact_points=_plan_contact_points(points, target.pk), identity_ids=tuple(identity_ids),
        target_identity_ids=tuple(target_identity_ids),
    )


def _set_verification(rows: list[tuple[int, dt.datetime | None, str]], *, customer_id: int, now: dt.datetime,
                      only_if: list[tuple[dt.datetime | None, str]] | None = None) -> list[int]:
    """Set (verified_at, verified_by) of contact points by id in one statement; with `only_if`, only on rows
    whose verification still is the given one. Returns the ids written."""
    if not rows:
        return []
    expected = only_if or [(None, "")] * len(rows)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE contacts_contactpoint cp SET verified_at = v.verified_at, verified_by = v.verified_by,
                                                updated_at = %s
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::timestamptz[], %s::text[])
                AS v(id, verified_at, verified_by, expected_at, expected_by)
            WHERE cp.id = v.id AND cp.customer_id = %s
              AND (NOT %s OR (cp.verified_at IS NOT DISTINCT FROM v.expected_at AND cp.verified_by = v.expected_by))
            RETURNING cp.id
            """,
            [now, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [e[0] for e in expected],
             [e[1] for e in expected], customer_id, only_if is not None],
        )
        return sorted(r[0] for r in cursor.fetchall())


def _move_contact_points(ids: list[int], *, from_id: int, to_id: int, now: dt.datetime) -> list[int]:
    """Move contact points by id (those still with `from_id`) in one statement; returns the ids moved."""
    if not ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE contacts_contactpoint SET customer_id = %s, updated_at = %s"
            " WHERE id = ANY(%s::bigint[]) AND customer_id = %s RETURNING id",
            [to_id, now, ids, from_id],
        )
        return sorted(r[0] for r in cursor.fetchall())


# --- merge ---------------------------------------------------------------------------------------------------


def customer_merge_preview(*, target: Customer | int, source: Customer | int,
                           choices: Mapping[str, Side] | None = None) -> MergePreview:
    """What `customer_merge` would do with these two customers (and these `choices`), without writing.

    Raises what the merge would raise for the pair itself (unknown customer, merging into itself, a tombstone
    on either side); a customer number conflict is reported in `conflicts` instead, for a person to choose.
    """
    target_id = _pk(target, "target", ErrorCode.CUSTOMER_NOT_FOUND)
    source_id = _pk(source, "source", ErrorCode.CUSTOMER_NOT_FOUND)
    choices = _check_choices(choices)
    if target_id == source_id:
        raise Conflict("a customer cannot be merged into itself", code=ErrorCode.MERGE_INTO_SELF, field="source")
    customers = Customer.objects.in_bulk([target_id, source_id])
    target_row = _customer(customers, target_id, "target")
    source_row = _customer(customers, source_id, "source")
    _check_pair(target_row, source_row)
    identities = list(SocialIdentity.objects.filter(customer_id__in=[target_id, source_id]).order_by("pk")
                      .values_list("pk", "customer_id"))
    points = ContactPoint.objects.filter(customer_id__in=[target_id, source_id]).order_by("pk")
    return _preview(target_row, source_row, points, [pk for pk, c in identities if c == source_id],
                    [pk for pk, c in identities if c == target_id], choices)


@_retry_deadlocks
def customer_merge(*, target: Customer | int, source: Customer | int, actor: Actor, reason: str = "",
                   choices: Mapping[str, Side] | None = None) -> AuditEvent:
    """Merge `source` into `target` by the rules in the module docstring; the source becomes a tombstone.

    Returns the merge's audit event, which `customer_unmerge` inverts. Ten statements whatever the size of
    either customer. Raises `Conflict` for a merge into itself (`merge_into_self`), into or from a tombstone
    (`target_merged`, `source_merged`; also the outcome for the loser of two concurrent merges of one pair),
    and for two different customer numbers without a choice (`customer_number_conflict`).
    """
    target_id = _pk(target, "target", ErrorCode.CUSTOMER_NOT_FOUND)
    source_id = _pk(source, "source", ErrorCode.CUSTOMER_NOT_FOUND)
    actor_fields = _actor_fields(actor)
    choices = _check_choices(choices)
    if target_id == source_id:
        raise Conflict("a customer cannot be merged into itself", code=ErrorCode.MERGE_INTO_SELF, field="source")
    with transaction.atomic():
        customers = _lock_customers([target_id, source_id])
        target_row = _customer(customers, target_id, "target")
        source_row = _customer(customers, source_id, "source")
        _check_pair(target_row, source_row)
        identity_ids = list(SocialIdentity.objects.select_for_update(no_key=True).filter(customer_id=source_id)
                            .order_by("pk").values_list("pk", flat=True))
        points = list(ContactPoint.objects.filter(customer_id__in=[target_id, source_id]).order_by("pk"))
        plan = _preview(target_row, source_row, points, identity_ids, (), choices)
        if plan.conflicts:
            name = plan.conflicts[0]
            field = plan.field(name)
            raise Conflict(f"the customers have different {name.replace('_', ' ')}s ({field.target!r} and "
                           f"{field.source!r}): choose one with choices={{{name!r}: 'target' or 'source'}}",
                           code=ErrorCode.CUSTOMER_NUMBER_CONFLICT, field=name)

        now = timezone.now()
        if identity_ids:
            SocialIdentity.objects.filter(pk__in=identity_ids).update(customer_id=target_id)
        moved_points = _move_contact_points(
            [p.source_id for p in plan.contact_points if p.outcome == ContactPointOutcome.MOVED],
            from_id=source_id, to_id=target_id, now=now,
        )
        verify = [p for p in plan.contact_points if p.outcome == ContactPointOutcome.VERIFICATION_FROM_SOURCE]
        before_by_id = {p.pk: (p.verified_at, p.verified_by) for p in points}
        _set_verification([(p.target_id, p.verified_at, p.verified_by) for p in verify], customer_id=target_id,
                          now=now)
        target_before, source_before = _profile(target_row), _profile(source_row)
        target_after = plan.result()
        Customer.objects.filter(pk=target_id).update(**target_after, updated_at=now)
        Customer.objects.filter(pk=source_id).update(merged_into_id=target_id, tags=[], notes="", updated_at=now)
        customers_search_text_refresh(customer_ids=[target_id, source_id])
        added_notes = target_after["notes"][len(target_before["notes"]):]
        event = AuditEvent.objects.create(
            kind=AuditEvent.Kind.MERGE, customer_id=target_id, source_customer_id=source_id, reason=reason,
            moved={
                "identity_ids": identity_ids,
                "contact_point_ids": moved_points,
                "contact_points_verified": [
                    {"id": p.target_id, "from_id": p.source_id,
                     "before": _dump_verification(*before_by_id[p.target_id]),
                     "after": _dump_verification(p.verified_at, p.verified_by)}
                    for p in verify
                ],
                "source_before": _dump_profile(source_before),
                "target_before": _dump_profile(target_before),
                "target_after": _dump_profile(target_after),
                "rules": {f.field: str(f.rule) for f in plan.fields},
                "tags_added": [t for t in target_after["tags"] if t not in target_before["tags"]],
                "notes_added": added_notes,
            },
            **actor_fields,
        )
        emit("customer.merged", {"target_id": target_id, "source_id": source_id, "audit_event_id": event.pk})
    logger.info("merged customer %s into %s (event %s, %d identities)", source_id, target_id, event.pk,
                len(identity_ids))
    _suggestions_refresh([source_id, target_id])
    return event


def _restore_notes(current: str, before: str, after: str, added: str) -> tuple[str, bool]:
    """The target's notes without what the merge appended; True if later edits were kept."""
    if current == after:
        return before, False
    if added and current.startswith(after):
        return before + current[len(after):], True
    if added and added in current:
        return current.replace(added, "", 1), True
    return current, bool(added)


@_retry_deadlocks
def customer_unmerge(*, merge_event: AuditEvent | int, actor: Actor, reason: str = "") -> AuditEvent:
    """Undo a merge: both customers as they were before it, each with its own identities and contact points.

    Returns the unmerge's audit event (the merge event's `undone_by`). Raises `Conflict` if the merge was
    already undone (`already_undone`), if a later merge involving either customer is not undone yet
    (`later_merge_not_undone`), or if an identity the merge moved is no longer with the target
    (`identity_moved_since`). See the module docstring for how later edits of the target are treated.
    """
    event_id = _pk(merge_event, "merge_event", ErrorCode.AUDIT_EVENT_NOT_FOUND)
    actor_fields = _actor_fields(actor)
    head = AuditEvent.objects.filter(pk=event_id).values_list("kind", "customer_id", "source_customer_id").first()
    if head is None:
        raise NotFound(f"audit event {event_id} does not exist", code=ErrorCode.AUDIT_EVENT_NOT_FOUND,
                       field="merge_event")
    kind, target_id, source_id = head
    if kind != AuditEvent.Kind.MERGE:
        raise ServiceError(f"audit event {event_id} is a {kind}, not a merge", code=ErrorCode.NOT_A_MERGE,
                           field="merge_event")
    with transaction.atomic():
        customers = _lock_customers([target_id, source_id])
        event = AuditEvent.objects.select_for_update().get(pk=event_id)
        if event.undone_by_id is not None:
            raise Conflict(f"merge {event_id} was already undone by event {event.undone_by_id}",
                           code=ErrorCode.ALREADY_UNDONE, field="merge_event")
        pair = [target_id, source_id]
        later = list(AuditEvent.objects.filter(kind=AuditEvent.Kind.MERGE, pk__gt=event_id, undone_by__isnull=True)
                     .filter(Q(customer_id__in=pair) | Q(source_customer_id__in=pair)).order_by("-pk")
                     .values_list("pk", flat=True)[:20])
        if later:
            raise Conflict(f"later merges involving customer {target_id} or {source_id} are not undone: undo "
                           f"{', '.join(map(str, later))} first (newest first)",
                           code=ErrorCode.LATER_MERGE_NOT_UNDONE, field="merge_event")
        target_row = _customer(customers, target_id, "merge_event")
        source_row = _customer(customers, source_id, "merge_event")
        if target_row.merged_into_id is not None or source_row.merged_into_id != target_id:
            raise Conflict(f"customer {source_id} is no longer a tombstone of customer {target_id}",
                           code=ErrorCode.MERGE_STATE_CHANGED, field="merge_event")
        moved = event.moved
        identity_ids = list(moved["identity_ids"])
        where = dict(SocialIdentity.objects.select_for_update(no_key=True).filter(pk__in=identity_ids)
                     .order_by("pk").values_list("pk", "customer_id"))
        astray = [pk for pk in identity_ids if where.get(pk) != target_id]
        if astray:
            raise Conflict(f"identities {astray} are no longer with customer {target_id}: undo what moved them "
                           "first", code=ErrorCode.IDENTITY_MOVED_SINCE, field="merge_event")

        now = timezone.now()
        if identity_ids:
            SocialIdentity.objects.filter(pk__in=identity_ids).update(customer_id=source_id)
        points_back = _move_contact_points(list(moved["contact_point_ids"]), from_id=target_id, to_id=source_id,
                                           now=now)
        verified = moved["contact_points_verified"]
        unverified = _set_verification(
            [(v["id"], *_load_verification(v["before"])) for v in verified], customer_id=target_id, now=now,
            only_if=[_load_verification(v["after"]) for v in verified],
        )

        before, after = _load_profile(moved["target_before"]), _load_profile(moved["target_after"])
        current = _profile(target_row)
        restored: dict[str, Any] = {}
        kept: list[str] = []
        for name in SCALAR_FIELDS:
            if after[name] == before[name]:
                restored[name] = current[name]
            elif current[name] == after[name]:
                restored[name] = before[name]
            else:
                restored[name] = current[name]
                kept.append(name)
        added_tags = set(moved["tags_added"])
        if current["tags"] == after["tags"]:
            restored["tags"] = before["tags"]
        else:
            restored["tags"] = [t for t in current["tags"] if t not in added_tags]
            kept.append("tags")
        restored["notes"], notes_kept = _restore_notes(current["notes"], before["notes"], after["notes"],
                                                       moved["notes_added"])
        if notes_kept:
            kept.append("notes")
        source_after = _load_profile(moved["source_before"])
        Customer.objects.filter(pk=target_id).update(**restored, updated_at=now)
        Customer.objects.filter(pk=source_id).update(**source_after, merged_into_id=None, updated_at=now)
        customers_search_text_refresh(customer_ids=[target_id, source_id])
        undo = AuditEvent.objects.create(
            kind=AuditEvent.Kind.UNMERGE, customer_id=target_id, source_customer_id=source_id, reason=reason,
            moved={
                "merge_event_id": event_id,
                "identity_ids": identity_ids,
                "contact_point_ids": points_back,
                "contact_points_unverified": unverified,
                "target_before": _dump_profile(current),
                "target_after": _dump_profile(restored),
                "source_after": _dump_profile(source_after),
                "kept": kept,
            },
            **actor_fields,
        )
        AuditEvent.objects.filter(pk=event_id).mark_undone(by=undo)
        emit("customer.unmerged", {"target_id": target_id, "source_id": source_id, "audit_event_id": undo.pk})
    logger.info("unmerged customer %s from %s (event %s undoes %s)", source_id, target_id, undo.pk, event_id)
    _suggestions_refresh([source_id, target_id])
    return undo


def _suggestions_refresh(customer_ids: list[int]) -> None:
    """Close the open duplicate suggestions of customers whose profiles just changed and queue them for re-scoring
    (two statements)."""
    from .suggestions import suggestions_after_merge  # suggestions.py builds on this module

    suggestions_after_merge(customer_ids=customer_ids)


# --- identities ----------------------------------------------------------------------------------------------


def _identity_owner(identity_id: int) -> int:
    owner = SocialIdentity.objects.filter(pk=identity_id).values_list("customer_id", flat=True).first()
    if owner is None:
        raise NotFound(f"social identity {identity_id} does not exist", code=ErrorCode.IDENTITY_NOT_FOUND,
                       field="identity")
    return owner


def _lock_identity(identity_id: int, owner: int) -> SocialIdentity:
    """The identity, locked, after checking that it still belongs to `owner` (whose row the caller locked)."""
    locked = SocialIdentity.objects.select_for_update(no_key=True).filter(pk=identity_id).first()
    if locked is None or locked.customer_id != owner:
        raise Conflict(f"social identity {identity_id} was moved by a concurrent change; try again",
                       code=ErrorCode.IDENTITY_MOVED, field="identity")
    return locked


@_retry_deadlocks
def identity_link(*, identity: SocialIdentity | int, customer: Customer | int, actor: Actor,
                  reason: str) -> AuditEvent:
    """Move one identity (and with it its conversations and interactions) to `customer`; returns the audit event.

    Inverted by linking it back to the event's `source_customer`. The customer it leaves stays, even without
    identities. Raises `Conflict` if the identity already belongs to `customer` (`already_linked`) or
    `customer` is a tombstone (`target_merged`).
    """
    identity_id = _pk(identity, "identity", ErrorCode.IDENTITY_NOT_FOUND)
    customer_id = _pk(customer, "customer", ErrorCode.CUSTOMER_NOT_FOUND)
    actor_fields = _actor_fields(actor)
    owner = _identity_owner(identity_id)
    if owner == customer_id:
        raise Conflict(f"social identity {identity_id} already belongs to customer {customer_id}",
                       code=ErrorCode.ALREADY_LINKED, field="customer")
    with transaction.atomic():
        customers = _lock_customers([owner, customer_id])
        new_owner = _customer(customers, customer_id, "customer")
        if new_owner.merged_into_id is not None:
            raise Conflict(f"customer {customer_id} was merged into customer {new_owner.merged_into_id}; link to "
                           "that one", code=ErrorCode.TARGET_MERGED, field="customer")
        _lock_identity(identity_id, owner)
        SocialIdentity.objects.filter(pk=identity_id).update(customer_id=customer_id)
        customers_search_text_refresh(customer_ids=[owner, customer_id])
        event = AuditEvent.objects.create(
            kind=AuditEvent.Kind.LINK, customer_id=customer_id, source_customer_id=owner, reason=reason,
            moved={"identity_ids": [identity_id], "from_customer_id": owner, "to_customer_id": customer_id},
            **actor_fields,
        )
    logger.info("linked identity %s from customer %s to %s (event %s)", identity_id, owner, customer_id, event.pk)
    return event


@_retry_deadlocks
def identity_unlink(*, identity: SocialIdentity | int, actor: Actor, reason: str) -> Customer:
    """Split one identity off its customer into a new customer of its own; returns the new customer.

    The new customer is named after the identity and has no other data. Inverted by merging the new customer
    back into the old one (or linking the identity back). Raises `Conflict` (`only_identity`) if the identity
    is its customer's only one: there is nothing to split it from.
    """
    identity_id = _pk(identity, "identity", ErrorCode.IDENTITY_NOT_FOUND)
    actor_fields = _actor_fields(actor)
    owner = _identity_owner(identity_id)
    with transaction.atomic():
        _customer(_lock_customers([owner]), owner, "identity")
        row = _lock_identity(identity_id, owner)
        # Every move of an identity locks its customer first, so this count cannot change under us.
        if SocialIdentity.objects.filter(customer_id=owner).count() < 2:
            raise Conflict(f"social identity {identity_id} is the only identity of customer {owner}",
                           code=ErrorCode.ONLY_IDENTITY, field="identity")
        name = row.display_name or row.handle or f"{row.platform} {row.external_id}"
        new_customer = Customer.objects.create(display_name=name[:255])
        SocialIdentity.objects.filter(pk=identity_id).update(customer_id=new_customer.pk)
        customers_search_text_refresh(customer_ids=[owner, new_customer.pk])
        event = AuditEvent.objects.create(
            kind=AuditEvent.Kind.UNLINK, customer_id=new_customer.pk, source_customer_id=owner, reason=reason,
            moved={"identity_ids": [identity_id], "from_customer_id": owner, "new_customer_id": new_customer.pk},
            **actor_fields,
        )
    logger.info("unlinked identity %s from customer %s into new customer %s (event %s)", identity_id, owner,
                new_customer.pk, event.pk)
    return new_customer
