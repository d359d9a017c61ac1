"""The agent console's pages, rendered in-process, on a database of two million interactions.

    python bench/console.py [--interactions 2000000] [--customers 200000] [--rounds 50] [--warmup 3]
                            [--database NAME] [--keep] [--rebuild]

The database (`--database`, default `<test database name>_console`) is bench/api.py's data set, built by its own
set-based `build` (`INSERT ... SELECT generate_series`, secondary indexes dropped for the load and built
afterwards, vacuumed and analyzed): `--customers` customers with common names, one in five with a second social
identity, e-mail addresses and phone numbers, six channel accounts (one per platform), one conversation per
identity, and one customer of our own whose five identities hold 50,000 interactions in 500 conversations. On top
of it, what the console shows: two teams (one seeing the X, Instagram and Mastodon accounts, one the others) of six
agents each, the agent under test being the first of the first team, a CRM-staff user (group "CRM staff", who
sees every account), canned responses; an agent's reply after the first message in two conversations of five
(so the SLA clock has both of its cases), every conversation's first-inbound, first-response and last-activity
times taken from its messages, statuses (8 % open, 4 % pending, the rest resolved), assignees (all but three in
ten open conversations, every other one), priorities, conversation tags (one conversation in three, a second tag
on one in seven) and internal notes; and one busy conversation of the big customer, on an account both users see,
holding 5,000 of its messages. The replies are part of `--interactions`. The database is stamped (a comment on
it) with the data's version, its sizes and the schema's migrations: a later run with the same stamp reuses it
(`--keep` keeps it at the end; without it the database is dropped; `--rebuild` builds anew even when the stamp
matches).

Then it measures server time in-process, the way a request is served: Django's test client (`Client`, logged in
by session with `force_login`) through the whole middleware stack, the view, the templates and the database, with
persistent database connections. Pages: the inbox's open view (the agent, restricted to three accounts, and CRM
staff), the open view filtered by a channel account, its polled list (unchanged, which answers 204, and changed,
which renders), the busy conversation, the big customer's profile (both users), its timeline partial five pages
deep (the cursor of the profile's own "more" link), and search by handle, by a word in one message in eight and
by a rare word. Each page is fetched once with its queries captured (`CaptureQueriesContext`) and checked (status,
rows shown), warmed up, then timed `--rounds` times, the pages taking turns. Prints per page p50, p95, p99 and max
in ms, the SQL share (median), the query count, and against the goal of issue 6 (inbox and profile pages within
150 ms of server time, judged on p95) PASS or MISS; then a final JSON line. Timings are reported, not asserted:
the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import AbstractBaseUser, Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from access.models import Team  # noqa: E402
from bench._common import ms, percentile, schema_stamp, server_time, timed_sql  # noqa: E402
from bench.api import (  # noqa: E402
    BIG_CONVERSATIONS,
    BIG_IDENTITIES,
    PLATFORMS,
    build_unless_reused,
    describe,
    open_database,
    progress,
)
from bench.api import build as build_base  # noqa: E402
from channels.models import ChannelAccount  # noqa: E402
from console.selectors.customers import timeline_page  # noqa: E402
from contacts.models import SocialIdentity  # noqa: E402
from conversations.models import CannedResponse  # noqa: E402

# Bump when the generated data changes, so a kept database of the old kind is rebuilt.
DATA_VERSION = 1
BIG = 50_000  # the big customer's interactions (bench/api.py's `--big`)
GOAL_MS = 150.0
TEAMS = {"Social": ("x", "instagram", "mastodon"), "Messenger": ("facebook", "telegram", "whatsapp")}
AGENTS_PER_TEAM = 6
AGENT_NAMES = [("Lena", "Vogel"), ("Murat", "Aydın"), ("Sophie", "Krüger"), ("Jonas", "Brandt"),
               ("Aylin", "Demir"), ("Tim", "Keller"), ("Nora", "Haas"), ("Felix", "Roth"), ("Mia", "Lorenz"),
               ("Paul", "Winter"), ("Emma", "Fuchs"), ("Ben", "Otto")]
BUSY_MERGED = 50  # conversations of one big identity whose messages make the busy conversation
TIMELINE_PAGES_DEEP = 5
REPLY_DELAY = "17 minutes"
REPLIES = [
    "Das tut uns leid! Schreiben Sie uns bitte per DM Ihre Kundennummer, dann schauen wir nach.",
    "Danke für Ihre Geduld. Wir haben eine Störung in Ihrer Region gefunden und arbeiten daran.",
    "Gern geschehen! Melden Sie sich jederzeit wieder, wenn etwas ist.",
    "Wir haben Ihre Rechnung geprüft: Die Gutschrift kommt mit der nächsten Abrechnung.",
    "Ein Techniker ist für Donnerstag zwischen 8 und 12 Uhr gebucht. Passt Ihnen das?",
]
# In one reply in a thousand only: the rare word of the text search.
RARE_REPLY = "Ihr Glasfaseranschluss ist freigeschaltet, viel Spaß mit dem neuen Tarif!"
RARE_WORD = "Glasfaser"
COMMON_WORD = "Rechnung"  # in one message text in eight (bench/api.py's TEXTS)
TOPIC_TAGS = ["router", "rechnung", "störung", "kündigung", "vertrag", "glasfaser", "mobilfunk", "techniker", "umzug",
              "tarif", "hotline", "lieferung"]
FLAG_TAGS = ["vip", "presse", "eskalation", "lob", "rückruf", "datenschutz"]  # disjoint from TOPIC_TAGS
NOTES = ["Kunde ruft morgen zurück.", "Kundennummer per DM bestätigt.", "Techniker-Termin angefragt, warten auf "
         "Rückmeldung.", "Bitte nicht vor 10 Uhr anrufen.", "Gutschrift über 20 € zugesagt."]
CANNED = [("Begrüßung", "hallo", "Hallo {first_name}, danke für Ihre Nachricht! ^{agent_initials}"),
          ("Kundennummer", "knr", "Schreiben Sie uns bitte Ihre Kundennummer per DM. ^{agent_initials}"),
          ("Störung", "stoerung", "In Ihrer Region gibt es gerade eine Störung, wir arbeiten daran."),
          ("Techniker", "tech", "Wir buchen einen Techniker für Sie, {customer_name}."),
          ("Abschluss", "bye", "Gern geschehen! Viele Grüße, {agent_name}")]


def stamp_for(args: argparse.Namespace) -> str:
    """What a kept database must have been built with to be reused: the data's version, sizes and the schema."""
    return (f"socialcrm bench/console.py data v{DATA_VERSION}; customers={args.customers} "
            f"interactions={args.interactions} big={BIG}; schema {schema_stamp()}")


