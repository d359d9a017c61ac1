"""Ingest throughput against the physical limit (COPY) and the naive per-row ORM path, in one run.

    python bench/ingest.py [--events 100000] [--batch 1000] [--naive 5000] [--repeat 0.1] [--replies 0.1]

Builds a fresh database (`<test database name>_bench`), feeds N synthetic but realistic events (~280
characters of text, a ~1 KB raw payload; by default 10% repeat authors and every tenth a reply in an
earlier thread, so nearly every event creates a customer, an identity and a conversation besides its
interaction) through `channels.ingest.ingest` in batches, then turns the same events into rows and COPYs
them into a twin of the interactions table (same columns and indexes: the physical limit, in whichever of
COPY's text and binary formats is faster in the run; the COPY statements alone are timed too), then pushes a
few thousand of them through a naive per-row ORM path.
Prints events/s for all three, the ratios, and the process's peak memory. The machines are shared and
noisy: compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

from channels.adapters.base import Author, EventKind, InboundEvent  # noqa: E402
from channels.ingest import ingest  # noqa: E402
from channels.models import ChannelAccount  # noqa: E402
from contacts.models import Customer, SocialIdentity  # noqa: E402
from conversations.models import Conversation, Interaction  # noqa: E402
from socialcrm.sql import dumps_for_postgres, json_for_postgres  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WORDS = (
    "router", "internet", "störung", "vertrag", "rechnung", "hotline", "techniker", "glasfaser", "dsl", "mobilfunk",
    "tarif", "kündigung", "bitte", "danke", "seit", "gestern", "wieder", "kein", "netz", "warum", "immer", "noch",
    "warte", "antwort",
)


def make_events(n: int, *, seed: int = 7, prefix: str = "", repeat: float = 0.10,
                replies: float = 0.10) -> Iterator[InboundEvent]:
    """n mention/reply events; a share `repeat` come from an author seen before, `replies` reply in a thread."""
    rnd = random.Random(seed)
    authors = 0
    for i in range(n):
        if authors and rnd.random() < repeat:
            who = rnd.randrange(authors)
        else:
            who = authors
            authors += 1
        external_id = f"{prefix}{1_500_000_000_000_000_000 + i}"
        replying = i > 0 and rnd.random() < replies
        parent = f"{prefix}{1_500_000_000_000_000_000 + rnd.randrange(i)}" if replying else ""
        text = " ".join(rnd.choice(WORDS) for _ in range(40))[:280]
        created = T0 + dt.timedelta(seconds=i * 3)
        user = {"id": f"9{who:09d}", "username": f"kunde_{who}", "name": f"Kunde {who}",
                "profile_image_url": f"https://pbs.example.invalid/profile_images/{who}/avatar_normal.jpg",
                "verified": False, "public_metrics": {"followers_count": rnd.randrange(5000)}}
        raw = {"data": {"id": external_id, "text": text, "author_id": user["id"],
                        "conversation_id": parent or external_id,
                        "created_at": created.isoformat().replace("+00:00", "Z"), "lang": "de",
                        "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": rnd.randrange(9),
                                           "quote_count": 0},
                        "entities": {"mentions": [{"start": 0, "end": 13, "username": "TelekomHilft"}]}},
               "includes": {"users": [user]}}
        yield InboundEvent(
            platform="x", external_id=external_id, kind=EventKind.REPLY if parent else EventKind.MENTION,
            occurred_at=created, text=text, thread_key=parent or external_id, reply_to_id=parent,
            author=Author(platform="x", external_id=user["id"], handle=user["username"], display_name=user["name"],
                          avatar_url=user["profile_image_url"]),
            raw=raw,
        )


def chunks(events: Iterator[InboundEvent], size: int) -> Iterator[list[InboundEvent]]:
    chunk: list[InboundEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_ingest(account: ChannelAccount, n: int, batch: int, mix: dict[str, float]) -> float:
    """Seconds spent in ingest (building the synthetic events is not timed)."""
    spent = 0.0
    done = 0
    for chunk in chunks(make_events(n, **mix), batch):
        start = time.perf_counter()
        with transaction.atomic(durable=True):
            ingest(account, chunk)
        spent += time.perf_counter() - start
        done += len(chunk)
        if done % (batch * 20) == 0:
            print(f"  ingest: {done:,}/{n:,} events, {done / spent:,.0f}/s", file=sys.stderr)
    return spent


def run_copy(account: ChannelAccount, n: int, batch: int, mix: dict[str, float], *, binary: bool
             ) -> tuple[float, float]:
    """COPY the same events into a twin of the interactions table: same columns, indexes and constraints.

    The same batches and transactions as ingest. Returns two timings: from events to stored rows (turning
    each event into a row, its payload into JSON text, and COPYing them: the same start and end as ingest's
    timing), and the COPY statements alone. `binary` picks COPY's binary format (what ingest's staging uses)
    over its text format.
    """
    with connection.cursor() as c:
        c.execute("DROP TABLE IF EXISTS bench_interaction_twin")
        c.execute("CREATE TABLE bench_interaction_twin (LIKE conversations_interaction INCLUDING ALL)")
    now = dt.datetime.now(dt.UTC)
    columns = ("channel_account_id, conversation_id, identity_id, direction, kind, external_id, text, occurred_at, "
               "received_at, reply_to_external_id, attachments, raw, is_stub")
    types = ["bigint", "bigint", "bigint", "text", "text", "text", "text", "timestamptz", "timestamptz", "text",
             "bytea", "bytea", "boolean"]  # in the binary format jsonb is a version byte and the JSON text
    statement = f"COPY bench_interaction_twin ({columns}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    document = (lambda value: b"\x01" + json_for_postgres(value)) if binary else dumps_for_postgres
    no_attachments = document([])
    spent = copying = 0.0
    for n_chunk, chunk in enumerate(chunks(make_events(n, **mix), batch)):
        start = time.perf_counter()
        rows = [(account.pk, n_chunk * batch + i // 3 + 1, n_chunk * batch + i // 2 + 1, "in", str(e.kind),
                 e.external_id, e.text, e.occurred_at, now, e.reply_to_id, no_attachments, document(e.raw), False)
                for i, e in enumerate(chunk)]
        copy_start = time.perf_counter()
        with transaction.atomic(durable=True), connection.cursor() as c:  # noqa: SIM117
            with c.cursor.copy(statement) as copy:
                if binary:
                    copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        end = time.perf_counter()
        spent += end - start
        copying += end - copy_start
    return spent, copying


def run_naive(account: ChannelAccount, n: int) -> float:
    """What most apps do: one get_or_create per author, thread and message."""
    events = list(make_events(n, prefix="naive-"))
    start = time.perf_counter()
    for e in events:
        with transaction.atomic():
            identity = SocialIdentity.objects.filter(platform="x", scope="", external_id=e.author.external_id).first()
            if identity is None:
                customer = Customer.objects.create(display_name=e.author.display_name)
                identity = SocialIdentity.objects.create(
                    customer=customer, platform="x", external_id=e.author.external_id, handle=e.author.handle,
                    display_name=e.author.display_name, avatar_url=e.author.avatar_url, first_seen_at=e.occurred_at,
                    last_seen_at=e.occurred_at,
                )
            conversation, _ = Conversation.objects.get_or_create(
                channel_account=account, thread_key=e.thread_key,
                defaults={"identity": identity, "first_inbound_at": e.occurred_at, "last_activity_at": e.occurred_at},
            )
            Interaction.objects.get_or_create(
                channel_account=account, external_id=e.external_id,
                defaults={"conversation": conversation, "identity": identity, "kind": str(e.kind), "text": e.text,
                          "occurred_at": e.occurred_at, "received_at": dt.datetime.now(dt.UTC),
                          "reply_to_external_id": e.reply_to_id, "raw": e.raw},
            )
            Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=e.occurred_at)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--naive", type=int, default=5_000)
    parser.add_argument("--repeat", type=float, default=0.10,
                        help="share of events from an author seen before (default 0.10: nearly every event brings "
                             "a new customer, identity and conversation, the costliest mix)")
    parser.add_argument("--replies", type=float, default=0.10, help="share of events that reply in an earlier thread")
    args = parser.parse_args()
    mix = {"repeat": args.repeat, "replies": args.replies}

    creation = connection.creation
    bench_name = f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_bench"
    connection.settings_dict["TEST"]["NAME"] = bench_name
    print(f"creating a fresh database {bench_name} ...", file=sys.stderr)
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        account = ChannelAccount.objects.create(platform="x", name="bench", external_id="bench")
        naive_account = ChannelAccount.objects.create(platform="x", name="bench naive", external_id="bench-naive")
        t_ingest = run_ingest(account, args.events, args.batch, mix)
        stored = Interaction.objects.filter(channel_account=account).count()
        assert stored == args.events, f"stored {stored} of {args.events}"
        # The faster of COPY's two formats is the physical limit.
        copies = {fmt: run_copy(account, args.events, args.batch, mix, binary=fmt == "binary")
                  for fmt in ("text", "binary")}
        copy_format = min(copies, key=lambda fmt: copies[fmt][0])
        t_copy, t_copy_only = copies[copy_format]
        t_naive = run_naive(naive_account, args.naive)
    finally:
        creation.destroy_test_db(bench_name, verbosity=0)

    rates = {"ingest": args.events / t_ingest, "copy": args.events / t_copy,
             "copy_text": args.events / copies["text"][0], "copy_binary": args.events / copies["binary"][0],
             "copy_statement": args.events / t_copy_only, "naive": args.naive / t_naive}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'path':<8}{'events':>10}{'seconds':>10}{'events/s':>12}")
    print(f"{'ingest':<8}{args.events:>10,}{t_ingest:>10.1f}{rates['ingest']:>12,.0f}   batches of {args.batch:,}")
    print(f"{'copy':<8}{args.events:>10,}{t_copy:>10.1f}{rates['copy']:>12,.0f}   events to rows, COPY into a twin "
          f"({copy_format} format, the faster: text {rates['copy_text']:,.0f}/s, binary {rates['copy_binary']:,.0f}/s)")
    print(f"{'':<8}{'':>10}{t_copy_only:>10.1f}{rates['copy_statement']:>12,.0f}   of which the COPY statements")
    print(f"{'naive':<8}{args.naive:>10,}{t_naive:>10.1f}{rates['naive']:>12,.0f}   per-row ORM")
    print(f"\ningest / COPY  = {rates['ingest'] / rates['copy']:.2f}   (goal >= 0.30; "
          f"{rates['ingest'] / rates['copy_statement']:.2f} of the COPY statements alone)")
    print(f"ingest / naive = {rates['ingest'] / rates['naive']:.1f}x  (goal >= 15x)")
    print(f"peak memory    = {peak_mb:.0f} MB   (goal < 500 MB)")
    print(f"mix            = {args.repeat:.0%} repeat authors, {args.replies:.0%} replies in earlier threads")
    per_s = {f"{k}_per_s": round(v) for k, v in rates.items()}
    print(json.dumps({"events": args.events, "batch": args.batch, **mix, **per_s, "copy_format": copy_format,
                      "ratio_copy": round(rates["ingest"] / rates["copy"], 3),
                      "ratio_copy_statement": round(rates["ingest"] / rates["copy_statement"], 3),
                      "ratio_naive": round(rates["ingest"] / rates["naive"], 1), "peak_mb": round(peak_mb)}))


if __name__ == "__main__":
    main()
