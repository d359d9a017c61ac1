"""GDPR export and erasure of everything held about one person, and the erasure ledger ingest honours.

A person is a live customer together with every tombstone merged into it (at any depth); asking for a
tombstone means its survivor. `contacts` owns the workflow but imports no app above it: each app whose rows
reference an identity or a customer (or otherwise hold a person's data, like raw webhook bodies) registers a
`Handler` from its `AppConfig.ready()`. `unhandled_models()` names every model with a foreign key to
`SocialIdentity` or `Customer` that no handler covers; a test keeps it empty.

Erasure, in one transaction:

- refused with `Conflict` (`legal_hold`) while the customer or one of its tombstones has a
  `legal_hold_reason`; nothing is written;
- each registered handler deletes or anonymises its rows (interactions, conversations, notes, raw
  deliveries: see the handlers);
- earlier audit events of these customers keep their skeleton, their personal values are replaced
  (`AuditEventQuerySet.scrub_for_erasure`);
- contact points, identities, tombstones and the customer are deleted;
- the erasure ledger gets one row per identity, e-mail, phone and conversation thread with the person: a keyed hash
  (`ledger_hash`) and the erasure time, never the value;
- an `erase` audit event records the actor, the reason, the counts and the hashes, no personal data.

Ingest calls `erasures_lookup` once per batch and drops every event by an erased identity, or of ours in an
erased thread, that happened at or before the erasure: a late or replayed delivery re-creates nothing. A genuinely
new message afterwards creates a fresh identity and customer, with no tie to the old ones.

Erasures and ingest batches are ordered by one lock (`erasure_lock`): an erasure holds it exclusively, a batch
shares it from before its ledger check until it commits. An erasure therefore waits for the batches in flight and
erases their rows with the rest, and a batch that starts during an erasure checks the ledger once the erasure has
committed. Work that holds rows an erasure deletes (the drain holds the raw deliveries it claims) takes the lock
before it takes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import functools
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from socialcrm.errors import Conflict
from socialcrm.events import emit

from .merge import Actor, _actor_fields
from .models import (
    AuditEvent,
    ContactPoint,
    Customer,
    DedupeOutbox,
    DuplicateSuggestion,
    ErasureLedger,
    SocialIdentity,
)
from .selectors import customer_resolve

logger = logging.getLogger(__name__)

LEGAL_HOLD = "legal_hold"
_LEDGER_SALT = "socialcrm.contacts.gdpr.erasure-ledger"
# The models this module exports and erases itself.
_OWN_MODELS = frozenset({"contacts.Customer", "contacts.ContactPoint", "contacts.SocialIdentity",
                         "contacts.AuditEvent"})
_PERSON_SQL = """
WITH RECURSIVE person AS (
    SELECT id FROM contacts_customer WHERE id = %s
    UNION
    SELECT c.id FROM contacts_customer c JOIN person p ON c.merged_into_id = p.id
)
SELECT id FROM person ORDER BY id
"""


# --- the ledger --------------------------------------------------------------------------------------------


def ledger_hash(kind: str, *parts: object) -> str:
    """HMAC-SHA256 (hex) of one erased key, e.g. `("identity", platform, scope, external_id)`.

    Keyed with `settings.GDPR_LEDGER_KEY` when set, else with `SECRET_KEY` (salted for this use only). The key
    must outlive the ledger: rotating it makes old entries unmatchable, so set a dedicated key in production.
    The same digest as Django's `salted_hmac(_LEDGER_SALT, value, secret=..., algorithm="sha256")`, with the
    derived key computed once per secret instead of once per call: ingest hashes two keys for every event.
    """
    secret = getattr(settings, "GDPR_LEDGER_KEY", "") or settings.SECRET_KEY
    values = [kind, *(str(p) for p in parts)]
    if any(_JSON_ESCAPED.search(v) for v in values):
        value = _LEDGER_JSON.encode(values)
    else:  # what the encoder writes when nothing needs escaping, without its per-call cost
        value = '["' + '","'.join(values) + '"]'
    return hmac.digest(_ledger_key(secret), value.encode(), "sha256").hex()


_LEDGER_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# The characters that JSON text escapes when non-ASCII characters are written as they are.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


@functools.lru_cache(maxsize=4)
def _ledger_key(secret: str) -> bytes:
    return hashlib.sha256(_LEDGER_SALT.encode() + secret.encode()).digest()


def identity_hash(platform: str, scope: str, external_id: str) -> str:
    return ledger_hash(ErasureLedger.Kind.IDENTITY, platform, scope, external_id)


def thread_hash(channel_account_id: int, thread_key: str) -> str:
    return ledger_hash(ErasureLedger.Kind.THREAD, channel_account_id, thread_key)


_ERASURE_LOCK = int.from_bytes(b"scrm-gdp", "big")  # a PostgreSQL advisory lock key


def erasure_lock(*, shared: bool) -> None:
    """Hold the erasure lock until the current transaction ends: shared by ingest, exclusively by an erasure."""
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("erasure_lock() is held until commit: call it in atomic()")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}(%s)", [_ERASURE_LOCK])


@dataclasses.dataclass(frozen=True, slots=True)
class Erasures:
    """When each identity key and thread key of a batch was last erased (only the erased ones)."""

    identities: Mapping[tuple[str, str, str], dt.datetime]
    threads: Mapping[str, dt.datetime]

    def __bool__(self) -> bool:
        return bool(self.identities or self.threads)


def erasures_lookup(*, identity_keys: Iterable[tuple[str, str, str]], channel_account_id: int,
                    thread_keys: Iterable[str]) -> Erasures:
    """The erasure times of these identities and threads of one channel account, in one query (none if empty)."""
    by_hash: dict[str, tuple[str, Any]] = {}
    for key in set(identity_keys):
        by_hash[identity_hash(*key)] = ("identity", key)
    for thread_key in set(thread_keys):
        if thread_key:
            by_hash[thread_hash(channel_account_id, thread_key)] = ("thread", thread_key)
    if not by_hash:
        return Erasures({}, {})
    # The hashes as one comma-separated parameter (they are hex): not thousands of placeholders spliced into the
    # query text, nor an array parameter adapted element by element.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key_hash, max(erased_at) FROM {ErasureLedger._meta.db_table} "
                       "WHERE key_hash = ANY(string_to_array(%s, ',')) GROUP BY key_hash", [",".join(by_hash)])
        rows = cursor.fetchall()
    found: dict[str, dict[Any, dt.datetime]] = {"identity": {}, "thread": {}}
    for key_hash, at in rows:
        kind, key = by_hash[key_hash]
        found[kind][key] = at
    return Erasures(found["identity"], found["thread"])


# --- the registry ------------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Subject:
    """The person being exported or erased, as the handlers see it.

    `identities` are plain dicts of the identity rows (id, platform, scope, external_id, handle, display_name).
    An erase handler calls `erased_thread` for every conversation thread with the person it deletes or
    anonymises, so that a replay of our own replies in it from before the erasure re-creates nothing.
    """

    customer_ids: tuple[int, ...]
    identities: tuple[dict[str, Any], ...]
    erased_at: dt.datetime | None = None
    erased_threads: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @property
    def identity_ids(self) -> list[int]:
        return [i["id"] for i in self.identities]

    def erased_thread(self, channel_account_id: int, thread_key: str) -> None:
        self.erased_threads.append((channel_account_id, thread_key))


ExportFn = Callable[[Subject], Any]
EraseFn = Callable[[Subject], Mapping[str, int]]


@dataclasses.dataclass(frozen=True, slots=True)
class Handler:
    """One app's part of an export and an erasure: `export` returns a JSON-ready section, `erase` the counts of
    rows it deleted or anonymised by name. `models` are the labels ("app.Model") it answers for."""

    section: str
    models: tuple[str, ...]
    export: ExportFn
    erase: EraseFn


_handlers: dict[str, Handler] = {}
_exempt: dict[str, str] = {}


def register(section: str, *, models: Sequence[str], export: ExportFn, erase: EraseFn) -> None:
    """Register an app's handler (from its `AppConfig.ready()`); registering a section again replaces it."""
    _handlers[section] = Handler(section, tuple(models), export, erase)