# ------------------------------------------------------------------------------------------------------- building


@dataclasses.dataclass(frozen=True)
class Plan:
    """Ids of bench/api.py's data set, known before it is built (it numbers everything from 1)."""

    customers: int

    @property
    def identities(self) -> int:
        return self.customers + self.customers // 5

    @property
    def conversations(self) -> int:  # bench/api.py: one per identity, then the big customer's
        return self.identities + BIG_CONVERSATIONS

    @property
    def big_customer(self) -> int:
        return self.customers + 1

    def big_identity_of(self, conversation: int) -> int:
        return self.identities + 1 + (conversation - self.identities - 1) % BIG_IDENTITIES

    def busy(self, seen_by: tuple[str, ...]) -> list[int]:
        """The big customer's conversations merged into the busy one (the first), all of one identity whose
        account is among `seen_by`'s platforms (bench/api.py puts identity i on account `PLATFORMS[i % 6]`)."""
        first = self.identities + 1
        identity = next(self.big_identity_of(j) for j in range(first, first + BIG_IDENTITIES)
                        if PLATFORMS[self.big_identity_of(j) % len(PLATFORMS)] in seen_by)
        mine = [j for j in range(first, first + BIG_CONVERSATIONS) if self.big_identity_of(j) == identity]
        return mine[:BUSY_MERGED]

    def replies(self, removed: set[int]) -> int:
        """Agents' replies: one in every conversation whose id is 1 or 2 modulo 5, the removed ones left out."""
        return sum(1 for j in range(1, self.conversations + 1) if j % 5 in (1, 2) and j not in removed)


def build(args: argparse.Namespace) -> dict[str, float]:
    """Fill the (empty, migrated) database: bench/api.py's data set, then what the console shows. Seconds per
    phase."""
    plan = Plan(args.customers)
    busy = plan.busy(TEAMS["Social"])
    replies = plan.replies(set(busy[1:]))
    base = argparse.Namespace(customers=args.customers, interactions=args.interactions - replies, big=BIG)
    progress(f"bench/api.py's data set: {args.customers:,} customers, {base.interactions:,} interactions ...")
    phases = build_base(base)
    phases.update(console_data(plan, busy))
    return phases


