"""A customer's timeline and customer search through the REST API on the production server (gunicorn), one client
at a time and 8 at once, beside the same server's trivial endpoint, in one run.

    python bench/api.py [--customers 500000] [--interactions 2000000] [--big 50000] [--database NAME] [--keep]
                        [--rebuild] [--requests 1000] [--queries 100] [--duration 5] [--warmup 1] [--rounds 2]
                        [--connections 8] [--processes 2] [--workers 2] [--threads 4] [--tokens 64] [--redis-db 12]

The database (`--database`, default `<test database name>_api`) is built with set-based SQL (`INSERT ... SELECT
generate_series`, no ORM), like bench/merge.py: `--customers` customers with names drawn from lists of common
first and last names, one in five with a second social identity (handles and display names as people pick them
on each network), e-mail addresses for 70 %, mobile numbers for half, customer numbers for 60 %, one
conversation per identity on six channel accounts and the rest of `--interactions` spread over them; plus one
customer of our own whose five identities hold `--big` interactions in 500 conversations, over the same months
as everyone else's. Secondary indexes are dropped for the load and built afterwards, then everything is vacuumed
and analyzed. The database is stamped (a comment on it) with the data set's version, its sizes and the schema's
migrations: a later run with the same stamp reuses it instead of building it again (`--keep` keeps it at the end;
without it the database is dropped; `--rebuild` builds anew even when the stamp matches).

Then gunicorn serves it on a free port of 127.0.0.1 (as bench/webhooks.py starts it: DEBUG off, persistent
database connections, the rate limit's cache on Redis database `--redis-db`, which must hold nothing else), and the
bench authenticates with API tokens (`access.services.api_token_create`, scope read) of a user who sees every
channel account. One token may make 1,200 requests a minute, so the requests take `--tokens` tokens in turn.

Measured with one client at a time (one keep-alive connection, the next request sent when the answer is in):
`GET /ping/`; the big customer's timeline, first page (50 interactions) and a page 40,000 interactions deep (its
cursor is the API's own: the bench walks the timeline once through the `next` links, 200 at a time, and checks
the cursor against the row at that position and the page against the rows after it); `GET customers/?q=` over a
mix of queries taken from the data (the start of a first or last name, four letters or more, as people type it;
a handle with "@"; an e-mail address; a phone number in national format; a customer number; text that matches
nothing), each query checked once before the timing (it finds the customer it was taken from, or nothing);
three letters from inside a name ("ann"), which match tens of thousands of customers, are timed too and reported
apart from the mix. Goals: timeline p99 <= 30 ms, search p99 <= 50 ms. Then requests/s with `--connections`
clients at once (bench/_load.py generator processes) for `/ping/`, the timeline (first and deep pages in turn)
and search (the mix), in rounds whose order alternates, with the ratio to `/ping/` of the same run. Prints the
tables and a final JSON line. The machines are shared and noisy: compare the ratios, not the rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import signal
import string
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402

from access.services import api_token_create  # noqa: E402
from bench._common import (  # noqa: E402
    HEADER,
    HEADER_NOTE,
    HOST,
    Server,
    database_backends,
    drop_secondary_indexes,
    merged,
    ms,
    percentile,
    print_run,
    redis_check_free,
    redis_purge,
    timed_sql,
    wait_for_disconnect,
    with_path,
)
from bench._load import LoadResult, Target, run_load  # noqa: E402
from channels.models import ChannelAccount  # noqa: E402
from contacts.search import SEARCH_TEXT_SQL  # noqa: E402
from conversations.models import Interaction  # noqa: E402
from socialcrm.api.pagination import encode_cursor  # noqa: E402

# Bump when the generated data changes, so a kept database of the old kind is rebuilt.
DATA_VERSION = 2
T0 = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 365 * 24 * 3600  # every interaction and customer change falls into the same year
PLATFORMS = ["x", "facebook", "instagram", "mastodon", "telegram", "whatsapp"]
BIG_IDENTITIES, BIG_CONVERSATIONS = 5, 500
DEEP = 40_000  # interactions before the deep page
WALK_PAGE = 200  # page size of the walk to the deep cursor (the API's maximum)
GOALS_MS = {"timeline": 30.0, "search": 50.0}
LOADED_TABLES = ("contacts_customer", "contacts_contactpoint", "contacts_socialidentity", "conversations_conversation",
                 "conversations_interaction")
INTERACTION_CHUNK = 250_000

FIRST_NAMES = [
    "Anna", "Maria", "Ursula", "Monika", "Petra", "Elke", "Sabine", "Renate", "Helga", "Karin", "Brigitte", "Ingrid",
    "Erika", "Andrea", "Gisela", "Claudia", "Susanne", "Gabriele", "Christa", "Christine", "Birgit", "Stefanie",
    "Julia", "Katharina", "Laura", "Lena", "Lea", "Sophie", "Marie", "Hannah", "Emma", "Mia", "Lina", "Jana",
    "Nicole", "Sandra", "Melanie", "Jessica", "Sarah", "Lisa", "Vanessa", "Jennifer", "Tanja", "Nadine", "Daniela",
    "Özlem", "Ayşe", "Fatma", "Zeynep", "Elif", "Agnieszka", "Katarzyna", "Olga", "Natalia", "Irina", "Chiara",
    "Giulia", "Sofia", "Lucía", "Chloé", "Zoë", "Peter", "Michael", "Thomas", "Andreas", "Wolfgang", "Klaus",
    "Jürgen", "Günter", "Stefan", "Christian", "Uwe", "Werner", "Horst", "Frank", "Dieter", "Manfred", "Bernd",
    "Ralf", "Markus", "Martin", "Matthias", "Jörg", "Alexander", "Sven", "Tobias", "Jan", "Florian", "Sebastian",
    "Daniel", "Dennis", "Tim", "Jonas", "Lukas", "Leon", "Finn", "Paul", "Felix", "Maximilian", "Niklas", "Luca",
    "Ben", "Elias", "Noah", "Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Piotr", "Krzysztof", "Tomasz",
    "Sergej", "Dmitri", "Marco", "Giuseppe", "Alessandro", "José", "Carlos", "Pierre", "François", "René",
]
LAST_NAMES = [
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann",
    "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier",
    "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser",
    "Fuchs", "Peters", "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich",
    "Keller", "Günther", "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht",
    "Schuster", "Simon", "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher", "Krämer", "Vogt", "Stein",
    "Jäger", "Otto", "Sommer", "Groß", "Seidel", "Heinrich", "Brandt", "Haas", "Schreiber", "Graf", "Schulte",
    "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl", "Engel", "Horn", "Busch", "Bergmann", "Thomas", "Voigt",
    "Sauer", "Arnold", "Wolff", "Pfeiffer", "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Aydın",
    "Nowak", "Kowalski", "Wiśniewski", "Kowalczyk", "Lewandowski", "Ivanov", "Petrov", "Smirnov", "Rossi",
    "Russo", "Ferrari", "Esposito", "Bianchi", "García", "Fernández", "López", "Martínez", "Dubois", "Lefèvre",
    "Nguyen", "Tran", "Le", "Kim", "Lee", "Park", "Wang", "Li", "Zhang", "Smith", "Jones", "Brown", "Taylor",
    "Papadopoulos", "Jansen", "de Vries", "van Dijk", "Hansen", "Nielsen", "Andersson", "Johansson",
]
MAIL_DOMAINS = ["gmx.de", "web.de", "t-online.de", "gmail.com", "outlook.de", "yahoo.de", "posteo.de", "icloud.com",
                "freenet.de", "mail.de"]
MOBILE_PREFIXES = ["151", "152", "157", "159", "160", "162", "163", "170", "171", "172", "173", "174", "175", "176",
                   "177", "178", "179"]
TEXTS = [
    "Mein Router blinkt seit heute Morgen rot. Bitte helfen Sie mir!",
    "@TelekomHilft Seit drei Tagen kein Internet, die Hotline ist nicht erreichbar.",
    "Danke für die schnelle Hilfe, jetzt läuft alles wieder.",
    "Warum ist meine Rechnung diesen Monat doppelt so hoch?",
    "Der Techniker ist wieder nicht gekommen. Wie lange soll ich noch warten?",
    "Can you tell me when fibre will be available in my street?",
    "Ich möchte meinen Vertrag kündigen, an wen wende ich mich?",
    "Die Kundennummer steht oben rechts auf der Rechnung, oder?",
]
SEARCH_KINDS = ["name fragment", "handle", "e-mail", "phone", "customer number", "no hit"]
EXTRA_KINDS = ["3-letter fragment"]  # measured and reported, but not part of the mix the goal is about
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ç": "c",
                                  "ş": "s", "ı": "i", "ś": "s", "í": "i", "ó": "o", "á": "a", "ë": "e", " ": ""})


def ascii_name(name: str) -> str:
    """How a name turns up in handles and e-mail addresses: lower case, umlauts spelled out, no spaces."""
    return name.lower().translate(_TRANSLITERATION)


def stamp_for(args: argparse.Namespace) -> str:
    """What a kept database must have been built with to be reused: the data's version, sizes and the schema."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    leaves = sorted(f"{app}.{name}" for app, name in graph.leaf_nodes())
    return (f"socialcrm bench/api.py data v{DATA_VERSION}; customers={args.customers} interactions={args.interactions} "
            f"big={args.big}; schema {' '.join(leaves)}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------- building


def build(args: argparse.Namespace) -> dict[str, float]:
    """Fill the (empty, migrated) database; returns the seconds each phase took. The big customer is the last."""
    customers, big = args.customers, args.big
    identities = customers + customers // 5
    conversations = identities
    background = args.interactions - big
    if background < conversations:
        raise SystemExit(f"--interactions must be at least {conversations + big:,} for {customers:,} customers")
    accounts = [ChannelAccount.objects.create(platform=p, name=f"bench {p}", external_id=f"bench-{p}").pk
                for p in PLATFORMS]
    big_customer = customers + 1
    first_big_identity, first_big_conversation = identities + 1, conversations + 1
    params = {
        "t0": T0, "span": SPAN_SECONDS, "accounts": accounts, "platforms": PLATFORMS,
        "customers": customers, "identities": identities, "conversations": conversations,
        "big_customer": big_customer, "first_big_identity": first_big_identity,
        "all_identities": identities + BIG_IDENTITIES, "big_identities": BIG_IDENTITIES,
        "first_big_conversation": first_big_conversation, "big_conversations": BIG_CONVERSATIONS,
        "all_conversations": conversations + BIG_CONVERSATIONS,
        "firsts": FIRST_NAMES, "firsts_ascii": [ascii_name(n) for n in FIRST_NAMES],
        "lasts": LAST_NAMES, "lasts_ascii": [ascii_name(n) for n in LAST_NAMES],
        "n_first": len(FIRST_NAMES), "n_last": len(LAST_NAMES), "domains": MAIL_DOMAINS,
        "n_domains": len(MAIL_DOMAINS), "mobiles": MOBILE_PREFIXES, "n_mobiles": len(MOBILE_PREFIXES),
        "texts": TEXTS, "n_texts": len(TEXTS),
    }
    # The person behind identity i: its customer (customers 1, 6, 11, ... have a second identity).
    customer_of_identity = """
        CASE WHEN i <= %(customers)s THEN i
             WHEN i <= %(identities)s THEN (i - %(customers)s - 1) * 5 + 1
             ELSE %(big_customer)s END
    """
    phases: dict[str, float] = {}

    def phase(name: str, statement: str, extra: dict[str, Any] | None = None) -> None:
        progress(f"  {name} ...")
        phases[name] = phases.get(name, 0.0) + timed_sql(cursor, statement, {**params, **(extra or {})})

    with connection.cursor() as cursor:
        # A bulk load: no WAL flush per statement, and no foreign key triggers (the rows are consistent by
        # construction; the constraints stay declared).
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        restore = drop_secondary_indexes(cursor, LOADED_TABLES)
        cursor.execute("SELECT setseed(0.42)")
        phase("people", """
            CREATE TEMPORARY TABLE bench_person AS
            SELECT c, 1 + floor(random() * %(n_first)s)::int AS f, 1 + floor(random() * %(n_last)s)::int AS l,
                   random() AS r1, random() AS r2, random() AS r3
            FROM generate_series(1, %(customers)s) c
            UNION ALL
            SELECT %(big_customer)s, array_position(%(firsts)s::text[], 'Erika'),
                   array_position(%(lasts)s::text[], 'Müller'), 0.1, 0.1, 0.1
            """)
        cursor.execute("ALTER TABLE bench_person ADD PRIMARY KEY (c)")
        phase("customers", """
            INSERT INTO contacts_customer (id, created_at, updated_at, display_name, postal_address, language,
                                           customer_number, tags, notes)
            SELECT c, %(t0)s::timestamptz + make_interval(secs => r1 * %(span)s),
                   %(t0)s::timestamptz + make_interval(secs => (r1 + (1 - r1) * r2) * %(span)s),
                   (%(firsts)s::text[])[f] || ' ' || (%(lasts)s::text[])[l], '',
                   CASE WHEN r3 < 0.8 THEN 'de' ELSE 'en' END,
                   CASE WHEN r3 < 0.6 THEN 'K-' || lpad(((c::bigint * 7919) %% 10000000)::text, 7, '0') ELSE '' END,
                   '{}', ''
            FROM bench_person
            """)
        phase("contact points", """
            INSERT INTO contacts_contactpoint (created_at, updated_at, customer_id, kind, value, normalized,
                                               verified_at, verified_by)
            SELECT %(t0)s, %(t0)s, c, 'email', address, address, NULL, ''
            FROM (SELECT c, (%(firsts_ascii)s::text[])[f]
                            || CASE WHEN c %% 3 = 0 THEN '' ELSE '.' END || (%(lasts_ascii)s::text[])[l]
                            || CASE WHEN r2 < 0.4 THEN (c %% 100)::text ELSE '' END
                            || '@' || (%(domains)s::text[])[1 + c %% %(n_domains)s] AS address
                  FROM bench_person WHERE r2 < 0.7) e
            UNION ALL
            SELECT %(t0)s, %(t0)s, c, 'phone', '0' || prefix || ' ' || number, '+49' || prefix || number,
                   CASE WHEN c %% 2 = 0 THEN %(t0)s::timestamptz END, CASE WHEN c %% 2 = 0 THEN 'whatsapp' ELSE '' END
            FROM (SELECT c, (%(mobiles)s::text[])[1 + c %% %(n_mobiles)s] AS prefix,
                         lpad(((c::bigint * 104729) %% 100000000)::text, 8, '0') AS number
                  FROM bench_person WHERE r3 < 0.5) p
            """)
        phase("identities", f"""
            INSERT INTO contacts_socialidentity (id, customer_id, platform, scope, external_id, handle, display_name,
                                                 avatar_url, profile_url, first_seen_at, last_seen_at, raw_profile)
            SELECT i, p.c, platform, '', (1000000000 + i::bigint * 7)::text,
                   CASE WHEN platform = 'whatsapp' THEN ''
                        ELSE lower((%(firsts_ascii)s::text[])[p.f]) || CASE i %% 4
                            WHEN 0 THEN '_' || (%(lasts_ascii)s::text[])[p.l]
                            WHEN 1 THEN (%(lasts_ascii)s::text[])[p.l] || (i %% 100)
                            WHEN 2 THEN '.' || left((%(lasts_ascii)s::text[])[p.l], 1) || (i %% 1000)
                            ELSE (i %% 10000)::text END END,
                   CASE i %% 3 WHEN 0 THEN (%(firsts)s::text[])[p.f] || ' ' || (%(lasts)s::text[])[p.l]
                               WHEN 1 THEN (%(firsts)s::text[])[p.f] || ' ' || left((%(lasts)s::text[])[p.l], 1) || '.'
                               ELSE (%(firsts)s::text[])[p.f] END,
                   '', '', %(t0)s, %(t0)s, '{{}}'
            FROM (SELECT i, {customer_of_identity} AS customer, (%(platforms)s::text[])[1 + i %% 6] AS platform
                  FROM generate_series(1, %(all_identities)s) i) s
            JOIN bench_person p ON p.c = s.customer
            """)
        phase("conversations", """
            INSERT INTO conversations_conversation (id, created_at, updated_at, channel_account_id, thread_key,
                                                    identity_id, status, priority, first_inbound_at,
                                                    last_activity_at)
            SELECT j, %(t0)s, %(t0)s, (%(accounts)s::bigint[])[1 + ident %% 6], 'c' || j, ident,
                   CASE WHEN j %% 10 = 0 THEN 'open' ELSE 'resolved' END, 1, %(t0)s, %(t0)s
            FROM (SELECT j, CASE WHEN j <= %(conversations)s THEN j
                                 ELSE %(first_big_identity)s + (j - %(first_big_conversation)s) %% %(big_identities)s
                            END AS ident
                  FROM generate_series(1, %(all_conversations)s) j) s
            """)
        start = time.perf_counter()
        for prefix, count, first_conversation, n_conversations in (
            ("b", background, 1, conversations),
            ("e", big, first_big_conversation, BIG_CONVERSATIONS),
        ):
            for low in range(1, count + 1, INTERACTION_CHUNK):
                high = min(count, low + INTERACTION_CHUNK - 1)
                timed_sql(cursor, """
                    INSERT INTO conversations_interaction (channel_account_id, conversation_id, identity_id,
                        direction, kind, external_id, text, occurred_at, received_at, reply_to_external_id,
                        attachments, raw, is_stub)
                    SELECT (%(accounts)s::bigint[])[1 + ident %% 6], j, ident, 'in',
                           (ARRAY['mention', 'reply', 'dm'])[1 + k %% 3], %(prefix)s || k,
                           (%(texts)s::text[])[1 + k %% %(n_texts)s], at, at, '', '[]', '{}', false
                    FROM (SELECT k, j, c.identity_id AS ident,
                                 %(t0)s::timestamptz + make_interval(secs => k * %(step)s) AS at
                          FROM (SELECT k, %(first)s + (k - 1) %% %(n_conversations)s AS j
                                FROM generate_series(%(low)s, %(high)s) k) numbered
                          JOIN conversations_conversation c ON c.id = numbered.j) s
                    """, {**params, "prefix": prefix, "low": low, "high": high, "first": first_conversation,
                          "n_conversations": n_conversations, "step": SPAN_SECONDS / count})
                progress(f"  interactions ({'background' if prefix == 'b' else 'big customer'}): "
                         f"{high:,} / {count:,}, {time.perf_counter() - start:.0f} s")
        phases["interactions"] = time.perf_counter() - start
        for table in ("contacts_customer", "contacts_socialidentity", "conversations_conversation"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        # The customers' search text, as the migration's backfill writes it: once the indexes of identities and
        # contact points (which it reads by customer) are back, before those of customers (which it would update).
        on_customers = re.compile(r"[ .]contacts_customer ").search
        start = time.perf_counter()
        for number, statement in enumerate(sorted(restore, key=lambda statement: bool(on_customers(statement))), 1):
            if on_customers(statement) and "search text" not in phases:
                phases["indexes"] = time.perf_counter() - start
                phase("search text", f"UPDATE contacts_customer c SET search_text = {SEARCH_TEXT_SQL}")
                start = time.perf_counter()
            began = time.perf_counter()
            cursor.execute(statement)
            name = statement.split(" ON ")[0].split()[-1] if statement.startswith("CREATE") else statement.split('"')[1]
            progress(f"  index {number}/{len(restore)} {name}: {time.perf_counter() - began:.1f} s")
        phases["indexes"] = phases.get("indexes", 0.0) + time.perf_counter() - start
        start = time.perf_counter()
        cursor.execute("DROP TABLE bench_person")
        cursor.execute("RESET synchronous_commit")
        cursor.execute("RESET session_replication_role")
        for table in LOADED_TABLES:
            progress(f"  vacuum, analyze {table} ...")
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        phases["vacuum, analyze"] = time.perf_counter() - start
    return phases


def open_database(name: str, stamp: str, *, rebuild: bool) -> bool:
    """Point the connection at the bench database: the kept one if its stamp matches (True), else a new, migrated,
    empty one (False)."""
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name])
        found = cursor.fetchone()
    if found is not None and found[0] == stamp and not rebuild:
        connection.close()
        connection.settings_dict["NAME"] = name
        return True
    if found is not None:
        progress(f"database {name} exists but was built " + ("for other data or another schema; "
                                                             if found[0] != stamp else "") + "building it anew ...")
    connection.settings_dict["TEST"]["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
    return False


def build_unless_reused(name: str, stamp: str, reused: bool, args: argparse.Namespace,
                        build_data: Callable[[argparse.Namespace], dict[str, float]]) -> tuple[float | None, dict]:
    """Fill the database `open_database` just created with `build_data(args)` and stamp it, unless it was reused:
    (seconds the build took, or None when reused; the build's phases)."""
    if reused:
        progress(f"reusing database {name} ({stamp})")
        return None, {}
    progress(f"building database {name}: {args.customers:,} customers, {args.interactions:,} interactions ...")
    start = time.perf_counter()
    phases = build_data(args)
    built_in = time.perf_counter() - start
    progress(f"built in {built_in:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
    with connection.cursor() as cursor:
        cursor.execute(f'COMMENT ON DATABASE "{name}" IS %s', [stamp])
    return built_in, phases


def describe() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT (SELECT count(*) FROM conversations_interaction), (SELECT count(*) FROM contacts_customer),
                   (SELECT count(*) FROM contacts_socialidentity), (SELECT count(*) FROM contacts_contactpoint),
                   (SELECT count(*) FROM conversations_conversation), pg_database_size(current_database())
            """)
        interactions, customers, identities, contact_points, conversations, size = cursor.fetchone()
        cursor.execute("""
            SELECT c.id, count(DISTINCT i.id), count(*) FROM contacts_customer c
            JOIN contacts_socialidentity i ON i.customer_id = c.id
            JOIN conversations_interaction x ON x.identity_id = i.id
            WHERE c.id = (SELECT max(id) FROM contacts_customer) GROUP BY c.id
            """)
        big_customer, big_identities, big_interactions = cursor.fetchone()
    return {"interactions": interactions, "customers": customers, "identities": identities,
            "contact_points": contact_points, "conversations": conversations, "size_mb": round(size / 2**20),
            "big_customer": big_customer, "big_identities": big_identities, "big_interactions": big_interactions}


# ---------------------------------------------------------------------------------------------------- the client


class Client:
    """One keep-alive connection to the server, API tokens used in turn; each request timed with its answer."""

    def __init__(self, port: int, tokens: list[str]) -> None:
        self.http = http.client.HTTPConnection(HOST, port, timeout=30)
        self.tokens = tokens
        self.turn = 0

    def get(self, path: str) -> tuple[int, bytes, float]:
        token = self.tokens[self.turn % len(self.tokens)]
        self.turn += 1
        start = time.perf_counter()
        self.http.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = self.http.getresponse()
        body = response.read()
        return response.status, body, time.perf_counter() - start

    def json(self, path: str) -> dict[str, Any]:
        status, body, _ = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        return json.loads(body)

    def close(self) -> None:
        self.http.close()


def local(url: str) -> str:
    """The path and query of an absolute link from the API."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def deep_cursor(client: Client, customer_id: int) -> tuple[str, int]:
    """The timeline's cursor after `DEEP` interactions, found by following `next` links (the API's own cursor);
    checked against the row at that position, as the pagination encodes it. Returns it and the walk's seconds."""
    start = time.perf_counter()
    path = f"/api/v1/customers/{customer_id}/timeline/?page_size={WALK_PAGE}"
    for _ in range(DEEP // WALK_PAGE):
        page = client.json(path)
        path = local(page["next"])
    walk = time.perf_counter() - start
    cursor = parse_qs(urlsplit(path).query)["cursor"][0]
    ordered = Interaction.objects.filter(identity__customer_id=customer_id).order_by("-occurred_at", "-id")
    last_seen = ordered.values("occurred_at", "pk")[DEEP - 1]
    expected = encode_cursor({"o": "timeline", "k": [last_seen["occurred_at"], last_seen["pk"]]})
    if cursor != expected:
        raise RuntimeError(f"the walk ended at cursor {cursor}, the row at {DEEP:,} gives {expected}")
    deep_page = client.json(f"/api/v1/customers/{customer_id}/timeline/?{urlencode({'cursor': cursor})}")
    following = list(ordered.values_list("pk", flat=True)[DEEP:DEEP + len(deep_page["results"])])
    if [row["id"] for row in deep_page["results"]] != following or len(following) != 50:
        raise RuntimeError("the deep page does not hold the 50 interactions after the cursor")
    return cursor, round(walk)


def search_queries(n: int, customers: int, rng: random.Random) -> list[tuple[str, str, int | None]]:
    """(kind, q, the customer it was taken from or None) for `n` queries of every kind, drawn from the data."""
    picked = rng.sample(range(1, customers + 1), min(customers, n * 20))
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT c.id, c.display_name, c.customer_number,
                   (SELECT min(handle) FROM contacts_socialidentity i WHERE i.customer_id = c.id AND handle <> ''),
                   (SELECT min(value) FROM contacts_contactpoint p WHERE p.customer_id = c.id AND kind = 'email'),
                   (SELECT min(value) FROM contacts_contactpoint p WHERE p.customer_id = c.id AND kind = 'phone')
            FROM contacts_customer c WHERE c.id = ANY(%s) ORDER BY c.id
            """, [picked])
        rows = cursor.fetchall()
    rng.shuffle(rows)
    queries: dict[str, list[tuple[str, str, int | None]]] = defaultdict(list)
    for pk, name, number, handle, email, phone in rows:
        words = [w for w in name.split() if len(w) >= 3]
        word = rng.choice(words)
        # What people type: the start of a first or last name, in any case; and, apart from the mix, three letters
        # from inside a name ("ann", "ert"), which match tens of thousands of customers.
        start = word[:rng.randint(min(4, len(word)), len(word))]
        at = rng.randint(0, len(word) - 3)
        candidates = {
            "name fragment": rng.choice([start, start.lower(), start.upper()]),
            "3-letter fragment": word[at:at + 3].lower(),
            "handle": f"@{handle}" if handle else None,
            "e-mail": email,
            "phone": phone,
            "customer number": number or None,
        }
        for kind, q in candidates.items():
            if q and len(queries[kind]) < n:
                queries[kind].append((kind, q, pk))
    letters = string.ascii_lowercase
    queries["no hit"] = [("no hit", "".join(rng.choice(letters) for _ in range(rng.randint(6, 10))), None)
                         for _ in range(n)]
    return [q for kind in (*SEARCH_KINDS, *EXTRA_KINDS) for q in queries[kind]]


def search_path(q: str) -> str:
    return f"/api/v1/customers/?{urlencode({'q': q})}"


def check_searches(client: Client, queries: list[tuple[str, str, int | None]]) -> dict[str, str]:
    """Run every query once (warming up, untimed): a query taken from a customer must find it (on the first page,
    for the selective kinds), a no-hit query nothing. Returns per kind how many did."""
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for kind, q, pk in queries:
        ids = [row["id"] for row in client.json(search_path(q))["results"]]
        ok = (not ids) if pk is None else (pk in ids or kind.endswith("fragment"))
        if not ok:
            raise RuntimeError(f"search {q!r} ({kind}) did not find customer {pk}: {ids[:10]}")
        found[kind][0] += 1
        found[kind][1] += bool(ids)
    return {kind: f"{hits}/{total} found something" for kind, (total, hits) in found.items()}


def serial(client: Client, requests: list[tuple[str, str]]) -> dict[str, list[float]]:
    """Send `requests` (label, path) one after the other; every answer must be a 200. Latencies (s) by label."""
    latencies: dict[str, list[float]] = defaultdict(list)
    for label, path in requests:
        status, body, seconds = client.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
        latencies[label].append(seconds)
    return latencies


# ---------------------------------------------------------------------------------------------------- reporting


def row(label: str, values: list[float], goal: float | None = None) -> dict[str, float]:
    stats = {"n": len(values), "p50": ms(percentile(values, 0.50)), "p90": ms(percentile(values, 0.90)),
             "p99": ms(percentile(values, 0.99)), "max": ms(max(values))}
    verdict = "" if goal is None else ("ok" if stats["p99"] <= goal else "MISSED")
    print(f"{label:<38}{stats['n']:>9,}{stats['p50']:>9.1f}{stats['p90']:>9.1f}{stats['p99']:>9.1f}"
          f"{stats['max']:>9.1f}{'' if goal is None else f'{goal:>9.0f}   {verdict}'}")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--interactions", type=int, default=2_000_000, help="all interactions, the big customer's "
                        "included (default 2,000,000)")
    parser.add_argument("--big", type=int, default=50_000, help="interactions of the big customer (default 50,000)")
    parser.add_argument("--database", help="the bench database (default <test database name>_api)")
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run")
    parser.add_argument("--rebuild", action="store_true", help="build the database anew even if a kept one fits")
    parser.add_argument("--requests", type=int, default=1000, help="requests per one-client timeline and ping run")
    parser.add_argument("--queries", type=int, default=100, help="search queries of each kind (default 100)")
    parser.add_argument("--search-passes", type=int, default=2, help="times each query is timed (default 2)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per concurrent run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before every concurrent run")
    parser.add_argument("--rounds", type=int, default=2, help="concurrent runs per endpoint (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="clients at once (default 8)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (default gthread)")
    parser.add_argument("--tokens", type=int, default=64, help="API tokens used in turn (default 64)")
    parser.add_argument("--redis-db", type=int, default=12,
                        help="Redis database for the server's cache and broker; must hold nothing else (default 12)")
    args = parser.parse_args()
    if args.big <= DEEP + 50:
        parser.error(f"--big must be above {DEEP + 50:,}: the deep page starts after {DEEP:,} interactions")

    def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    redis_url = with_path(os.environ["REDIS_URL"], f"/{args.redis_db}")
    broker = redis.Redis.from_url(redis_url)
    redis_check_free(broker, args.redis_db)
    rng = random.Random(42)

    name = args.database or f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_api"
    stamp = stamp_for(args)
    reused = open_database(name, stamp, rebuild=args.rebuild)
    try:
        built_in, _ = build_unless_reused(name, stamp, reused, args, build)
        data = describe()
        user, _ = get_user_model().objects.get_or_create(username="bench.api")
        user.user_permissions.add(Permission.objects.get(codename="view_all_channels"))
        tokens = [api_token_create(user=user, name=f"bench {n}", scopes=["read"])[1] for n in range(args.tokens)]
        queries = search_queries(args.queries, args.customers, rng)
        big = data["big_customer"]
        first_path = f"/api/v1/customers/{big}/timeline/"
        connection.close()
        with tempfile.TemporaryFile(mode="w+") as log, Server(
            database_url=with_path(os.environ["DATABASE_URL"], f"/{name}"), redis_url=redis_url,
            workers=args.workers, threads=args.threads, worker_class=args.worker_class, log=log,
        ) as server:
            client = Client(server.port, tokens)
            progress(f"walking the timeline of customer {big} to {DEEP:,} interactions deep ...")
            cursor, walk_s = deep_cursor(client, big)
            deep_path = f"{first_path}?{urlencode({'cursor': cursor})}"
            progress(f"checking {len(queries)} search queries ...")
            found = check_searches(client, queries)
            progress("one client at a time ...")
            plan = [("ping", "/ping/")] * args.requests
            plan += [("timeline first", first_path), ("timeline deep", deep_path)] * args.requests
            searches = [(kind, search_path(q)) for kind, q, _ in queries] * args.search_passes
            rng.shuffle(searches)
            plan += searches
            serial(client, plan[:50] + searches[:50])  # warm-up of every kind, untimed
            one = serial(client, plan)
            client.close()
            progress(f"{args.connections} clients at once ...")
            runs = concurrent(args, server, name, tokens, first_path, deep_path, queries)
        connection.close()
    finally:
        redis_purge(broker)
        if not args.keep:
            wait_for_disconnect(name)
            connection.creation.destroy_test_db(name, verbosity=0)

    report(args, data, reused, built_in, walk_s, found, one, runs)


def concurrent(args: argparse.Namespace, server: Server, name: str, tokens: list[str], first_path: str,
               deep_path: str, queries: list[tuple[str, str, int | None]]) -> dict[str, list[LoadResult]]:
    """Rounds of `--connections` clients on ping, timeline and search, the order alternating; prints every run."""
    auth = tuple(("Authorization", f"Bearer {token}") for token in tokens)
    targets = {
        "ping": Target("GET", "/ping/"),
        "timeline": Target("GET", first_path, paths=(first_path, deep_path), rotating_headers=auth),
        "search": Target("GET", "/api/v1/customers/", rotating_headers=auth,
                         paths=tuple(search_path(q) for kind, q, _ in queries if kind in SEARCH_KINDS)),
    }
    watch = {"server": server.pids, "database": lambda: database_backends(name)}
    print(f"\n{args.connections} clients at once; every run {args.warmup:g} s warm-up + {args.duration:g} s measured",
          file=sys.stderr)
    runs: dict[str, list[LoadResult]] = {key: [] for key in targets}
    order = list(targets)
    for round_no in range(args.rounds):
        for key in order if round_no % 2 == 0 else reversed(order):
            result = run_load(host=HOST, port=server.port, target=targets[key], connections=args.connections,
                              processes=args.processes, warmup=args.warmup, duration=args.duration, watch=watch,
                              probe=server.connections_per_worker)
            runs[key].append(result)
            progress(f"  {key}, round {round_no + 1}: {result.rate:,.0f}/s, p99 {ms(result.percentile(0.99)):.1f} ms"
                     f", non-2xx {result.non_2xx}")
    return runs


def report(args: argparse.Namespace, data: dict[str, Any], reused: bool, built_in: float | None, walk_s: int,
           found: dict[str, str], one: dict[str, list[float]], runs: dict[str, list[LoadResult]]) -> None:
    print(f"\n{data['interactions']:,} interactions, {data['customers']:,} customers, {data['identities']:,} "
          f"identities, {data['contact_points']:,} contact points, {data['conversations']:,} conversations; "
          f"{data['size_mb']:,} MB")
    print(f"customer {data['big_customer']}: {data['big_identities']} identities, {data['big_interactions']:,} "
          f"interactions; " + ("database reused" if reused else f"built in {built_in:.0f} s")
          + f"; load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print(f"deep cursor: walked {DEEP // WALK_PAGE} pages of {WALK_PAGE} in {walk_s} s, equal to the encoded row at "
          f"{DEEP:,}; search queries checked: " + "; ".join(f"{k} {v}" for k, v in found.items()))
    print(f"\n{'one client at a time':<38}{'requests':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'goal p99':>9}")
    summary = {
        "ping": row("/ping/", one["ping"]),
        "timeline_first": row("timeline, first page (50)", one["timeline first"], GOALS_MS["timeline"]),
        "timeline_deep": row(f"timeline, page {DEEP:,} deep (50)", one["timeline deep"], GOALS_MS["timeline"]),
        "search": row("search ?q=, all kinds", [x for kind in SEARCH_KINDS for x in one[kind]], GOALS_MS["search"]),
    }
    for kind in (*SEARCH_KINDS, *EXTRA_KINDS):
        label = f"  {kind}" + (" (not in the mix)" if kind in EXTRA_KINDS else "")
        summary[f"search_{kind.replace(' ', '_').replace('-', '')}"] = row(label, one[kind])

    print(f"\n{args.connections} clients at once, {args.rounds} runs each of {args.duration:g} s "
          f"(gunicorn {args.workers} workers x {args.threads} threads)")
    print(HEADER_NOTE)
    print(HEADER)
    whole = {key: merged(results) for key, results in runs.items()}
    for key, result in whole.items():
        print_run(key, result)
    ratios = {key: whole[key].rate / whole["ping"].rate for key in ("timeline", "search")}
    print("\n" + "; ".join(f"{key} / ping = {ratio:.2f} ({whole[key].rate:,.0f} / {whole['ping'].rate:,.0f} "
                             f"requests/s)" for key, ratio in ratios.items()))
    goals_met = (summary["timeline_first"]["p99"] <= GOALS_MS["timeline"]
                 and summary["timeline_deep"]["p99"] <= GOALS_MS["timeline"]
                 and summary["search"]["p99"] <= GOALS_MS["search"])
    print(json.dumps({
        **{k: v for k, v in data.items() if k != "big_customer"}, "reused": reused,
        "build_s": None if built_in is None else round(built_in),
        **{f"{name}_{stat}_ms": round(value, 2) for name, stats in summary.items()
           for stat, value in stats.items() if stat != "n"},
        **{f"{key}_per_s": round(result.rate) for key, result in whole.items()},
        **{f"{key}_p99_ms_{args.connections}_clients": round(ms(result.percentile(0.99)), 2)
           for key, result in whole.items()},
        **{f"{key}_ratio": round(ratio, 3) for key, ratio in ratios.items()},
        "non_2xx": {key: result.non_2xx for key, result in whole.items()},
        "goals_met": goals_met,
    }))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the server is stopped and its Redis keys purged")