def exempt(model_label: str, *, reason: str) -> None:
    """Declare that a model referencing an identity or a customer holds no personal data of its own."""
    if not reason.strip():
        raise ValueError("an exemption needs a reason")
    _exempt[model_label] = reason


def handlers() -> tuple[Handler, ...]:
    return tuple(_handlers.values())


def unhandled_models() -> list[str]:
    """Labels of installed models with a foreign key to `SocialIdentity` or `Customer` that no handler covers."""
    covered = set(_OWN_MODELS) | set(_exempt)
    for handler in _handlers.values():
        covered.update(handler.models)
    missing = []
    for model in apps.get_models():
        refs = [f for f in model._meta.get_fields()
                if f.is_relation and f.concrete and f.related_model in (SocialIdentity, Customer)]
        if refs and model._meta.label not in covered:
            missing.append(model._meta.label)
    return sorted(missing)


# --- export ------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A value read from the database as JSON: times and dates ISO 8601, UUIDs and decimals as strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return value


def _person(customer: Customer | int) -> list[int]:
    """The live customer and every tombstone merged into it, live one first."""
    root = customer_resolve(getattr(customer, "pk", customer)).pk
    with connection.cursor() as cursor:
        cursor.execute(_PERSON_SQL, [root])
        others = [row[0] for row in cursor.fetchall() if row[0] != root]
    return [root, *others]


