"""Writes on customers and social identities."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from socialcrm.sql import stage_rows

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
    ("last_seen_at", "timestamptz"), ("raw_profile", "jsonb"), ("dedupe_keys", "text[]"),
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
    values = {f: getattr(item, f) or "" for f in _FIELD_LIMITS}
    for field, limit in _FIELD_LIMITS.items():
        if len(values[field]) > limit:
            # A truncated URL is a broken URL: drop it. A long name is cut.
            values[field] = "" if field.endswith("_url") else values[field][:limit]
    return values["handle"], values["display_name"], values["avatar_url"], values["profile_url"]


def identities_resolve(*, seen: Sequence[IdentitySeen]) -> dict[IdentityKey, ResolvedIdentity]:
    """Upsert the identities seen in one batch; create a customer for each identity seen for the first time.

    A fixed number of statements whatever the batch size: the batch is staged once by COPY; one statement
    finds the known identities and creates the new ones together with their customers (with their duplicate
    blocking keys, `Customer.dedupe_keys`, and search text, `Customer.search_text`) and queues each new customer
    for duplicate scoring (`DedupeOutbox`); one more updates the profiles that changed, and only when a known
    identity's handle or name changed, one more the search text of its customer. Only when a concurrent batch
    created the same identity first are there two more: a lookup of its rows and the removal of the customers
    made in vain.
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
        keys = name_keys([name_tokens(name), name_tokens(profile[1])])
        rows.append((*key, *profile, name, first, last, item.raw_profile or {}, keys))
    result: dict[IdentityKey, ResolvedIdentity] = {}
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        stage_rows(cursor, _STAGE_TABLE, _IDENTITY_COLUMNS, rows, analyze=True)
        # Customer ids are drawn from the sequence for the new identities first (the CTE is evaluated once),
        # so each identity row carries its customer's id. The foreign key is checked at commit.
        cursor.execute(
            f"""
            WITH src AS (
                SELECT v.*, si.id AS identity_id, si.customer_id
                FROM {_STAGE_TABLE} v
                LEFT JOIN contacts_socialidentity si USING (platform, scope, external_id)
            ), fresh AS (
                SELECT nextval(pg_get_serial_sequence('contacts_customer', 'id')) AS new_customer_id, src.*
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
                ON CONFLICT (platform, scope, external_id) DO NOTHING
                RETURNING platform, scope, external_id, id, customer_id
            ), queued AS (
                -- Only customers whose identity was inserted: those of a lost race are deleted below.
                INSERT INTO contacts_dedupeoutbox (customer_id, enqueued_at)
                SELECT customer_id, %(now)s FROM created
                ON CONFLICT (customer_id) DO NOTHING
            )
            SELECT platform, scope, external_id, identity_id, customer_id, 'known' FROM src
            WHERE identity_id IS NOT NULL
            UNION ALL
            SELECT platform, scope, external_id, id, customer_id, 'created' FROM created
            UNION ALL
            SELECT f.platform, f.scope, f.external_id, NULL, f.new_customer_id, 'lost' FROM fresh f
            WHERE NOT EXISTS (SELECT 1 FROM created c WHERE (c.platform, c.scope, c.external_id)
                                                           = (f.platform, f.scope, f.external_id))
            """,
            {"now": now},
        )
        known: list[IdentityKey] = []
        lost: dict[IdentityKey, int] = {}
        for platform, scope, external_id, identity_id, customer_id, how in cursor.fetchall():
            key = (platform, scope, external_id)
            if how == "lost":
                lost[key] = customer_id
                continue
            result[key] = ResolvedIdentity(identity_id, customer_id, created=how == "created")
            if how == "known":
                known.append(key)
        if lost:
            # A concurrent batch inserted these identities first: use its rows, drop our unused customers.
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
        if known:
            _refresh_profiles(cursor)
    return result


def _refresh_profiles(cursor: Any) -> None:
    """Update handle, name, avatar and seen-times of known identities from the staged batch, writing only
    rows that change (the identities just created match their staged row and are left alone); then the search
    text of the customers whose identities changed handle or name (one more statement, only then)."""
    cursor.execute(
        f"""
        WITH changed AS (
            UPDATE contacts_socialidentity si SET
                handle = COALESCE(NULLIF(v.handle, ''), si.handle),
                display_name = COALESCE(NULLIF(v.display_name, ''), si.display_name),
                avatar_url = COALESCE(NULLIF(v.avatar_url, ''), si.avatar_url),
                profile_url = COALESCE(NULLIF(v.profile_url, ''), si.profile_url),
                first_seen_at = LEAST(si.first_seen_at, v.first_seen_at),
                last_seen_at = GREATEST(si.last_seen_at, v.last_seen_at)
            FROM (SELECT v.*, (v.handle <> '' AND v.handle IS DISTINCT FROM known.handle)
                              OR (v.display_name <> '' AND v.display_name IS DISTINCT FROM known.display_name)
                              AS renamed
                  FROM {_STAGE_TABLE} v
                  JOIN contacts_socialidentity known USING (platform, scope, external_id)) v
            WHERE (si.platform, si.scope, si.external_id) = (v.platform, v.scope, v.external_id) AND (
                v.renamed
                OR (v.avatar_url <> '' AND v.avatar_url IS DISTINCT FROM si.avatar_url)
                OR (v.profile_url <> '' AND v.profile_url IS DISTINCT FROM si.profile_url)
                OR v.first_seen_at < si.first_seen_at
                OR v.last_seen_at > si.last_seen_at
            )
            RETURNING si.customer_id, v.renamed
        )
        SELECT DISTINCT customer_id FROM changed WHERE renamed
        """
    )
    renamed = [row[0] for row in cursor.fetchall()]
    if renamed:
        customers_search_text_refresh(customer_ids=renamed)