def console_data(plan: Plan, busy: list[int]) -> dict[str, float]:
    """Teams, users, canned responses, the busy conversation, replies, conversation times, statuses, assignees,
    tags and notes, on bench/api.py's data set."""
    phases: dict[str, float] = {}
    start = time.perf_counter()
    accounts = {a.platform: a.pk for a in ChannelAccount.objects.filter(external_id__startswith="bench-")}
    users = get_user_model()
    agents: dict[str, list[int]] = {}
    names = iter(AGENT_NAMES)
    for number, (team_name, platforms) in enumerate(TEAMS.items()):
        team = Team.objects.create(name=team_name)
        team.channel_accounts.add(*(accounts[p] for p in platforms))
        members = []
        for n in range(AGENTS_PER_TEAM):
            first, last = next(names)
            username = "bench.agent" if number == 0 and n == 0 else f"agent.{first.lower()}"
            members.append(users.objects.create_user(username=username, first_name=first, last_name=last))
        team.members.add(*members)
        Group.objects.get(name="Agents").user_set.add(*members)
        agents[team_name] = [m.pk for m in members]
    staff = users.objects.create_user(username="bench.staff", first_name="Jana", last_name="Weiß")
    staff.groups.add(Group.objects.get(name="CRM staff"))
    CannedResponse.objects.bulk_create([CannedResponse(title=t, shortcut=s, text=x) for t, s, x in CANNED])
    phases["users, teams"] = time.perf_counter() - start

    params = {
        "social": [accounts[p] for p in TEAMS["Social"]], "social_agents": agents["Social"],
        "messenger_agents": agents["Messenger"], "n_agents": AGENTS_PER_TEAM, "busy": busy[0], "moved": busy[1:],
        "replies": REPLIES, "n_replies": len(REPLIES), "rare": RARE_REPLY, "delay": REPLY_DELAY,
        "topics": TOPIC_TAGS, "n_topics": len(TOPIC_TAGS), "flags": FLAG_TAGS, "n_flags": len(FLAG_TAGS),
        "notes": NOTES, "n_notes": len(NOTES),
    }
    # The agent of conversation c: one of the team that sees its channel account.
    agent = """CASE WHEN c.channel_account_id = ANY(%(social)s::bigint[])
                    THEN (%(social_agents)s::int[])[1 + c.id %% %(n_agents)s]
                    ELSE (%(messenger_agents)s::int[])[1 + c.id %% %(n_agents)s] END"""

    def phase(name: str, *statements: str) -> None:
        progress(f"  {name} ...")
        phases[name] = phases.get(name, 0.0) + sum(timed_sql(cursor, s, params) for s in statements)

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        phase("busy conversation",
              "UPDATE conversations_interaction SET conversation_id = %(busy)s WHERE conversation_id = ANY(%(moved)s)",
              "DELETE FROM conversations_conversation WHERE id = ANY(%(moved)s)")
        phase("conversation times", """
            CREATE TEMPORARY TABLE bench_thread AS
            SELECT conversation_id AS id, min(occurred_at) AS first_at, max(occurred_at) AS last_at
            FROM conversations_interaction GROUP BY conversation_id
            """, "ALTER TABLE bench_thread ADD PRIMARY KEY (id)")
        phase("replies", f"""
            INSERT INTO conversations_interaction (channel_account_id, conversation_id, identity_id, direction,
                kind, external_id, text, occurred_at, received_at, reply_to_external_id, attachments, raw, is_stub,
                idempotency_key, delivery_state, send_attempts, send_error, sent_by_id)
            SELECT c.channel_account_id, c.id, c.identity_id, 'out', 'reply', 'reply-' || c.id,
                   CASE WHEN c.id %% 1000 = 7 THEN %(rare)s
                        ELSE (%(replies)s::text[])[1 + c.id %% %(n_replies)s] END,
                   t.first_at + %(delay)s::interval, t.first_at + %(delay)s::interval, '', '[]', '{{}}', false,
                   gen_random_uuid(), 'delivered', 1, '', {agent}
            FROM conversations_conversation c JOIN bench_thread t ON t.id = c.id
            WHERE c.id %% 5 IN (1, 2)
            ORDER BY t.first_at
            """)
        phase("conversations", f"""
            UPDATE conversations_conversation c SET
                created_at = t.first_at,
                updated_at = greatest(t.last_at, s.replied_at),
                first_inbound_at = t.first_at,
                first_response_at = s.replied_at,
                last_activity_at = greatest(t.last_at, s.replied_at),
                status = s.status,
                priority = CASE WHEN c.id %% 40 = 0 THEN 2 WHEN c.id %% 333 = 0 THEN 3 ELSE 1 END,
                assignee_id = CASE WHEN s.status <> 'open' OR (c.id / 25) %% 10 >= 3 THEN {agent} END,
                assigned_at = CASE WHEN s.status <> 'open' OR (c.id / 25) %% 10 >= 3
                                   THEN t.first_at + interval '5 minutes' END,
                resolved_at = CASE WHEN s.status = 'resolved' THEN greatest(t.last_at, s.replied_at) END
            FROM bench_thread t,
                 LATERAL (SELECT CASE WHEN t.id = %(busy)s OR t.id %% 25 IN (0, 1) THEN 'open'
                                      WHEN t.id %% 25 = 2 THEN 'pending' ELSE 'resolved' END AS status,
                                 CASE WHEN t.id %% 5 IN (1, 2) THEN t.first_at + %(delay)s::interval END
                                     AS replied_at) s
            WHERE t.id = c.id
            """)
        phase("tags", """
            INSERT INTO conversations_conversationtag (conversation_id, name, created_at)
            SELECT id, name, at FROM (
                SELECT t.id, (%(topics)s::text[])[1 + (t.id / 3) %% %(n_topics)s] AS name,
                       t.first_at + interval '30 minutes' AS at
                FROM bench_thread t WHERE t.id %% 3 = 0
                UNION ALL
                SELECT t.id, (%(flags)s::text[])[1 + (t.id / 7) %% %(n_flags)s], t.first_at + interval '31 minutes'
                FROM bench_thread t WHERE t.id %% 7 = 0
            ) tagged ORDER BY at
            """)
        phase("notes", f"""
            INSERT INTO conversations_conversationnote (conversation_id, author_id, text, created_at)
            SELECT c.id, {agent}, (%(notes)s::text[])[1 + c.id %% %(n_notes)s], t.first_at + interval '40 minutes'
            FROM conversations_conversation c JOIN bench_thread t ON t.id = c.id WHERE c.id %% 50 = 0
            UNION ALL
            SELECT c.id, {agent}, (%(notes)s::text[])[1 + n %% %(n_notes)s],
                   t.first_at + (t.last_at - t.first_at) * n / 40
            FROM conversations_conversation c JOIN bench_thread t ON t.id = c.id, generate_series(1, 40) n
            WHERE c.id = %(busy)s
            ORDER BY 4
            """)
        cursor.execute("""
            UPDATE contacts_customer SET tags = '{vip,presse}', notes = 'Schreibt oft öffentlich; bitte schnell '
                || 'antworten.', customer_number = 'K-0042424' WHERE id = %s
            """, [plan.big_customer])
        cursor.execute("DROP TABLE bench_thread")
        cursor.execute("RESET synchronous_commit")
        start = time.perf_counter()
        for table in ("conversations_interaction", "conversations_conversation", "conversations_conversationtag",
                      "conversations_conversationnote"):
            progress(f"  vacuum, analyze {table} ...")
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        phases["vacuum, analyze (console)"] = time.perf_counter() - start
    return phases


