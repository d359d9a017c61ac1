"""The one write path for inbound events: `ingest(account, events)`.

One batch is one transaction and a fixed number of statements whatever its size:

1. `contacts.services.identities_resolve`: upsert the authors' social identities, refreshing the profiles
   that changed and creating a customer for each identity seen for the first time (1 statement after the
   staging COPY; 1 more when a known author changed name or handle);
2. `conversations.services.conversations_touch`: create the threads the batch opens, move the clocks of
   those it continues (1 after the staging COPY);
3. `conversations.services.interactions_record`: insert every interaction, merging edits, deletes and
   re-deliveries by (channel account, external id) (1 after the staging COPY);
4. `conversations.services.interactions_apply_statuses`: move our replies forward by the platform's
   delivery reports (1, only when the batch has any).

A batch that races a concurrent one for the same new author or thread takes a few statements more to use the
other batch's rows. Python's cyclic garbage collector is paused while a batch runs (`socialcrm.gcpause`):
a batch allocates tens of thousands of short-lived objects, which reference counting frees anyway.

Events are validated first; a malformed one is rejected with its reason and the rest are stored. Then, with the
erasure lock shared until commit (`contacts.gdpr.erasure_lock`: an erasure waits for the batch, and the batch
for an erasure under way), one query of the GDPR erasure ledger (`contacts.gdpr.erasures_lookup`, only when the
batch has authors or threads) drops every event by an erased identity, or in an erased thread, that happened at
or before the erasure: a late or replayed delivery re-creates nothing, while a newer message starts a fresh
profile.
Re-ingesting a batch changes nothing; edits and deletes that arrive before their create end in the same
state as in-order delivery, and a late create never undoes a delete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable

from django.db import transaction

from contacts.gdpr import erasure_lock, erasures_lookup
from contacts.services import IdentityKey, IdentitySeen, identities_resolve
from contacts.tasks import score_new_customers
from conversations.services import (
    InteractionRow,
    StatusReport,
    ThreadActivity,
    conversations_touch,
    interactions_apply_statuses,
    interactions_record,
)
from socialcrm.debounce import enqueue_once_per_window
from socialcrm.events import emit
from socialcrm.gcpause import collector_paused

from .adapters.base import CREATE_KINDS, MAX_TEXT, Direction, EventKind, InboundEvent
from .models import ChannelAccount

logger = logging.getLogger(__name__)

# Batches that create customers within this window share one duplicate-scoring run.
SCORING_WINDOW = 2.0
_SCORING_KEY = "socialcrm:dedupe-scoring-due"


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    external_id: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    inserted: int
    updated: int
    unchanged: int
    identities_created: int
    rejected: tuple[Rejection, ...] = ()
    statuses_applied: int = 0
    # Events of erased people from before their erasure (GDPR), dropped unstored.
    erased: int = 0


@dataclasses.dataclass(slots=True)
class _Fold:
    """Every event of one batch about one external id, folded into what the database row should become."""

    create: InboundEvent | None = None
    # The customer-side author of `create` (`_identity_key`), None for our own messages.
    author_key: IdentityKey | None = None
    text: str = ""
    attachments: tuple = ()
    reply_to_id: str = ""
    edit: InboundEvent | None = None
    deleted_at: dt.datetime | None = None
    first_seen_at: dt.datetime | None = None

    def add(self, event: InboundEvent, author_key: IdentityKey | None) -> None:
        at = event.occurred_at
        self.first_seen_at = at if self.first_seen_at is None else min(self.first_seen_at, at)
        if event.kind in CREATE_KINDS:
            if self.create is None:
                self.create = event
                self.author_key = author_key
            # A re-delivery may carry what the first delivery lacked (text, media).
            self.text = self.text or event.text
            self.attachments = self.attachments or event.attachments
            self.reply_to_id = self.reply_to_id or event.reply_to_id
        elif event.kind == EventKind.EDIT:
            if self.edit is None or at > self.edit.occurred_at:
                self.edit = event
        elif event.kind == EventKind.DELETE:
            self.deleted_at = at if self.deleted_at is None else min(self.deleted_at, at)


def _validate(events: Iterable[object]) -> tuple[list[InboundEvent], list[Rejection]]:
    valid: list[InboundEvent] = []
    rejected: list[Rejection] = []
    for index, event in enumerate(events):
        if not isinstance(event, InboundEvent):
            rejected.append(Rejection(index, "", f"not an InboundEvent: {type(event).__name__}"))
            continue
        problems = event.problems()
        if problems:
            rejected.append(Rejection(index, str(event.external_id)[:255], "; ".join(problems)))
            continue
        if len(event.text) > MAX_TEXT:
            # Never lose a message for its size: keep the first MAX_TEXT characters and say so.
            event = dataclasses.replace(
                event, text=event.text[:MAX_TEXT], raw={**event.raw, "_socialcrm_truncated_text": len(event.text)}
            )
        valid.append(event)
    return valid, rejected


def _identity_key(event: InboundEvent) -> IdentityKey | None:
    """The customer-side author of an event; our own outbound messages have none."""
    author = event.author
    if author is None or event.direction == Direction.OUTBOUND:
        return None
    return (author.platform or event.platform, author.scope, author.external_id)


def _drop_erased(account: ChannelAccount, events: list[tuple[InboundEvent, IdentityKey | None]]
                 ) -> tuple[list[tuple[InboundEvent, IdentityKey | None]], int]:
    """The events (each with its `_identity_key`) left after dropping those from before an erasure: by an erased
    identity, or without a customer-side author (our own replies) in an erased person's thread. Other people's
    events in such a thread are kept."""
    # Threads matter only for events without a customer-side author (our own replies).
    erasures = erasures_lookup(identity_keys=[k for _, k in events if k is not None], channel_account_id=account.pk,
                               thread_keys=[e.thread_key for e, k in events if k is None])
    if not erasures:
        return events, 0
    kept = []
    for event, key in events:
        erased_at = erasures.identities.get(key) if key is not None else None
        thread_erased_at = erasures.threads.get(event.thread_key)
        if (erased_at is not None and event.occurred_at <= erased_at) or (
                key is None and thread_erased_at is not None and event.occurred_at <= thread_erased_at):
            continue
        kept.append((event, key))
    return kept, len(events) - len(kept)


def _schedule_scoring() -> None:
    """One `contacts.score_new_customers` run per window for the customers the batches of that window queued."""
    enqueue_once_per_window(score_new_customers, key=_SCORING_KEY, window=SCORING_WINDOW)


def ingest(account: ChannelAccount, events: Iterable[object]) -> IngestResult:
    """Store one batch of inbound events for `account`. See the module docstring for the guarantees."""
    with collector_paused():
        return _ingest(account, events)


def _ingest(account: ChannelAccount, events: Iterable[object]) -> IngestResult:
    received = list(events)
    valid, rejected = _validate(received)
    for r in rejected:
        logger.warning("ingest: rejected event %s on account %s: %s", r.external_id or f"#{r.index}", account.pk,
                       r.reason)
    with transaction.atomic():
        # Shared until commit: an erasure waits for this batch, and the ledger is read after any erasure in progress.
        erasure_lock(shared=True)
        keyed, erased = _drop_erased(account, [(event, _identity_key(event)) for event in valid])

        folds: dict[str, _Fold] = {}
        sightings: list[IdentitySeen] = []
        statuses: list[InboundEvent] = []
        for event, key in keyed:
            if event.kind == EventKind.STATUS:
                statuses.append(event)
                continue
            fold = folds.get(event.external_id)
            if fold is None:
                fold = folds[event.external_id] = _Fold()
            fold.add(event, key)
            if key is not None and event.kind in CREATE_KINDS:
                a = event.author
                sightings.append(IdentitySeen(
                    platform=key[0], scope=key[1], external_id=key[2], seen_at=event.occurred_at, handle=a.handle,
                    display_name=a.display_name, avatar_url=a.avatar_url, profile_url=a.profile_url,
                    raw_profile=dict(a.raw) if a.raw else {},
                ))

        identities = identities_resolve(seen=sightings)
        threads: dict[str, ThreadActivity] = {}
        for fold in folds.values():
            create = fold.create
            if create is None:
                continue
            key = fold.author_key
            thread = threads.get(create.thread_key)
            if thread is None:
                thread = threads[create.thread_key] = ThreadActivity(create.thread_key)
            thread.saw(at=create.occurred_at, inbound=create.direction == Direction.INBOUND,
                       identity_id=identities[key].identity_id if key is not None else None)
        refs = conversations_touch(channel_account_id=account.pk, threads=list(threads.values()))

        rows = []
        for external_id, fold in folds.items():
            create, edit = fold.create, fold.edit
            row = InteractionRow(
                external_id=external_id,
                occurred_at=create.occurred_at if create else fold.first_seen_at,
                is_stub=create is None,
                deleted_at=fold.deleted_at,
            )
            if create is not None:
                ref = refs[create.thread_key]
                key = fold.author_key
                row.kind = str(create.kind)
                row.direction = str(create.direction)
                row.conversation_id = ref.conversation_id
                row.identity_id = identities[key].identity_id if key is not None else ref.identity_id
                row.text = fold.text
                row.reply_to_external_id = fold.reply_to_id
                row.attachments = [dict(a) for a in fold.attachments]
                row.raw = dict(create.raw)
            if edit is not None:
                row.text = edit.text
                row.edited_at = edit.occurred_at
                if create is None:
                    row.raw = dict(edit.raw)
            rows.append(row)
        recorded = interactions_record(channel_account_id=account.pk, rows=rows)
        applied = interactions_apply_statuses(channel_account_id=account.pk, reports=[
            StatusReport(e.external_id, str(e.status), e.text) for e in statuses
        ])
        if any(r.created for r in identities.values()):
            transaction.on_commit(_schedule_scoring)
            emit("customer.created", {"channel_account_id": account.pk, "customer_ids": sorted(
                {r.customer_id for r in identities.values() if r.created})})
        if recorded.inserted:
            emit("interaction.created", {"channel_account_id": account.pk, "external_ids": list(folds)})
        # Edits and deletes that changed stored rows, and our replies moved on by the platform's delivery reports.
        updated = [e for e, f in folds.items() if f.edit or f.deleted_at] if recorded.updated else []
        updated += [e.external_id for e in statuses] if applied else []
        if updated:
            emit("interaction.updated",
                 {"channel_account_id": account.pk, "external_ids": list(dict.fromkeys(updated))})

    return IngestResult(
        received=len(received),
        inserted=recorded.inserted,
        updated=recorded.updated,
        unchanged=len(rows) - recorded.inserted - recorded.updated,
        identities_created=sum(1 for r in identities.values() if r.created),
        rejected=tuple(rejected),
        statuses_applied=applied,
        erased=erased,
    )
