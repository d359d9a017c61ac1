"""The duplicate-suggestion queue: new customers scored as they arrive, reviewed or linked, rejections kept.

- **Outbox.** Ingest (`contacts.services.identities_resolve`) queues every customer it creates in `DedupeOutbox`,
  in the statement that creates them; the suggestion services queue the customers a merge changed.
  `dedupe_outbox_drain` takes up to `limit` rows with `SELECT ... FOR UPDATE SKIP LOCKED` (two drains at once
  never take the same customer), scores each customer with the candidate finder of `contacts.dedupe` and deletes
  the rows it took, all in one transaction: a drain that dies leaves its rows for the next.
- **Thresholds.** Below the suggest bar nothing is stored. Above it the pair becomes an open `DuplicateSuggestion`
  with its score, its evidence field by field and the model version. When the deployment switches auto-linking on
  (`settings.DEDUPE_AUTO_LINK`) and `contacts.dedupe.may_auto_link` holds (a strong identifier, agreeing names,
  nothing contrary, the auto-link bar), the drain merges the pair instead: a `merge` audit event by the model
  version (undone with `customer_unmerge` like any merge) and an `auto_link` event naming it.
- **Decisions.** `suggestion_accept` merges the pair into the older customer; `suggestion_reject` records a
  `suggestion_rejected` audit event and keeps the row as a cannot-link constraint: scoring leaves that pair out
  before ranking, so it is never suggested nor auto-linked again.
- **After a merge or unmerge** `suggestions_after_merge` deletes the open suggestions of the customers involved
  (a person never decided on them) and queues the customers for re-scoring. Merges made elsewhere are caught by
  `suggestions_sweep_merged`, which the scoring task runs first: open suggestions naming a tombstone go, and the
  survivor is queued.

Group co-presence (`contacts.copresence`: two customers' identities both wrote in one group thread) is looked
up once per batch for the customers taken and counts against each pair it names; an auto-link within the batch
hands the merged customer's co-presence on to the survivor.

Statements of one drain: 6 + 2 per customer scored (`blocks_probe` and the candidates' profiles), whatever the
number of suggestions; each auto-link adds a merge (about a dozen).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from socialcrm.errors import Conflict, NotFound, ServiceError
from socialcrm.sql import dumps_for_postgres

from . import copresence
from .dedupe import (
    DEFAULT_MODEL,
    Model,
    Suggestion,
    auto_link_enabled,
    duplicate_suggestions_for_profile,
    profiles_fetch,
)
from .merge import Actor, customer_merge
from .models import AuditEvent, Customer, DuplicateSuggestion

logger = logging.getLogger(__name__)

# How many queued customers one drain takes.
DRAIN_BATCH = 500

_TABLE = DuplicateSuggestion._meta.db_table


@dataclasses.dataclass(frozen=True, slots=True)
class DrainOutcome:
    """What one drain did: the customers it took off the outbox and scored, the suggestions it stored open, the
    pairs it linked automatically."""

    taken: int = 0
    scored: tuple[int, ...] = ()
    suggested: int = 0
    auto_linked: int = 0


def pair_of(a: int, b: int) -> tuple[int, int]:
    """The pair in stored order (lower id first)."""
    return (a, b) if a < b else (b, a)


def evidence_json(suggestion: Suggestion) -> list[dict[str, Any]]:
    """The explanation of a suggestion as stored: one entry per comparison, its level, bits and both values."""
    return [dataclasses.asdict(e) for e in suggestion.evidence]


def _actor_fields(actor: Actor) -> dict[str, Any]:
    if isinstance(actor, str):
        return {"actor": None, "actor_label": actor.strip()[:255]}
    return {"actor": actor, "actor_label": actor.get_username()[:255]}


def dedupe_outbox_enqueue(*, customer_ids: Iterable[int]) -> int:
    """Queue customers for (re-)scoring: one statement. A customer already queued moves to the end of the queue,
    so a drain that holds the older row does not take the new request away with it."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO contacts_dedupeoutbox (customer_id, enqueued_at)
               SELECT id, clock_timestamp() FROM unnest(%s::bigint[]) AS u(id)
               ON CONFLICT (customer_id) DO UPDATE SET enqueued_at = EXCLUDED.enqueued_at""",
            [ids],
        )
        return cursor.rowcount


def cannot_link(customer_ids: Collection[int]) -> dict[int, set[int]]:
    """The customers each of these may never be suggested with or linked to (rejected pairs): one statement."""
    if not customer_ids:
        return {}
    blocked: dict[int, set[int]] = defaultdict(set)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT customer_low, customer_high FROM {_TABLE}
                WHERE status = 'rejected' AND (customer_low = ANY(%s) OR customer_high = ANY(%s))""",
            [list(customer_ids), list(customer_ids)],
        )
        for low, high in cursor.fetchall():
            blocked[low].add(high)
            blocked[high].add(low)
    return dict(blocked)