# ---------------------------------------------------------------------------------------------------- measuring


@dataclasses.dataclass
class Page:
    label: str
    client: Client
    path: str
    goal: bool  # one of the pages the 150 ms goal is about
    status: int = 200
    shows: tuple[str, int] | None = None  # (data-testid, how many at least) the page must show
    # The path anew, when what it must hold goes stale (the inbox list's version changes every minute).
    refresh: Callable[[], str] | None = None
    queries: int = 0
    wall: list[float] = dataclasses.field(default_factory=list)
    sql: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)

    def fetch(self) -> tuple[int, bytes, float, float, float]:
        response, wall, sql, cpu, _ = server_time(lambda: self.client.get(self.path))
        return response.status_code, response.content, wall, sql, cpu

    def check(self) -> None:
        """Fetch once with the queries captured; the answer must be the expected one."""
        with CaptureQueriesContext(connection) as captured:
            status, body, *_ = self.fetch()
        self.queries = len(captured)
        if status != self.status:
            raise RuntimeError(f"{self.label}: GET {self.path} answered {status}, not {self.status}:\n{body[:500]!r}")
        if self.shows is not None:
            testid, least = self.shows
            found = body.count(f'data-testid="{testid}"'.encode())
            if found < least:
                raise RuntimeError(f"{self.label}: GET {self.path} shows {found} {testid}, expected {least} or more")


