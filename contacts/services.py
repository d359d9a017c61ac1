"""Writes on customers and social identities."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from socialcrm.sql import clean_text, stage_rows

IdentityKey = tuple[str, str, str]  # (platform, scope, external_id)

_FIELD_LIMITS = {"handle": 255, "display_name": 255, "avatar_url": 2048, "profile_url": 2048}
# The staging table for identity batches; `customer_id` holds the identity id when refreshing profiles.
_IDENTITY_COLUMNS = (
    ("customer_id", "bigint"), ("platform", "text"), ("scope", "text"), ("external_id", "text"), ("handle", "text"),
    ("display_name", "text"), ("avatar_url", "text"), ("profile_url", "text"), ("first_seen_at", "timestamptz"),
    ("last_seen_at", "timestamptz"), ("raw_profile", "jsonb"),
)


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

    A fixed number of statements whatever the batch size: one lookup, one insert of new customers, one
    insert of new identities, one update of changed profiles (and, only when a concurrent batch created
    the same identity first, one more lookup and a clean-up of the customer made in vain).
    """
    if not seen:
        return {}
    merged = _merge_sightings(seen)
    keys = list(merged)
    result: dict[IdentityKey, ResolvedIdentity] = {}
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        existing = _lookup(cursor, keys)
        new_keys = [k for k in keys if k not in existing]
        if new_keys:
            result.update(_create(cursor, new_keys, merged))
        if existing:
            _refresh_profiles(cursor, existing, merged)
            for key, (identity_id, customer_id) in existing.items():
                result[key] = ResolvedIdentity(identity_id, customer_id, created=False)
    return result


_KEY_COLUMNS = (("platform", "text"), ("scope", "text"), ("external_id", "text"))


def _lookup(cursor: Any, keys: list[IdentityKey]) -> dict[IdentityKey, tuple[int, int]]:
    stage_rows(cursor, "ingest_identity_key_stage", _KEY_COLUMNS, keys)
    cursor.execute(
        """
        SELECT si.platform, si.scope, si.external_id, si.id, si.customer_id
        FROM ingest_identity_key_stage k
        JOIN contacts_socialidentity si USING (platform, scope, external_id)
        """
    )
    return {(p, s, e): (iid, cid) for p, s, e, iid, cid in cursor.fetchall()}


def _create(
    cursor: Any, new_keys: list[IdentityKey], merged: dict[IdentityKey, tuple[IdentitySeen, dt.datetime, dt.datetime]]
) -> dict[IdentityKey, ResolvedIdentity]:
    now = timezone.now()
    profiles = [_profile_values(merged[k][0]) for k in new_keys]
    names = [
        clean_text(p[1] or p[0] or f"{k[0]} {k[2]}"[:255]) for k, p in zip(new_keys, profiles, strict=True)
    ]
    # Customer ids are drawn from the sequence first, so each new identity knows its customer's id
    # without relying on the order of RETURNING rows.
    cursor.execute(
        """
        WITH src AS (
            SELECT nextval(pg_get_serial_sequence('contacts_customer', 'id')) AS id, name, ord
            FROM unnest(%s::text[]) WITH ORDINALITY AS t(name, ord)
        ), ins AS (
            INSERT INTO contacts_customer
                (id, display_name, postal_address, language, customer_number, tags, notes, created_at, updated_at)
            SELECT id, name, '', '', '', '{}', '', %s, %s FROM src
        )
        SELECT id FROM src ORDER BY ord
        """,
        [names, now, now],
    )
    customer_ids = [row[0] for row in cursor.fetchall()]
    rows = [
        (cid, *k, *profile, merged[k][1], merged[k][2], merged[k][0].raw_profile or {})
        for k, cid, profile in zip(new_keys, customer_ids, profiles, strict=True)
    ]
    stage_rows(cursor, "ingest_identity_stage", _IDENTITY_COLUMNS, rows)
    cursor.execute(
        """
        INSERT INTO contacts_socialidentity
            (customer_id, platform, scope, external_id, handle, display_name, avatar_url, profile_url,
             first_seen_at, last_seen_at, raw_profile)
        SELECT customer_id, platform, scope, external_id, handle, display_name, avatar_url, profile_url,
               first_seen_at, last_seen_at, raw_profile
        FROM ingest_identity_stage
        ON CONFLICT (platform, scope, external_id) DO NOTHING
        RETURNING platform, scope, external_id, id, customer_id
        """
    )
    result = {(p, s, e): ResolvedIdentity(iid, cid, created=True) for p, s, e, iid, cid in cursor.fetchall()}
    lost = [k for k in new_keys if k not in result]
    if lost:
        # A concurrent batch inserted these identities first: use its rows, drop our unused customers.
        for key, (iid, cid) in _lookup(cursor, lost).items():
            result[key] = ResolvedIdentity(iid, cid, created=False)
        lost_keys = set(lost)
        unused = [cid for k, cid in zip(new_keys, customer_ids, strict=True) if k in lost_keys]
        cursor.execute("DELETE FROM contacts_customer WHERE id = ANY(%s::bigint[])", [unused])
    return result


def _refresh_profiles(
    cursor: Any,
    existing: dict[IdentityKey, tuple[int, int]],
    merged: dict[IdentityKey, tuple[IdentitySeen, dt.datetime, dt.datetime]],
) -> None:
    """Update handle, name, avatar and seen-times of known identities, writing only rows that change."""
    rows = [
        (iid, *k, *_profile_values(merged[k][0]), merged[k][1], merged[k][2], {})
        for k, (iid, _cid) in existing.items()
    ]
    stage_rows(cursor, "ingest_identity_stage", _IDENTITY_COLUMNS, rows)
    cursor.execute(
        """
        UPDATE contacts_socialidentity si SET
            handle = COALESCE(NULLIF(v.handle, ''), si.handle),
            display_name = COALESCE(NULLIF(v.display_name, ''), si.display_name),
            avatar_url = COALESCE(NULLIF(v.avatar_url, ''), si.avatar_url),
            profile_url = COALESCE(NULLIF(v.profile_url, ''), si.profile_url),
            first_seen_at = LEAST(si.first_seen_at, v.first_seen_at),
            last_seen_at = GREATEST(si.last_seen_at, v.last_seen_at)
        FROM ingest_identity_stage v
        WHERE si.id = v.customer_id AND (
            (v.handle <> '' AND v.handle IS DISTINCT FROM si.handle)
            OR (v.display_name <> '' AND v.display_name IS DISTINCT FROM si.display_name)
            OR (v.avatar_url <> '' AND v.avatar_url IS DISTINCT FROM si.avatar_url)
            OR (v.profile_url <> '' AND v.profile_url IS DISTINCT FROM si.profile_url)
            OR v.first_seen_at < si.first_seen_at
            OR v.last_seen_at > si.last_seen_at
        )
        """
    )