def _suggestions_store(cursor: Any, subjects: Collection[int], found: Mapping[tuple[int, int], Suggestion]) -> int:
    """Upsert the open suggestions found for `subjects` and delete their open suggestions not found again (one
    statement: the rows deleted and the rows upserted are disjoint). Decided pairs (accepted, rejected,
    auto-linked) are never touched."""
    lows = [p[0] for p in found]
    highs = [p[1] for p in found]
    stale = f"""DELETE FROM {_TABLE} s WHERE s.status = 'open'
            AND (s.customer_low = ANY(%s) OR s.customer_high = ANY(%s))
            AND (s.customer_low, s.customer_high) NOT IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))"""
    if not found:
        cursor.execute(stale, [list(subjects), list(subjects), lows, highs])
        return 0
    now = timezone.now()
    cursor.execute(
        f"""WITH stale AS ({stale} RETURNING 1)
            INSERT INTO {_TABLE} (customer_low, customer_high, score, probability, explanation, model_version,
                                  status, created_at, updated_at, decided_by_label, reason)
            SELECT low, high, score, probability, explanation::jsonb, version, 'open', %s, %s, '', ''
            FROM unnest(%s::bigint[], %s::bigint[], %s::float8[], %s::float8[], %s::text[], %s::text[])
                 AS u(low, high, score, probability, explanation, version)
            ON CONFLICT (customer_low, customer_high) DO UPDATE SET
                score = EXCLUDED.score, probability = EXCLUDED.probability, explanation = EXCLUDED.explanation,
                model_version = EXCLUDED.model_version, updated_at = EXCLUDED.updated_at
            WHERE {_TABLE}.status = 'open'""",
        [list(subjects), list(subjects), lows, highs, now, now, lows, highs,
         [s.score for s in found.values()], [s.probability for s in found.values()],
         [dumps_for_postgres(evidence_json(s)) for s in found.values()], [s.model_version for s in found.values()]],
    )
    return cursor.rowcount


def _older_first(a: int, b: int) -> tuple[int, int]:
    """(target, source) of a merge of `a` and `b`: the older customer survives (ties: the lower id)."""
    created = dict(Customer.objects.filter(pk__in=[a, b]).values_list("pk", "created_at"))
    first, second = sorted([a, b], key=lambda pk: (created.get(pk) or timezone.now(), pk))
    return first, second


def _auto_link(subject_id: int, suggestion: Suggestion) -> AuditEvent | None:
    """Merge a pair the model may link on its own; None (the pair stays a suggestion) when the merge is refused."""
    target, source = _older_first(subject_id, suggestion.customer_id)
    low, high = pair_of(target, source)
    explanation = evidence_json(suggestion)
    try:
        merge_event = customer_merge(target=target, source=source, actor=suggestion.model_version,
                                     reason=f"auto-link: {suggestion.score:.1f} bits")
    except ServiceError as exc:  # a concurrent merge got there first, or the pair conflicts after all
        logger.info("auto-link of %s and %s refused: %s", target, source, exc)
        return None
    now = timezone.now()
    DuplicateSuggestion.objects.update_or_create(
        customer_low=low, customer_high=high,
        defaults={"score": suggestion.score, "probability": suggestion.probability, "explanation": explanation,
                  "model_version": suggestion.model_version, "status": DuplicateSuggestion.Status.AUTO_LINKED,
                  "decided_at": now, "decided_by_label": suggestion.model_version},
    )
    return AuditEvent.objects.create(
        kind=AuditEvent.Kind.AUTO_LINK, customer_id=target, source_customer_id=source,
        actor_label=suggestion.model_version[:255], reason=f"auto-link: {suggestion.score:.1f} bits",
        moved={"merge_event_id": merge_event.pk, "score": suggestion.score, "evidence": explanation},
    )