def logged_in(user: AbstractBaseUser) -> Client:
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def poll_version(client: Client, path: str) -> str:
    """The version the inbox page shows (what its poll sends as `v`)."""
    found = re.search(rb'id="inbox-v" name="v" value="([0-9a-f]+)"', client.get(path).content)
    if found is None:
        raise RuntimeError(f"no list version on {path}")
    return found.group(1).decode()


def pages(plan: Plan) -> list[Page]:
    users = get_user_model().objects
    agent, staff = users.get(username="bench.agent"), users.get(username="bench.staff")
    as_agent, as_staff = logged_in(agent), logged_in(staff)
    channel = ChannelAccount.objects.get(external_id="bench-instagram").pk
    busy = plan.busy(TEAMS["Social"])[0]
    big = plan.big_customer
    deep = None
    for _ in range(TIMELINE_PAGES_DEEP):
        deep = timeline_page(user=agent, customer_id=big, cursor=deep).next_cursor
    # A handle with digits, as people pick them ("annamueller17"), of an identity the agent sees.
    handle = (SocialIdentity.objects.filter(pk__gte=plan.identities // 2, platform__in=TEAMS["Social"],
                                            handle__regex=r"[0-9]$")
              .order_by("pk").values_list("handle", flat=True).first())

    def unchanged() -> str:
        return "/inbox/rows/?" + urlencode({"v": poll_version(as_agent, "/inbox/")})

    return [
        Page("inbox, open (agent)", as_agent, "/inbox/", True, shows=("inbox-row", 50)),
        Page("inbox, open (staff)", as_staff, "/inbox/", True, shows=("inbox-row", 50)),
        Page("inbox, one channel (agent)", as_agent, f"/inbox/?channel={channel}", True, shows=("inbox-row", 50)),
        Page("inbox poll, unchanged (agent)", as_agent, unchanged(), True, status=204, refresh=unchanged),
        Page("inbox poll, changed (agent)", as_agent, "/inbox/rows/?v=0", True, shows=("inbox-row", 50)),
        Page("conversation, busy (agent)", as_agent, f"/conversations/{busy}/", False, shows=("message", 100)),
        Page("profile, 50k customer (agent)", as_agent, f"/customers/{big}/", True, shows=("timeline-item", 30)),
        Page("profile, 50k customer (staff)", as_staff, f"/customers/{big}/", True, shows=("timeline-item", 30)),
        Page(f"timeline, page {TIMELINE_PAGES_DEEP + 1} (agent)", as_agent,
             f"/customers/{big}/timeline/?" + urlencode({"cursor": deep}), True, shows=("timeline-item", 30)),
        Page("search, handle (agent)", as_agent, "/search/?" + urlencode({"q": f"@{handle}"}), False,
             shows=("search-result", 1)),
        Page(f'search, "{COMMON_WORD}" 1 in 8 (agent)', as_agent, "/search/?" + urlencode({"q": COMMON_WORD}),
             False, shows=("message-result", 50)),
        Page(f'search, "{RARE_WORD}" rare (agent)', as_agent, "/search/?" + urlencode({"q": RARE_WORD}), False,
             shows=("message-result", 1)),
    ]


def measure(measured: list[Page], rounds: int, warmup: int) -> None:
    """Check every page, warm up, then `rounds` rounds in which every page is fetched once (the pages take turns,
    so noise on the machine falls on all of them alike)."""
    for page in measured:
        page.check()
    for _ in range(warmup):
        for page in measured:
            page.fetch()
    for round_no in range(rounds):
        for page in measured:
            if page.refresh is not None:
                page.path = page.refresh()
            status, _, wall, sql, cpu = page.fetch()
            if status != page.status and page.refresh is not None:  # went stale in between: once more
                page.path = page.refresh()
                status, _, wall, sql, cpu = page.fetch()
            if status != page.status:
                raise RuntimeError(f"{page.label}: answered {status} in round {round_no + 1}")
            page.wall.append(wall)
            page.sql.append(sql)
            page.cpu.append(cpu)
        if (round_no + 1) % 10 == 0:
            progress(f"  round {round_no + 1}/{rounds}")


# ---------------------------------------------------------------------------------------------------- reporting


