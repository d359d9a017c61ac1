"""Writes on customers and social identities."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from socialcrm.sql import ON_CONFLICT, fetch_inserting_plainly_first, stage_rows, text_array_literal

from .dedupe import name_keys, name_tokens

# Merges, unmerges, links and unlinks live in `contacts.merge`, the survivor lookup in `contacts.selectors`;
# they are part of this module's public names.
from .merge import (
    MergePreview,
    customer_merge,
    customer_merge_preview,
    customer_unmerge,
    identity_link,
    identity_unlink,
)
from .search import customers_search_text_refresh, search_text_sql, wrapped_value_sql
from .selectors import customer_resolve

__all__ = [
    "IdentityKey", "IdentitySeen", "MergePreview", "ResolvedIdentity", "customer_merge", "customer_merge_preview",
    "customer_resolve", "customer_unmerge", "identities_resolve", "identity_link", "identity_unlink",
]

IdentityKey = tuple[str, str, str]  # (platform, scope, external_id)

_FIELD_LIMITS = {"handle": 255, "display_name": 255, "avatar_url": 2048, "profile_url": 2048}
# The staging table of an identity batch: one row per identity seen, with the name a new customer gets.
_STAGE_TABLE = "ingest_identity_stage"
_IDENTITY_COLUMNS = (
    ("platform", "text"), ("scope", "text"), ("external_id", "text"), ("handle", "text"), ("display_name", "text"),
    ("avatar_url", "text"), ("profile_url", "text"), ("customer_name", "text"), ("first_seen_at", "timestamptz"),
    ("last_seen_at", "timestamptz"), ("raw_profile", "jsonb"),
    ("dedupe_keys", "text"),  # an array literal (`text_array_literal`), cast by the statement
)

# A new customer's search text from its staged row, as `customers_search_text_refresh` would compute it.
_NEW_SEARCH_TEXT = search_text_sql(names=[wrapped_value_sql("customer_name"), wrapped_value_sql("display_name")],
                                   handles=[wrapped_value_sql("ltrim(handle, '@')")], emails=[])


@dataclasses.dataclass(slots=True)
class IdentitySeen:
    """An account as one event showed it: enough to create or refresh a `SocialIdentity`."""

    platform: str
    scope: str
    external_id: str
    seen_at: dt.datetime
    handle: str = ""
    display_name: str = ""
    avatar_url: str = ""
    profile_url: str = ""
    raw_profile: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> IdentityKey:
        return (self.platform, self.scope, self.external_id)


@dataclasses.dataclass(frozen=True, slots=True)
class ResolvedIdentity:
    identity_id: int
    customer_id: int
    created: bool


def _merge_sightings(seen: Sequence[IdentitySeen]) -> dict[IdentityKey, tuple[IdentitySeen, dt.datetime, dt.datetime]]:
    """One entry per identity: the newest profile, and the first and last time it was seen in the batch."""
    merged: dict[IdentityKey, tuple[IdentitySeen, dt.datetime, dt.datetime]] = {}
    for item in seen:
        current = merged.get(item.key)
        if current is None:
            merged[item.key] = (item, item.seen_at, item.seen_at)
            continue
        newest, first, last = current
        if item.seen_at >= newest.seen_at:
            # Keep what the newer sighting leaves out (an X mention without a user expansion, say).
            newest = dataclasses.replace(
                item, **{f: getattr(item, f) or getattr(newest, f) for f in (*_FIELD_LIMITS, "raw_profile")}
            )
        merged[item.key] = (newest, min(first, item.seen_at), max(last, item.seen_at))
    return merged


def _profile_values(item: IdentitySeen) -> tuple[str, str, str, str]:
    """handle, display name, avatar url, profile url, within their column limits (stage_rows cleans them)."""
    handle, name = item.handle or "", item.display_name or ""
    avatar, profile = item.avatar_url or "", item.profile_url or ""
    # A long name is cut; a truncated URL is a broken URL: it is dropped.
    return (handle[:_FIELD_LIMITS["handle"]], name[:_FIELD_LIMITS["display_name"]],
            avatar if len(avatar) <= _FIELD_LIMITS["avatar_url"] else "",
            profile if len(profile) <= _FIELD_LIMITS["profile_url"] else "")


def identities_resolve(*, seen: Sequence[IdentitySeen]) -> dict[IdentityKey, ResolvedIdentity]:
    """Upsert the identities seen in one batch; create a customer for each identity seen for the first time.

    A fixed number of statements whatever the batch size: the batch is staged once by COPY; one statement
    finds the known identities and updates the profiles that changed, creates the new ones together with their
    customers (with their duplicate blocking keys, `Customer.dedupe_keys`, and search text,
    `Customer.search_text`) and queues each new customer for duplicate scoring (`DedupeOutbox`), in a savepoint
    (see `fetch_inserting_plainly_first`). Only when a known identity's handle or name changed is there one more,
    for the search text of its customer. When a concurrent batch creates one of the same identities at the same
    moment the statement runs again; if it loses the race once more, three more statements use the other batch's
    rows: a lookup, the removal of the customers made in vain and the refresh of those identities' profiles.
    """
    if not seen:
        return {}
    merged = _merge_sightings(seen)
    now = timezone.now()
    rows = []
    for key, (item, first, last) in merged.items():
        profile = _profile_values(item)
        name = profile[1] or profile[0] or f"{key[0]} {key[2]}"[:255]
        # A new customer's blocking keys, as `customer_dedupe_keys_refresh` would compute them.
        keys = text_array_literal(name_keys([name_tokens(name), name_tokens(profile[1])]))
        rows.append((*key, *profile, name, first, last, item.raw_profile or {}, keys))
    result: dict[IdentityKey, ResolvedIdentity] = {}
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        stage_rows(cursor, _STAGE_TABLE, _IDENTITY_COLUMNS, rows)
        resolved = fetch_inserting_plainly_first(
            cursor, _RESOLVE_SQL, {"now": now}, constraint="identity_unique_key",
            on_conflict="ON CONFLICT (platform, scope, external_id) DO NOTHING",
        )
        lost: dict[IdentityKey, int] = {}
        renamed: set[int] = set()
        for platform, scope, external_id, identity_id, customer_id, how in resolved:
            if how == "renamed":
                renamed.add(customer_id)
                continue
            key = (platform, scope, external_id)
            if how == "lost":
                lost[key] = customer_id
                continue
            result[key] = ResolvedIdentity(identity_id, customer_id, created=how == "created")
        if lost:
            # A concurrent batch inserted these identities first: use its rows and refresh them as known ones,
            # drop our unused customers.
            cursor.execute(
                """
                SELECT platform, scope, external_id, id, customer_id FROM contacts_socialidentity
                WHERE (platform, scope, external_id) IN (
                    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))
                """,
                [[k[0] for k in lost], [k[1] for k in lost], [k[2] for k in lost]],
            )
            for platform, scope, external_id, identity_id, customer_id in cursor.fetchall():
                result[(platform, scope, external_id)] = ResolvedIdentity(identity_id, customer_id, created=False)
            cursor.execute("DELETE FROM contacts_customer WHERE id = ANY(%s::bigint[])", [list(lost.values())])
            cursor.execute(_REFRESH_SQL, {"ids": [result[k].identity_id for k in lost if k in result]})
            renamed.update(row[0] for row in cursor.fetchall() if row[1])
        if renamed:
            customers_search_text_refresh(customer_ids=sorted(renamed))
    return result


# A staged sighting `v` applied to the identity row `si`: profile fields only where the sighting has a value,
# seen-times only ever widened. `_PROFILE_CHANGED` holds where that changes the row (`v.renamed` from `_renamed`).
_PROFILE_SET = """handle = COALESCE(NULLIF(v.handle, ''), si.handle),
        display_name = COALESCE(NULLIF(v.display_name, ''), si.display_name),
        avatar_url = COALESCE(NULLIF(v.avatar_url, ''), si.avatar_url),
        profile_url = COALESCE(NULLIF(v.profile_url, ''), si.profile_url),
        first_seen_at = LEAST(si.first_seen_at, v.first_seen_at),
        last_seen_at = GREATEST(si.last_seen_at, v.last_seen_at)"""
_PROFILE_CHANGED = """(
        v.renamed
        OR (v.avatar_url <> '' AND v.avatar_url IS DISTINCT FROM si.avatar_url)
        OR (v.profile_url <> '' AND v.profile_url IS DISTINCT FROM si.profile_url)
        OR v.first_seen_at < si.first_seen_at
        OR v.last_seen_at > si.last_seen_at
    )"""


def _renamed(known: str) -> str:
    """Whether the staged sighting `v` brings a new handle or name for the identity row `known`."""
    return (f"(v.handle <> '' AND v.handle IS DISTINCT FROM {known}.handle)\n"
            f"           OR (v.display_name <> '' AND v.display_name IS DISTINCT FROM {known}.display_name)")


# One statement resolves a staged batch: it finds the known identities and refreshes their profiles, creates the
# new identities with their customers and queues the customers for duplicate scoring. Customer ids are drawn from
# the sequence for the new identities first (the CTE is evaluated once), so each identity row carries its
# customer's id; the foreign key is checked at commit. A known identity's profile is updated only where the batch
# changes it: a newer handle, name, avatar or profile url, an earlier first or a later last sighting. Rows come
# back as (platform, scope, external id, identity id, customer id, how), `how` being `known`, `created`, `lost`
# (a concurrent batch created the identity first; the customer id is the one made in vain) or `renamed` (only
# the customer id is set: a known identity's handle or name changed, so its customer's search text is stale).
_RESOLVE_SQL = f"""
WITH src AS (
    SELECT v.*, si.id AS identity_id, si.customer_id,
           {_renamed('si')} AS renamed
    FROM {_STAGE_TABLE} v
    -- One index probe per staged identity (LIMIT keeps the planner from turning it into a scan of the table).
    LEFT JOIN LATERAL (
        SELECT id, customer_id, handle, display_name FROM contacts_socialidentity si
        WHERE (si.platform, si.scope, si.external_id) = (v.platform, v.scope, v.external_id) LIMIT 1
    ) si ON true
), fresh AS (
    -- The sequence is looked up once (an init plan), not once per row.
    SELECT nextval((SELECT pg_get_serial_sequence('contacts_customer', 'id')::regclass)) AS new_customer_id, src.*
    FROM src WHERE identity_id IS NULL
), customers AS (
    INSERT INTO contacts_customer
        (id, display_name, postal_address, language, customer_number, tags, notes, created_at,
         updated_at, dedupe_keys, search_text)
    SELECT new_customer_id, customer_name, '', '', '', '{{}}', '', %(now)s, %(now)s,
           coalesce(dedupe_keys, '{{}}')::varchar(64)[], {_NEW_SEARCH_TEXT}
    FROM fresh
), created AS (
    INSERT INTO contacts_socialidentity
        (customer_id, platform, scope, external_id, handle, display_name, avatar_url, profile_url,
         first_seen_at, last_seen_at, raw_profile)
    SELECT new_customer_id, platform, scope, external_id, handle, display_name, avatar_url,
           profile_url, first_seen_at, last_seen_at, raw_profile
    FROM fresh
    {ON_CONFLICT}
    RETURNING platform, scope, external_id, id, customer_id
), queued AS (
    -- Only customers whose identity was inserted: those of a lost race are deleted afterwards. The customers
    -- are new, so none of them is queued yet.
    INSERT INTO contacts_dedupeoutbox (customer_id, enqueued_at)
    SELECT customer_id, %(now)s FROM created
), refreshed AS (
    UPDATE contacts_socialidentity si SET
        {_PROFILE_SET}
    FROM src v
    WHERE si.id = v.identity_id
      AND si.id = ANY(ARRAY(SELECT identity_id FROM src WHERE identity_id IS NOT NULL))  -- by primary key
      AND {_PROFILE_CHANGED}
    RETURNING si.customer_id, v.renamed
)
SELECT platform, scope, external_id, identity_id, customer_id, 'known' FROM src
WHERE identity_id IS NOT NULL
UNION ALL
SELECT platform, scope, external_id, id, customer_id, 'created' FROM created
UNION ALL
SELECT f.platform, f.scope, f.external_id, NULL, f.new_customer_id, 'lost' FROM fresh f
WHERE NOT EXISTS (SELECT 1 FROM created c WHERE (c.platform, c.scope, c.external_id)
                                               = (f.platform, f.scope, f.external_id))
UNION ALL
SELECT NULL, NULL, NULL, NULL, customer_id, 'renamed' FROM refreshed WHERE renamed
"""


# Updates handle, name, avatar and seen-times of known identities from the staged batch, writing only rows that
# change (the identities just created match their staged row and are left alone). Returns each updated
# identity's customer and whether its handle or name changed, so that the customer's search text is refreshed.
# Used for the identities of a lost race (`_RESOLVE_SQL` refreshes the others itself).
_REFRESH_SQL = f"""
    UPDATE contacts_socialidentity si SET
        {_PROFILE_SET}
    FROM (SELECT v.*, known.id AS identity_id,
                 {_renamed('known')} AS renamed
          FROM {_STAGE_TABLE} v
          JOIN contacts_socialidentity known USING (platform, scope, external_id)
          WHERE known.id = ANY(%(ids)s::bigint[])) v
    WHERE si.id = v.identity_id AND {_PROFILE_CHANGED}
    RETURNING si.customer_id, v.renamed
"""
