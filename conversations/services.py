"""Writes on conversations and interactions. Batch writes run a fixed number of statements per batch."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from socialcrm.sql import ON_CONFLICT, fetch_inserting_plainly_first, stage_rows

from .models import Conversation


@dataclasses.dataclass(slots=True)
class ThreadActivity:
    """What one batch saw of one thread: who it is with and when things happened in it."""

    thread_key: str
    identity_id: int | None = None
    first_inbound_at: dt.datetime | None = None
    last_inbound_at: dt.datetime | None = None
    first_outbound_at: dt.datetime | None = None
    last_activity_at: dt.datetime | None = None

    def saw(self, *, at: dt.datetime, inbound: bool, identity_id: int | None) -> None:
        if inbound:
            if self.identity_id is None and identity_id is not None:
                self.identity_id = identity_id
            self.first_inbound_at = _least(self.first_inbound_at, at)
            self.last_inbound_at = _greatest(self.last_inbound_at, at)
        else:
            self.first_outbound_at = _least(self.first_outbound_at, at)
        self.last_activity_at = _greatest(self.last_activity_at, at)


@dataclasses.dataclass(frozen=True, slots=True)
class ThreadRef:
    conversation_id: int
    identity_id: int | None


def _least(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return b if a is None else a if b is None else max(a, b)


def conversations_touch(*, channel_account_id: int, threads: Sequence[ThreadActivity]) -> dict[str, ThreadRef]:
    """Create the conversations a batch opens and move the clocks of those it continues.

    First inbound, first response, last activity only ever move towards the truth (LEAST / GREATEST), so a
    batch replayed or delivered late leaves the same state. New inbound activity after a conversation was
    resolved reopens it. The threads are staged by COPY and one statement does the rest, in a savepoint (see
    `fetch_inserting_plainly_first`). Only when a concurrent batch creates one of the same threads at the same
    moment does the statement run again, and then perhaps once more to move the clocks of such threads.
    """
    if not threads:
        return {}
    params = {
        "account": channel_account_id, "now": timezone.now(), "open": Conversation.Status.OPEN,
        "resolved": Conversation.Status.RESOLVED, "normal": Conversation.Priority.NORMAL,
    }
    refs: dict[str, ThreadRef] = {}
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        stage_rows(cursor, _THREAD_STAGE, _THREAD_COLUMNS, [
            (t.thread_key, t.identity_id, t.first_inbound_at, t.last_inbound_at, t.first_outbound_at,
             t.last_activity_at) for t in threads
        ])
        touched = fetch_inserting_plainly_first(cursor, _TOUCH_SQL.format(only=""), params,
                                                constraint="conversation_unique_thread", on_conflict=_ON_THREAD)
        raced = []
        for key, conversation_id, identity_id in touched:
            if conversation_id is None:
                raced.append(key)
            else:
                refs[key] = ThreadRef(conversation_id, identity_id)
        if raced:
            # Created by a concurrent batch a moment ago: now they exist, and their clocks move like any other's.
            cursor.execute(_TOUCH_SQL.format(only="WHERE v.thread_key = ANY(%(raced)s::text[])").replace(
                ON_CONFLICT, _ON_THREAD), {**params, "raced": raced})
            refs.update({key: ThreadRef(cid, iid) for key, cid, iid in cursor.fetchall() if cid is not None})
    return refs


_THREAD_STAGE = "ingest_thread_stage"
_ON_THREAD = "ON CONFLICT (channel_account_id, thread_key) DO NOTHING"
_THREAD_COLUMNS = (
    ("thread_key", "text"), ("identity_id", "bigint"), ("first_inbound_at", "timestamptz"),
    ("last_inbound_at", "timestamptz"), ("first_outbound_at", "timestamptz"), ("last_activity_at", "timestamptz"),
)
# Finds the staged threads' conversations, creates the missing ones, moves the clocks of the others (writing
# only rows that change), and returns (thread key, conversation id, identity id) for every staged thread; the
# conversation id is NULL for a thread a concurrent batch created between the lookup and the insert.
_TOUCH_SQL = f"""
WITH v AS (
    SELECT v.*, c.id AS conversation_id, c.identity_id AS known_identity_id
    FROM {_THREAD_STAGE} v
    -- One index probe per staged thread (LIMIT keeps the planner from turning it into a scan of the account's).
    LEFT JOIN LATERAL (
        SELECT id, identity_id FROM conversations_conversation c
        WHERE c.channel_account_id = %(account)s AND c.thread_key = v.thread_key LIMIT 1
    ) c ON true
    {{only}}
), inserted AS (
    INSERT INTO conversations_conversation
        (channel_account_id, thread_key, identity_id, status, priority, first_inbound_at, first_response_at,
         last_activity_at, created_at, updated_at)
    SELECT %(account)s, thread_key, identity_id, %(open)s, %(normal)s, first_inbound_at,
           CASE WHEN first_outbound_at >= first_inbound_at THEN first_outbound_at END,
           last_activity_at, %(now)s, %(now)s
    FROM v WHERE conversation_id IS NULL
    {ON_CONFLICT}
    RETURNING thread_key, id, identity_id
), advanced AS (
    UPDATE conversations_conversation c SET
        identity_id = COALESCE(c.identity_id, v.identity_id),
        first_inbound_at = LEAST(c.first_inbound_at, v.first_inbound_at),
        first_response_at = CASE
            WHEN v.first_outbound_at >= LEAST(c.first_inbound_at, v.first_inbound_at)
            THEN LEAST(c.first_response_at, v.first_outbound_at)
            ELSE c.first_response_at END,
        last_activity_at = GREATEST(c.last_activity_at, v.last_activity_at),
        status = CASE WHEN c.status = %(resolved)s AND v.last_inbound_at > c.resolved_at THEN %(open)s
                      ELSE c.status END,
        resolved_at = CASE WHEN c.status = %(resolved)s AND v.last_inbound_at > c.resolved_at THEN NULL
                           ELSE c.resolved_at END,
        updated_at = %(now)s
    FROM v
    WHERE c.id = v.conversation_id
      AND c.id = ANY(ARRAY(SELECT conversation_id FROM v WHERE conversation_id IS NOT NULL))  -- by primary key
      AND (
        (c.identity_id IS NULL AND v.identity_id IS NOT NULL)
        OR LEAST(c.first_inbound_at, v.first_inbound_at) IS DISTINCT FROM c.first_inbound_at
        OR GREATEST(c.last_activity_at, v.last_activity_at) IS DISTINCT FROM c.last_activity_at
        OR (v.first_outbound_at >= LEAST(c.first_inbound_at, v.first_inbound_at)
            AND (c.first_response_at IS NULL OR v.first_outbound_at < c.first_response_at))
        OR (c.status = %(resolved)s AND v.last_inbound_at > c.resolved_at)
    )
)
SELECT thread_key, conversation_id, COALESCE(known_identity_id, identity_id) FROM v WHERE conversation_id IS NOT NULL
UNION ALL
SELECT thread_key, id, identity_id FROM inserted
UNION ALL
SELECT thread_key, NULL, NULL FROM v
WHERE conversation_id IS NULL AND NOT EXISTS (SELECT 1 FROM inserted i WHERE i.thread_key = v.thread_key)
"""


@dataclasses.dataclass(slots=True)
class InteractionRow:
    """One interaction as a batch knows it, after every event about it in the batch was folded together."""

    external_id: str
    occurred_at: dt.datetime
    is_stub: bool
    kind: str = ""
    direction: str = "in"
    conversation_id: int | None = None
    identity_id: int | None = None
    text: str = ""
    reply_to_external_id: str = ""
    edited_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    attachments: list[Any] = dataclasses.field(default_factory=list)
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)


# The merge rules of an upsert, written so that any order of create / edit / delete ends in one state:
# a delete wins over everything (text and payload are dropped), the newest edit wins over older edits and
# over the created text, a create fills in a stub, and a re-delivery with more fields fills empty ones.
# Each batch is COPYed into a temporary staging table, then merged by one INSERT ... SELECT ... ON CONFLICT.
_STAGE_TABLE = "ingest_interaction_stage"
_STAGE_COLUMNS = (
    ("external_id", "text"), ("conversation_id", "bigint"), ("identity_id", "bigint"), ("direction", "text"),
    ("kind", "text"), ("text", "text"), ("occurred_at", "timestamptz"), ("reply_to", "text"),
    ("edited_at", "timestamptz"), ("deleted_at", "timestamptz"), ("attachments", "jsonb"), ("raw", "jsonb"),
    ("is_stub", "boolean"),
)
_RECORD_SQL = f"""
INSERT INTO conversations_interaction AS i
    (channel_account_id, external_id, conversation_id, identity_id, direction, kind, text, occurred_at,
     received_at, reply_to_external_id, edited_at, deleted_at, attachments, raw, is_stub)
SELECT %(account)s, v.external_id, v.conversation_id, v.identity_id, v.direction, v.kind,
       CASE WHEN v.deleted_at IS NULL THEN v.text ELSE '' END, v.occurred_at, %(now)s, v.reply_to, v.edited_at,
       v.deleted_at, CASE WHEN v.deleted_at IS NULL THEN v.attachments ELSE '[]' END,
       CASE WHEN v.deleted_at IS NULL THEN v.raw ELSE '{{}}' END, v.is_stub
FROM {_STAGE_TABLE} v
ON CONFLICT (channel_account_id, external_id) DO UPDATE SET
    is_stub = i.is_stub AND EXCLUDED.is_stub,
    conversation_id = COALESCE(i.conversation_id, EXCLUDED.conversation_id),
    identity_id = COALESCE(i.identity_id, EXCLUDED.identity_id),
    direction = CASE WHEN i.is_stub THEN EXCLUDED.direction ELSE i.direction END,
    kind = CASE WHEN i.is_stub THEN EXCLUDED.kind ELSE i.kind END,
    occurred_at = CASE
        WHEN i.is_stub AND NOT EXCLUDED.is_stub THEN EXCLUDED.occurred_at
        WHEN i.is_stub THEN LEAST(i.occurred_at, EXCLUDED.occurred_at)
        ELSE i.occurred_at END,
    reply_to_external_id = CASE WHEN i.reply_to_external_id = '' THEN EXCLUDED.reply_to_external_id
                                ELSE i.reply_to_external_id END,
    edited_at = GREATEST(i.edited_at, EXCLUDED.edited_at),
    deleted_at = LEAST(i.deleted_at, EXCLUDED.deleted_at),
    text = CASE
        WHEN i.deleted_at IS NOT NULL OR EXCLUDED.deleted_at IS NOT NULL THEN ''
        WHEN EXCLUDED.edited_at > COALESCE(i.edited_at, '-infinity') THEN EXCLUDED.text
        WHEN i.edited_at IS NOT NULL THEN i.text
        WHEN i.text = '' THEN EXCLUDED.text
        ELSE i.text END,
    attachments = CASE
        WHEN i.deleted_at IS NOT NULL OR EXCLUDED.deleted_at IS NOT NULL THEN '[]'
        WHEN i.attachments = '[]' THEN EXCLUDED.attachments
        ELSE i.attachments END,
    raw = CASE
        WHEN i.deleted_at IS NOT NULL OR EXCLUDED.deleted_at IS NOT NULL THEN '{{}}'
        WHEN i.is_stub AND NOT EXCLUDED.is_stub THEN EXCLUDED.raw
        WHEN i.is_stub AND EXCLUDED.edited_at > COALESCE(i.edited_at, '-infinity') THEN EXCLUDED.raw
        ELSE i.raw END
WHERE (i.is_stub AND NOT EXCLUDED.is_stub)
    OR (i.is_stub AND EXCLUDED.occurred_at < i.occurred_at)
    OR (i.conversation_id IS NULL AND EXCLUDED.conversation_id IS NOT NULL)
    OR (i.identity_id IS NULL AND EXCLUDED.identity_id IS NOT NULL)
    OR EXCLUDED.edited_at > COALESCE(i.edited_at, '-infinity')
    OR EXCLUDED.deleted_at < COALESCE(i.deleted_at, 'infinity')
    OR (i.deleted_at IS NULL AND i.edited_at IS NULL AND i.text = '' AND EXCLUDED.text <> '')
    OR (i.deleted_at IS NULL AND i.attachments = '[]' AND EXCLUDED.attachments <> '[]')
    OR (i.reply_to_external_id = '' AND EXCLUDED.reply_to_external_id <> '')
RETURNING (xmax = 0) AS inserted
"""


@dataclasses.dataclass(frozen=True, slots=True)
class RecordResult:
    inserted: int
    updated: int


def interactions_record(*, channel_account_id: int, rows: Sequence[InteractionRow]) -> RecordResult:
    """Insert or merge one batch of interactions in one statement. Rows must have distinct external ids."""
    if not rows:
        return RecordResult(0, 0)
    staged = [
        (
            r.external_id, r.conversation_id, r.identity_id, r.direction, r.kind, r.text, r.occurred_at,
            r.reply_to_external_id[:255], r.edited_at, r.deleted_at, r.attachments, r.raw, r.is_stub,
        )
        for r in rows
    ]
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        stage_rows(cursor, _STAGE_TABLE, _STAGE_COLUMNS, staged)
        cursor.execute(_RECORD_SQL, {"account": channel_account_id, "now": timezone.now()})
        flags = [row[0] for row in cursor.fetchall()]
    inserted = sum(flags)
    return RecordResult(inserted=inserted, updated=len(flags) - inserted)


# Delivery states in the order a reply moves through them; a report never moves a reply backwards.
# `failed` from the platform (an undeliverable WhatsApp message) overrides everything short of delivered.
_STATE_RANK = {"": 0, "queued": 1, "sending": 2, "unknown": 2, "sent": 3, "failed": 4, "delivered": 5, "read": 6}


def _rank_sql(column: str) -> str:
    whens = " ".join(f"WHEN '{state}' THEN {rank}" for state, rank in _STATE_RANK.items())
    return f"(CASE {column} {whens} ELSE 0 END)"


@dataclasses.dataclass(frozen=True, slots=True)
class StatusReport:
    """A platform's report on one of our messages: `external_id` is the id the platform gave it."""

    external_id: str
    status: str
    reason: str = ""


def interactions_apply_statuses(*, channel_account_id: int, reports: Sequence[StatusReport]) -> int:
    """Move our replies forward by the platform's delivery reports, in one statement; rows changed.

    Reports about ids we do not hold (someone else's message, or one whose send has not been recorded yet)
    change nothing. The furthest state wins whatever order the reports arrive in.
    """
    if not reports:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE conversations_interaction AS i
            SET delivery_state = s.status,
                send_error = CASE WHEN s.status = 'failed' THEN s.reason ELSE i.send_error END
            FROM (
                SELECT DISTINCT ON (external_id) external_id, status, reason
                FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(external_id, status, reason)
                ORDER BY external_id, {_rank_sql("status")} DESC
            ) AS s
            WHERE i.channel_account_id = %s AND i.external_id = s.external_id AND i.direction = 'out'
              AND {_rank_sql("s.status")} > {_rank_sql("i.delivery_state")}
            """,
            [[r.external_id for r in reports], [r.status for r in reports], [r.reason[:2000] for r in reports],
             channel_account_id],
        )
        return cursor.rowcount