def dedupe_outbox_drain(*, limit: int = DRAIN_BATCH, model: Model = DEFAULT_MODEL,
                        auto_link: bool | None = None) -> DrainOutcome:
    """Score up to `limit` queued customers and take them off the outbox, in one transaction.

    `auto_link` overrides the deployment's `DEDUPE_AUTO_LINK`. Customers gone or merged away since they were
    queued are taken off unscored. See the module docstring for what is stored.
    """
    allow = auto_link_enabled() if auto_link is None else auto_link
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """SELECT customer_id, enqueued_at FROM contacts_dedupeoutbox ORDER BY enqueued_at, id
               LIMIT %s FOR UPDATE SKIP LOCKED""",
            [limit],
        )
        taken = cursor.fetchall()
        if not taken:
            return DrainOutcome()
        ids = [row[0] for row in taken]
        subjects = profiles_fetch(ids)
        blocked = cannot_link(list(subjects))
        # Group co-presence of the batch's customers with anyone (contrary evidence): one call for the batch.
        together = copresence.copresent_pairs(list(subjects))
        found: dict[tuple[int, int], Suggestion] = {}
        merged_away: set[int] = set()
        touched: set[int] = set()
        scored: list[int] = []
        linked = 0
        for customer_id in ids:
            profile = subjects.get(customer_id)
            if profile is None or customer_id in merged_away:
                continue
            scored.append(customer_id)
            ranked = duplicate_suggestions_for_profile(profile, model=model, auto_link=allow,
                                                       co_present=copresence.partners(together, customer_id),
                                                       exclude=blocked.get(customer_id, set()) | merged_away)
            for suggestion in ranked:
                pair = pair_of(customer_id, suggestion.customer_id)
                if suggestion.decision == "auto_link":
                    event = _auto_link(customer_id, suggestion)
                    if event is not None:
                        linked += 1
                        merged_away.add(event.source_customer_id)
                        together = copresence.pairs_after_merge(together, source=event.source_customer_id,
                                                                target=event.customer_id)
                        touched |= {event.customer_id, event.source_customer_id}
                        found.pop(pair, None)
                        continue
                current = found.get(pair)
                if current is None or suggestion.score > current.score:
                    found[pair] = suggestion
        found = {p: s for p, s in found.items() if not (set(p) & merged_away)}
        if touched:
            # Before storing: the survivors' old open suggestions go, and they are scored again on their merged
            # profile by the next drain (queued anew, their rows outlive the DELETE below).
            suggestions_after_merge(customer_ids=touched)
        suggested = _suggestions_store(cursor, scored, found)
        cursor.execute(
            """DELETE FROM contacts_dedupeoutbox o USING unnest(%s::bigint[], %s::timestamptz[]) AS t(id, at)
               WHERE o.customer_id = t.id AND o.enqueued_at = t.at""",
            [ids, [row[1] for row in taken]],
        )
    return DrainOutcome(taken=len(taken), scored=tuple(scored), suggested=suggested, auto_linked=linked)