def report(args: argparse.Namespace, data: dict[str, Any], reused: bool, built_in: float | None,
           phases: dict[str, float], measured: list[Page], load: tuple[float, float]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT count(*) FILTER (WHERE status = 'open'), count(*) FILTER (WHERE status = 'pending'),
                   count(*) FILTER (WHERE status = 'resolved'), count(assignee_id),
                   (SELECT count(*) FROM conversations_conversationtag),
                   (SELECT count(*) FROM conversations_interaction WHERE direction = 'out'),
                   (SELECT count(*) FROM conversations_interaction WHERE conversation_id = %s)
            FROM conversations_conversation
            """, [Plan(args.customers).busy(TEAMS["Social"])[0]])
        open_, pending, resolved, assigned, tags, outbound, busy = cursor.fetchone()
    print(f"\n{data['interactions']:,} interactions ({outbound:,} agents' replies), {data['customers']:,} customers, "
          f"{data['identities']:,} identities, {data['contact_points']:,} contact points, "
          f"{data['conversations']:,} conversations ({open_:,} open, {pending:,} pending, {resolved:,} resolved; "
          f"{assigned:,} assigned; {tags:,} tags); {data['size_mb']:,} MB")
    print(f"customer {data['big_customer']}: {data['big_identities']} identities, {data['big_interactions']:,} "
          f"interactions; busy conversation: {busy:,} messages; "
          + ("database reused" if reused else f"built in {built_in:.0f} s: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())))
    print(f"load average {load[0]:.1f} before the rounds, {load[1]:.1f} after ({os.cpu_count()} CPUs); "
          f"{args.rounds} rounds after {args.warmup} warm-up round(s); goal: p95 <= {GOAL_MS:.0f} ms")
    print(f"\n{'':<68}{'p50 ms of':^18}")
    print(f"{'page':<36}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'SQL':>9}{'CPU':>9}{'queries':>9}   goal")
    summary = {}
    for page in measured:
        stats = {"p50": ms(percentile(page.wall, 0.50)), "p95": ms(percentile(page.wall, 0.95)),
                 "p99": ms(percentile(page.wall, 0.99)), "max": ms(max(page.wall)),
                 "sql_p50": ms(statistics.median(page.sql)), "cpu_p50": ms(statistics.median(page.cpu))}
        verdict = ("PASS" if stats["p95"] <= GOAL_MS else "MISS") if page.goal else "-"
        print(f"{page.label:<36}{stats['p50']:>8.1f}{stats['p95']:>8.1f}{stats['p99']:>8.1f}{stats['max']:>8.1f}"
              f"{stats['sql_p50']:>9.1f}{stats['cpu_p50']:>9.1f}{page.queries:>9}   {verdict}")
        key = re.sub(r"[^a-z0-9]+", "_", page.label.lower()).strip("_")
        summary[key] = {**{k: round(v, 1) for k, v in stats.items()}, "queries": page.queries,
                        "goal": GOAL_MS if page.goal else None}
    print(json.dumps({
        **{k: v for k, v in data.items() if k != "big_customer"}, "replies": outbound, "open": open_,
        "pending": pending, "resolved": resolved, "tags": tags, "busy_messages": busy, "reused": reused,
        "build_s": None if built_in is None else round(built_in), "rounds": args.rounds,
        "load_avg": round(load[1], 1), "pages": summary,
        "goals_met": all(s["p95"] <= GOAL_MS for page, s in zip(measured, summary.values(), strict=True)
                         if page.goal),
    }, ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=2_000_000,
                        help="all interactions, agents' replies and the big customer's included (default 2,000,000)")
    parser.add_argument("--customers", type=int, default=200_000,
                        help="customers besides the big one (default 200,000)")
    parser.add_argument("--rounds", type=int, default=50, help="timed fetches of every page (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    parser.add_argument("--database", help="the bench database (default <test database name>_console)")
    parser.add_argument("--keep", action="store_true", help="keep the database for the next run")
    parser.add_argument("--rebuild", action="store_true", help="build the database anew even if a kept one fits")
    args = parser.parse_args()

    name = args.database or f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_console"
    stamp = stamp_for(args)
    reused = open_database(name, stamp, rebuild=args.rebuild)
    try:
        built_in, phases = build_unless_reused(name, stamp, reused, args, build)
        data = describe()
        measured = pages(Plan(args.customers))
        progress(f"measuring {len(measured)} pages, {args.rounds} rounds ...")
        load_before = os.getloadavg()[0]
        measure(measured, args.rounds, args.warmup)
        load = (load_before, os.getloadavg()[0])
        report(args, data, reused, built_in, phases, measured, load)
    finally:
        connection.close()
        if not args.keep:
            connection.creation.destroy_test_db(name, verbosity=0)


if __name__ == "__main__":
    main()
