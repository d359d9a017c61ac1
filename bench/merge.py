"""Merge, unmerge and the merged customer's first timeline page on a database of two million interactions.

    python bench/merge.py [--interactions 2000000] [--repeat 50] [--keep-indexes]

Builds a fresh database (`<test database name>_merge`) with set-based SQL (`INSERT ... SELECT
generate_series`, no ORM): 200,000 customers, 250,000 social identities (one customer in four has two),
600,000 conversations on six channel accounts and the rest of `--interactions` spread over them (about three
per conversation), plus two customers of our own: the source, whose 20 identities hold 150,000 interactions
in 1,000 conversations, and the target, whose 3 identities hold 3,000. Both have tags, notes and contact
points, and their interactions are spread over the same months as everyone else's. By default the secondary
indexes and unique constraints of the loaded tables are dropped for the load and built afterwards, from their
definitions in the catalog (faster than maintaining them row by row), and foreign key triggers are off while
loading (the rows are consistent by construction); then everything is vacuumed and analyzed.

Then, after one warm-up round, `--repeat` rounds of: `customer_merge` (source into target), the target's first
timeline page (`conversations.selectors.customer_timeline`, 50 rows), `customer_unmerge`, each timed on its
own, including its transaction's commit. Prints median, p95 and max against the goals (merge and unmerge
<= 50 ms, timeline page <= 5 ms), the time the build took, and a final JSON line. Between rounds it checks
that the merge moved the whole history (all 153,000 interactions reachable from the target) and that the
unmerge gave it back. The database is dropped at the end. The machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402

from bench._common import drop_secondary_indexes, percentile, timed_sql  # noqa: E402
from channels.models import ChannelAccount  # noqa: E402
from contacts.models import SocialIdentity  # noqa: E402
from contacts.services import customer_merge, customer_unmerge  # noqa: E402
from conversations.models import Interaction  # noqa: E402
from conversations.selectors import customer_timeline  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 150 * 24 * 3600  # every interaction falls into the same 150 days
PLATFORMS = ["x", "facebook", "instagram", "mastodon", "telegram", "whatsapp"]
CUSTOMERS = 200_000
IDENTITIES = 250_000
CONVERSATIONS = 600_000
SOURCE_IDENTITIES, SOURCE_CONVERSATIONS, SOURCE_INTERACTIONS = 20, 1_000, 150_000
TARGET_IDENTITIES, TARGET_CONVERSATIONS, TARGET_INTERACTIONS = 3, 30, 3_000
GOALS_MS = {"merge": 50.0, "unmerge": 50.0, "timeline": 5.0}
LOADED_TABLES = ("contacts_customer", "contacts_contactpoint", "contacts_socialidentity", "conversations_conversation",
                 "conversations_interaction")


def build(interactions: int, *, keep_indexes: bool) -> dict[str, Any]:
    """Fill the database; returns the ids of the two customers and the seconds each phase took."""
    background = interactions - SOURCE_INTERACTIONS - TARGET_INTERACTIONS
    assert background > CONVERSATIONS, "--interactions is too small for the background data set"
    accounts = [ChannelAccount.objects.create(platform=p, name=f"bench {p}", external_id=f"bench-{p}").pk
                for p in PLATFORMS]
    source_id, target_id = CUSTOMERS + 1, CUSTOMERS + 2
    first_source_identity, first_target_identity = IDENTITIES + 1, IDENTITIES + SOURCE_IDENTITIES + 1
    first_source_conversation = CONVERSATIONS + 1
    first_target_conversation = CONVERSATIONS + SOURCE_CONVERSATIONS + 1
    params = {
        "t0": T0, "accounts": accounts, "platforms": PLATFORMS, "customers": CUSTOMERS, "identities": IDENTITIES,
        "conversations": CONVERSATIONS, "source": source_id, "target": target_id,
        "source_identities": SOURCE_IDENTITIES, "target_identities": TARGET_IDENTITIES,
        "first_source_identity": first_source_identity, "first_target_identity": first_target_identity,
        "all_identities": IDENTITIES + SOURCE_IDENTITIES + TARGET_IDENTITIES,
        "source_conversations": SOURCE_CONVERSATIONS, "target_conversations": TARGET_CONVERSATIONS,
        "first_source_conversation": first_source_conversation,
        "first_target_conversation": first_target_conversation,
        "all_conversations": CONVERSATIONS + SOURCE_CONVERSATIONS + TARGET_CONVERSATIONS,
    }
    # The identity a conversation is with, by conversation id j (background, then the source's, the target's).
    identity_of_conversation = """
        CASE WHEN j <= %(conversations)s THEN ((j - 1) %% %(identities)s) + 1
             WHEN j < %(first_target_conversation)s
                 THEN %(first_source_identity)s + (j - %(first_source_conversation)s) %% %(source_identities)s
             ELSE %(first_target_identity)s + (j - %(first_target_conversation)s) %% %(target_identities)s END
    """
    phases: dict[str, float] = {}
    with connection.cursor() as cursor:
        # A bulk load: no WAL flush per statement, and no foreign key triggers (the rows are consistent by
        # construction; the constraints stay declared).
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        restore = [] if keep_indexes else drop_secondary_indexes(cursor, LOADED_TABLES)
        phases["customers"] = timed_sql(cursor, """
            INSERT INTO contacts_customer (id, created_at, updated_at, display_name, postal_address, language,
                                           customer_number, tags, notes)
            SELECT c, %(t0)s, %(t0)s,
                   CASE c WHEN %(source)s THEN 'erika_m' WHEN %(target)s THEN 'Erika Mustermann'
                          ELSE 'Kunde ' || c END,
                   CASE WHEN c = %(target)s THEN 'Hauptstr. 1, 53113 Bonn' ELSE '' END,
                   CASE WHEN c %% 3 = 0 THEN 'en' ELSE 'de' END,
                   CASE WHEN c = %(target)s THEN 'K-42' WHEN c %% 4 = 0 THEN 'K-' || c ELSE '' END,
                   CASE c WHEN %(source)s THEN '{presse,kündigung}'::varchar[] WHEN %(target)s THEN '{vip}'
                          ELSE '{}' END,
                   CASE c WHEN %(source)s THEN 'Will kündigen.' WHEN %(target)s THEN 'Ruft oft an.' ELSE '' END
            FROM generate_series(1, %(target)s) c
            """, params)
        phases["contact points"] = timed_sql(cursor, """
            INSERT INTO contacts_contactpoint (created_at, updated_at, customer_id, kind, value, normalized,
                                               verified_at, verified_by)
            SELECT %(t0)s, %(t0)s, c, 'email', 'kunde' || c || '@example.org', 'kunde' || c || '@example.org',
                   CASE WHEN c %% 2 = 0 THEN %(t0)s END, CASE WHEN c %% 2 = 0 THEN 'otp' ELSE '' END
            FROM generate_series(1, %(customers)s, 3) c
            UNION ALL
            SELECT %(t0)s, %(t0)s, c, 'email', 'erika@example.org', 'erika@example.org',
                   CASE WHEN c = %(source)s THEN %(t0)s END, CASE WHEN c = %(source)s THEN 'otp' ELSE '' END
            FROM unnest(ARRAY[%(source)s, %(target)s]) c
            UNION ALL
            SELECT %(t0)s, %(t0)s, %(source)s, 'phone', '+4915112345678', '+4915112345678', %(t0)s, 'whatsapp'
            """, params)
        phases["identities"] = timed_sql(cursor, """
            INSERT INTO contacts_socialidentity (id, customer_id, platform, scope, external_id, handle, display_name,
                                                 avatar_url, profile_url, first_seen_at, last_seen_at, raw_profile)
            SELECT i,
                   CASE WHEN i <= %(identities)s THEN ((i - 1) %% %(customers)s) + 1
                        WHEN i < %(first_target_identity)s THEN %(source)s ELSE %(target)s END,
                   (%(platforms)s::text[])[1 + i %% 6], '', 'u' || i, 'kunde_' || i, 'Kunde ' || i, '', '',
                   %(t0)s, %(t0)s, '{}'
            FROM generate_series(1, %(all_identities)s) i
            """, params)
        phases["conversations"] = timed_sql(cursor, f"""
            INSERT INTO conversations_conversation (id, created_at, updated_at, channel_account_id, thread_key,
                                                    identity_id, status, priority, first_inbound_at,
                                                    last_activity_at)
            SELECT j, %(t0)s, %(t0)s, (%(accounts)s::bigint[])[1 + ident %% 6], 'c' || j, ident,
                   CASE WHEN j %% 10 = 0 THEN 'open' ELSE 'resolved' END, 1, %(t0)s, %(t0)s
            FROM (SELECT j, {identity_of_conversation} AS ident
                  FROM generate_series(1, %(all_conversations)s) j) s
            """, params)
        spent = 0.0
        for prefix, count, first_conversation, conversations in (
            ("b", background, 1, CONVERSATIONS),
            ("s", SOURCE_INTERACTIONS, first_source_conversation, SOURCE_CONVERSATIONS),
            ("t", TARGET_INTERACTIONS, first_target_conversation, TARGET_CONVERSATIONS),
        ):
            spent += timed_sql(cursor, f"""
                INSERT INTO conversations_interaction (channel_account_id, conversation_id, identity_id, direction,
                    kind, external_id, text, occurred_at, received_at, reply_to_external_id, attachments, raw,
                    is_stub)
                SELECT (%(accounts)s::bigint[])[1 + ident %% 6], j, ident, 'in',
                       (ARRAY['mention', 'reply', 'dm'])[1 + k %% 3], %(prefix)s || k,
                       'Mein Router blinkt seit ' || (k %% 97) || ' Minuten rot. Bitte helfen Sie mir!', at, at, '',
                       '[]', '{{}}', false
                FROM (SELECT k, j, {identity_of_conversation} AS ident,
                             %(t0)s + make_interval(secs => k * %(step)s) AS at
                      FROM (SELECT k, %(first)s + (k - 1) %% %(n_conversations)s AS j
                            FROM generate_series(1, %(count)s) k) numbered) s
                """, {**params, "prefix": prefix, "count": count, "first": first_conversation,
                      "n_conversations": conversations, "step": SPAN_SECONDS / count})
        phases["interactions"] = spent
        for table in ("contacts_customer", "contacts_socialidentity", "conversations_conversation"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        start = time.perf_counter()
        for statement in restore:
            cursor.execute(statement)
        phases["indexes"] = time.perf_counter() - start
        start = time.perf_counter()
        cursor.execute("RESET synchronous_commit")
        cursor.execute("RESET session_replication_role")
        for table in LOADED_TABLES:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        phases["vacuum, analyze"] = time.perf_counter() - start
    return {"source": source_id, "target": target_id, "phases": phases}



def reachable(customer_id: int) -> int:
    return Interaction.objects.filter(identity__customer_id=customer_id, is_stub=False).count()


def measure(source: int, target: int, repeat: int) -> dict[str, list[float]]:
    actor = get_user_model().objects.create_user(username="bench.agent")
    source_identities = set(SocialIdentity.objects.filter(customer_id=source).values_list("pk", flat=True))
    history = {source: reachable(source), target: reachable(target)}
    assert history == {source: SOURCE_INTERACTIONS, target: TARGET_INTERACTIONS}, history
    times: dict[str, list[float]] = {"merge": [], "timeline": [], "unmerge": []}
    for round_ in range(repeat + 1):
        start = time.perf_counter()
        event = customer_merge(target=target, source=source, actor=actor, reason="bench")
        merged = time.perf_counter()
        page = customer_timeline(customer_id=target, limit=50)
        paged = time.perf_counter()
        if round_ in (0, repeat):  # outside the timings: the whole history moved, the page is the newest
            assert reachable(target) == SOURCE_INTERACTIONS + TARGET_INTERACTIONS
            assert len(page) == 50
            assert any(i.identity_id in source_identities for i in page)
            assert [(i.occurred_at, i.pk) for i in page] == sorted(((i.occurred_at, i.pk) for i in page),
                                                                   reverse=True)
        start_unmerge = time.perf_counter()
        customer_unmerge(merge_event=event, actor=actor, reason="bench")
        unmerged = time.perf_counter()
        if round_ in (0, repeat):
            assert (reachable(source), reachable(target)) == (SOURCE_INTERACTIONS, TARGET_INTERACTIONS)
        if round_ == 0:
            continue  # warm-up
        times["merge"].append((merged - start) * 1000)
        times["timeline"].append((paged - merged) * 1000)
        times["unmerge"].append((unmerged - start_unmerge) * 1000)
    return times


def timeline_breakdown(source: int, target: int, rounds: int = 20) -> dict[str, float]:
    """Where the merged target's first page spends its time (medians over `rounds` pages, in ms): wall clock,
    the SQL round trips alone (each statement from send to result), and this process's CPU time (building
    the model instances and prefetching); plus the number of statements."""
    actor = get_user_model().objects.get(username="bench.agent")
    event = customer_merge(target=target, source=source, actor=actor, reason="bench")
    wall, sql, cpu, statements = [], [], [], 0
    for _ in range(rounds):
        spent: list[float] = []

        def timed(execute: Any, statement: str, params: Any, many: bool, context: Any,
                  spent: list[float] = spent) -> Any:
            start = time.perf_counter()
            try:
                return execute(statement, params, many, context)
            finally:
                spent.append(time.perf_counter() - start)

        with connection.execute_wrapper(timed):
            start, start_cpu = time.perf_counter(), time.process_time()
            customer_timeline(customer_id=target, limit=50)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        sql.append(sum(spent) * 1000)
        statements = len(spent)
    customer_unmerge(merge_event=event, actor=actor, reason="bench")
    return {"wall": statistics.median(wall), "sql": statistics.median(sql), "cpu": statistics.median(cpu),
            "statements": statements}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--keep-indexes", action="store_true",
                        help="load with every index in place instead of building them afterwards")
    args = parser.parse_args()

    creation = connection.creation
    bench_name = f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_merge"
    connection.settings_dict["TEST"]["NAME"] = bench_name
    print(f"creating a fresh database {bench_name} ...", file=sys.stderr)
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        start = time.perf_counter()
        built = build(args.interactions, keep_indexes=args.keep_indexes)
        build_seconds = time.perf_counter() - start
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM conversations_interaction")
            total = cursor.fetchone()[0]
            cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
            size = cursor.fetchone()[0]
        print(f"built {total:,} interactions in {build_seconds:.1f} s ({size}): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in built["phases"].items()), file=sys.stderr)
        load_before = os.getloadavg()[0]
        times = measure(built["source"], built["target"], args.repeat)
        load_after = os.getloadavg()[0]
        page = timeline_breakdown(built["source"], built["target"])
    finally:
        connection.close()
        creation.destroy_test_db(bench_name, verbosity=0)

    summary = {name: {"median": statistics.median(v), "p95": percentile(v, 0.95), "max": max(v)}
               for name, v in times.items()}
    print(f"\n{total:,} interactions; source: {SOURCE_IDENTITIES} identities, {SOURCE_INTERACTIONS:,} interactions; "
          f"target: {TARGET_IDENTITIES} identities, {TARGET_INTERACTIONS:,}; {args.repeat} rounds after a warm-up")
    print(f"built in {build_seconds:.1f} s ({'indexes kept' if args.keep_indexes else 'indexes built after the load'})"
          f"; load average {load_before:.1f} before the rounds, {load_after:.1f} after ({os.cpu_count()} CPUs)")
    print(f"\n{'operation':<26}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}{'goal ms':>9}   ")
    labels = {"merge": "customer_merge", "unmerge": "customer_unmerge", "timeline": "timeline page (50)"}
    for name in ("merge", "unmerge", "timeline"):
        s = summary[name]
        verdict = "ok" if s["p95"] <= GOALS_MS[name] else "MISSED"
        print(f"{labels[name]:<26}{s['median']:>11.2f}{s['p95']:>9.2f}{s['max']:>9.2f}{GOALS_MS[name]:>9.0f}   "
              f"{verdict} (p95)")
    print(f"timeline page, traced: {page['wall']:.2f} ms median; its {page['statements']} SQL round trip(s) "
          f"{page['sql']:.2f} ms; this process's CPU {page['cpu']:.2f} ms")
    print(json.dumps({
        "interactions": total, "source_identities": SOURCE_IDENTITIES, "source_interactions": SOURCE_INTERACTIONS,
        "repeat": args.repeat, "build_s": round(build_seconds, 1), "load_avg": round(load_after, 1),
        **{f"{name}_{stat}_ms": round(value, 2) for name, s in summary.items() for stat, value in s.items()},
        "timeline_sql_ms": round(page["sql"], 2), "timeline_client_cpu_ms": round(page["cpu"], 2),
        "goals_met": all(summary[n]["p95"] <= GOALS_MS[n] for n in GOALS_MS),
    }))


if __name__ == "__main__":
    main()