def suggestions_after_merge(*, customer_ids: Iterable[int]) -> None:
    """Call after a merge or unmerge of these customers: delete their open suggestions (scored on profiles that
    no longer exist) and queue them for re-scoring (tombstones are dropped by the drain). Two statements."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"""DELETE FROM {_TABLE} WHERE status = 'open' AND (customer_low = ANY(%s) OR customer_high = ANY(%s))""",
            [ids, ids],
        )
    dedupe_outbox_enqueue(customer_ids=ids)


def suggestions_sweep_merged() -> int:
    """Close open suggestions naming a tombstone (a merge made outside these services) and queue the survivors
    for re-scoring: one statement. Returns how many suggestions were closed."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH stale AS (
                    DELETE FROM {_TABLE} s USING contacts_customer c
                    WHERE s.status = 'open' AND c.id IN (s.customer_low, s.customer_high)
                      AND c.merged_into_id IS NOT NULL
                    RETURNING s.id, s.customer_low, s.customer_high
                ), survivors AS (
                    SELECT DISTINCT coalesce(c.merged_into_id, c.id) AS id
                    FROM stale, contacts_customer c WHERE c.id IN (stale.customer_low, stale.customer_high)
                ), queued AS (
                    INSERT INTO contacts_dedupeoutbox (customer_id, enqueued_at)
                    SELECT id, clock_timestamp() FROM survivors
                    ON CONFLICT (customer_id) DO UPDATE SET enqueued_at = EXCLUDED.enqueued_at
                )
                SELECT count(DISTINCT id) FROM stale"""
        )
        return int(cursor.fetchone()[0])


def _lock_open(suggestion: DuplicateSuggestion | int) -> DuplicateSuggestion:
    pk = suggestion.pk if isinstance(suggestion, DuplicateSuggestion) else suggestion
    row = DuplicateSuggestion.objects.select_for_update().filter(pk=pk).first()
    if row is None:
        raise NotFound(f"duplicate suggestion {pk} does not exist", code="suggestion_not_found",
                           field="suggestion")
    if row.status != DuplicateSuggestion.Status.OPEN:
        raise Conflict(f"duplicate suggestion {pk} is already {row.status}", code="suggestion_decided",
                       field="suggestion")
    return row


def _decided_by(actor: Actor) -> dict[str, Any]:
    if isinstance(actor, AbstractBaseUser):
        return {"decided_by": actor, "decided_by_label": actor.get_username()[:255]}
    return {"decided_by": None, "decided_by_label": str(actor).strip()[:255]}


def suggestion_accept(*, suggestion: DuplicateSuggestion | int, actor: Actor, reason: str = "") -> AuditEvent:
    """Merge the pair of an open suggestion into the older customer; returns the merge's audit event.

    Raises `Conflict` when the suggestion was decided already, or when the merge is refused (see
    `contacts.merge.customer_merge`).
    """
    with transaction.atomic():
        row = _lock_open(suggestion)
        target, source = _older_first(*row.pair)
        event = customer_merge(target=target, source=source, actor=actor,
                               reason=reason or f"duplicate suggestion {row.pk} accepted")
        for name, value in {"status": DuplicateSuggestion.Status.ACCEPTED, "decided_at": timezone.now(),
                            "reason": reason, **_decided_by(actor)}.items():
            setattr(row, name, value)
        row.save()
        suggestions_after_merge(customer_ids=[target, source])
    return event


def suggestion_reject(*, suggestion: DuplicateSuggestion | int, actor: Actor, reason: str) -> DuplicateSuggestion:
    """Reject an open suggestion: the pair becomes a cannot-link constraint, recorded as a `suggestion_rejected`
    audit event. Raises `Conflict` when the suggestion was decided already."""
    with transaction.atomic():
        row = _lock_open(suggestion)
        for name, value in {"status": DuplicateSuggestion.Status.REJECTED, "decided_at": timezone.now(),
                            "reason": reason, **_decided_by(actor)}.items():
            setattr(row, name, value)
        row.save()
        AuditEvent.objects.create(
            kind=AuditEvent.Kind.SUGGESTION_REJECTED, customer_id=row.customer_low,
            source_customer_id=row.customer_high, reason=reason,
            moved={"suggestion_id": row.pk, "score": row.score, "model_version": row.model_version},
            **_actor_fields(actor),
        )
    return row
