"""GDPR handler of raw webhook deliveries: registered with `contacts.gdpr` from `ChannelsConfig.ready()`.

A delivery has no reference to an identity; it is found by its body holding one of the person's identity
external ids or handles as a JSON string (`"u123"`), one sequential scan of the deliveries table. Bodies
that are not JSON (form-encoded, MIME mail) or that spell an id as a number are not found this way.

Erase deletes the matching deliveries, whatever their state: a body is a raw copy of what ingest stored, and
a batched body that also carries other people's events loses them with it (a pending one is not ingested;
its events of the person would be dropped by the erasure ledger anyway).
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connection

from contacts.gdpr import Subject

from .models import WebhookDelivery

_MATCH_SQL = """
SELECT id FROM channels_webhookdelivery
WHERE EXISTS (SELECT 1 FROM unnest(%s::bytea[]) AS needle(b) WHERE position(needle.b IN body) > 0)
ORDER BY id
"""


def _needles(subject: Subject) -> list[bytes]:
    values = {i["external_id"] for i in subject.identities} | {i["handle"] for i in subject.identities if i["handle"]}
    return sorted(json.dumps(v, ensure_ascii=False).encode() for v in values)


def _matching_ids(subject: Subject) -> list[int]:
    needles = _needles(subject)
    if not needles:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_MATCH_SQL, [needles])
        return [row[0] for row in cursor.fetchall()]


def export(subject: Subject) -> list[dict[str, Any]]:
    """The raw deliveries whose body names one of the person's identities, bodies decoded as UTF-8."""
    rows = WebhookDelivery.objects.filter(pk__in=_matching_ids(subject)).order_by("pk").values(
        "id", "channel_account_id", "received_at", "state", "headers", "body", "processed_at")
    return [{**row, "body": bytes(row["body"]).decode("utf-8", "replace")} for row in rows]


def erase(subject: Subject) -> dict[str, int]:
    """Delete the raw deliveries whose body names one of the person's identities."""
    return {"deliveries": WebhookDelivery.objects.filter(pk__in=_matching_ids(subject)).delete()[0]}