def _subject(customer_ids: Sequence[int]) -> Subject:
    identities = SocialIdentity.objects.filter(customer_id__in=customer_ids).order_by("pk").values(
        "id", "platform", "scope", "external_id", "handle", "display_name")
    return Subject(tuple(customer_ids), tuple(identities))


def _audit_events(customer_ids: Sequence[int]) -> models.QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(
        models.Q(customer_id__in=customer_ids) | models.Q(source_customer_id__in=customer_ids))


def customer_export(*, customer: Customer | int, actor: Actor) -> dict[str, Any]:
    """Everything held about the person (JSON-ready): the customer and its tombstones, identities, contact
    points, audit events, and each registered handler's section. Recorded as an `export` audit event."""
    actor_fields = _actor_fields(actor)
    with transaction.atomic():
        erasure_lock(shared=False)  # first: no ingest batch is in flight while the person's rows are erased
        customer_ids = _person(customer)
        subject = _subject(customer_ids)
        customers = list(Customer.objects.filter(pk__in=customer_ids).order_by("pk").values())
        data: dict[str, Any] = {
            "format": "socialcrm.gdpr.export/1",
            "exported_at": timezone.now(),
            "customer_id": customer_ids[0],
            "customers": customers,
            "identities": list(SocialIdentity.objects.filter(customer_id__in=customer_ids).order_by("pk").values()),
            "contact_points": list(ContactPoint.objects.filter(customer_id__in=customer_ids).order_by("pk").values()),
            "audit_events": list(_audit_events(customer_ids).order_by("created_at", "pk").values(
                "id", "kind", "actor_label", "reason", "customer_id", "source_customer_id", "moved", "created_at",
                "undone_by_id")),
        }
        for handler in _handlers.values():
            data[handler.section] = handler.export(subject)
        AuditEvent.objects.create(
            kind=AuditEvent.Kind.EXPORT, customer_id=customer_ids[0], reason="GDPR export",
            moved={"customer_ids": customer_ids,
                   "counts": {k: len(v) for k, v in data.items() if isinstance(v, list)}},
            **actor_fields,
        )
    return jsonable(data)


# --- erasure -----------------------------------------------------------------------------------------------


def customer_erase(*, customer: Customer | int, actor: Actor, reason: str) -> AuditEvent:
    """Erase everything held about the person (see the module docstring); returns the `erase` audit event.

    Raises `Conflict` (`legal_hold`) when the customer or a tombstone of it is under a legal hold.
    """
    actor_fields = _actor_fields(actor)
    with transaction.atomic():
        erasure_lock(shared=False)  # first: no ingest batch is in flight while the person's rows are erased
        customer_ids = _person(customer)
        locked = list(Customer.objects.select_for_update(no_key=True).filter(pk__in=customer_ids).order_by("pk"))
        held = [c for c in locked if c.legal_hold_reason.strip()]
        if held:
            raise Conflict(f"customer {held[0].pk} is under a legal hold: {held[0].legal_hold_reason}",
                           code=LEGAL_HOLD, field="customer")
        # Locked, so a concurrent ingest batch that refreshes these identities waits for the erasure.
        list(SocialIdentity.objects.select_for_update().filter(customer_id__in=customer_ids).order_by("pk")
             .values_list("pk", flat=True))
        subject = _subject(customer_ids)
        subject.erased_at = now = timezone.now()
        counts: dict[str, int] = {}
        for handler in _handlers.values():
            for name, n in handler.erase(subject).items():
                counts[f"{handler.section}.{name}"] = n

        points = list(ContactPoint.objects.filter(customer_id__in=customer_ids).values_list("kind", "normalized"))
        ledger = [ErasureLedger(kind=ErasureLedger.Kind.IDENTITY, erased_at=now,
                                key_hash=identity_hash(i["platform"], i["scope"], i["external_id"]))
                  for i in subject.identities]
        ledger += [ErasureLedger(kind=kind, erased_at=now, key_hash=ledger_hash(kind, value))
                   for kind, value in sorted(set(points)) if kind in (ErasureLedger.Kind.EMAIL,
                                                                     ErasureLedger.Kind.PHONE)]
        ledger += [ErasureLedger(kind=ErasureLedger.Kind.THREAD, erased_at=now, key_hash=thread_hash(*t))
                   for t in sorted(set(subject.erased_threads))]
        ErasureLedger.objects.bulk_create(ledger)

        counts["audit_events_scrubbed"] = _audit_events(customer_ids).scrub_for_erasure()
        counts["contact_points"] = ContactPoint.objects.filter(customer_id__in=customer_ids).delete()[0]
        # Duplicate suggestions hold both profiles' values in their explanations; the outbox only ids.
        counts["duplicate_suggestions"] = DuplicateSuggestion.objects.filter(
            models.Q(customer_low__in=customer_ids) | models.Q(customer_high__in=customer_ids)
        ).delete()[0]
        DedupeOutbox.objects.filter(customer_id__in=customer_ids).delete()
        counts["identities"] = SocialIdentity.objects.filter(customer_id__in=customer_ids).delete()[0]
        Customer.objects.filter(pk__in=customer_ids).update(merged_into=None)
        counts["customers"] = Customer.objects.filter(pk__in=customer_ids).delete()[0]
        event = AuditEvent.objects.create(
            kind=AuditEvent.Kind.ERASE, customer_id=customer_ids[0], reason=reason,
            moved={"customer_ids": customer_ids, "erased_at": now.isoformat(), "counts": counts,
                   "ledger": [{"kind": row.kind, "key_hash": row.key_hash} for row in ledger]},
            **actor_fields,
        )
        emit("customer.erased", {"customer_ids": customer_ids, "audit_event_id": event.pk})
    logger.info("erased customer %s (%d customers, event %s)", customer_ids[0], len(customer_ids), event.pk)
    return event
