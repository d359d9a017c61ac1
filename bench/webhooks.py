"""Webhook intake on the production server (gunicorn) against the same server's trivial endpoint, in one run.

    python bench/webhooks.py [--duration 4] [--warmup 1] [--rounds 4] [--connections 16] [--processes 2]
                             [--calibrate 2] [--workers 2] [--threads 4] [--worker-class gthread] [--redis-db 13]

Builds a fresh database (`<test database name>_webhooks`) with one Telegram channel account (bot token and
webhook secret set), and starts gunicorn on a free port of 127.0.0.1 against it: DEBUG off, persistent database
connections, its Celery broker and cache on a Redis database of their own (`--redis-db`, which must hold nothing
else). Separate load-generator processes (`bench/_load.py`: asyncio clients over keep-alive HTTP/1.1
connections, a closed loop of `--connections` requests in flight) first calibrate themselves on `GET /ping/`
with 1, 2, ... processes, then drive `GET /ping/` (the cheapest answer the server gives) and
`POST /webhooks/telegram/<id>/` (the real intake: secret check, one stored `WebhookDelivery`, a debounced drain
task after commit) in ABBA order, each run with its own warm-up and the same concurrency, so drift and noise
hit both endpoints alike. The webhook bodies are the recorded Telegram updates in
`channels/recorded/nutgram/telegram_bot_api/`, each request with its own `update_id` and `message_id`, so
every request is a distinct delivery.

Prints for every run and per endpoint: requests/s, p50/p99 latency, non-2xx answers, CPU milliseconds per
request (gunicorn, the bench database's PostgreSQL backends, the generator), how busy the machine was and how the
server spread the connections over its workers. Then the ratio webhook/ping against the goal (>= 0.50), how busy
the generator processes were (well below one core each: they are not the limit), and a check that the stored
deliveries equal the 200 answers with one distinct update_id each (nothing lost, nothing doubled). No Celery
worker runs: the drain tasks the intake enqueued are counted and purged at the end. The machines are shared
and noisy: compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.db import connection  # noqa: E402

from bench._common import (  # noqa: E402
    HEADER,
    HEADER_NOTE,
    HOST,
    Server,
    database_backends,
    merged,
    ms,
    print_run,
    redis_check_free,
    redis_purge,
    wait_for_disconnect,
    with_path,
)
from bench._load import SEQUENCE, LoadResult, Target, run_load  # noqa: E402
from channels.models import ChannelAccount, WebhookDelivery  # noqa: E402

RECORDED = ROOT / "channels" / "recorded" / "nutgram" / "telegram_bot_api"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
GOAL = 0.50
# A generator process busier than this share of its core may be what limits the rate.
GENERATOR_LIMIT = 0.6


def telegram_bodies() -> tuple[str, ...]:
    """The recorded Telegram updates as body templates: `update_id` and the message's `message_id` vary.

    Each update's `update_id`, and the `message_id` of the object it carries (message, channel post, edited
    message, callback query's message, ...), become the request's sequence number, so no two requests are the
    same delivery. Serialized compactly, as Telegram sends them.
    """
    bodies = []
    for path in sorted(RECORDED.glob("*.json")):
        update = json.loads(path.read_text())
        update["update_id"] = SEQUENCE.strip('"')
        for value in update.values():
            if isinstance(value, dict):
                carried = value.get("message", value)
                if isinstance(carried, dict) and "message_id" in carried:
                    carried["message_id"] = SEQUENCE.strip('"')
        bodies.append(json.dumps(update, ensure_ascii=False, separators=(",", ":")))
    if not bodies:
        raise SystemExit(f"no recorded Telegram updates in {RECORDED.relative_to(ROOT)}")
    return tuple(bodies)


def measure(args: argparse.Namespace, server: Server, ping: Target, webhook: Target,
            bench_name: str) -> tuple[dict[int, float], dict[str, list[LoadResult]]]:
    """The generator calibration (ping rate per number of processes), then the ABBA rounds; prints every run."""
    watch = {"server": server.pids, "database": lambda: database_backends(bench_name)}

    def load(target: Target, processes: int, warmup: float, duration: float, first_n: int = 0) -> LoadResult:
        return run_load(host=HOST, port=server.port, target=target, connections=args.connections,
                        processes=processes, warmup=warmup, duration=duration, first_n=first_n, watch=watch,
                        probe=server.connections_per_worker)

    print(f"\n{args.connections} connections; every run {args.warmup:g} s warm-up + {args.duration:g} s measured")
    print(HEADER_NOTE)
    print(HEADER)
    calibration: dict[int, float] = {}
    if args.calibrate > 0:
        for processes in range(1, args.processes + 2):
            result = load(ping, processes, 1.0, args.calibrate)
            calibration[processes] = result.rate
            print_run(f"ping, {processes} generator{'s' if processes > 1 else ''}", result)
    runs: dict[str, list[LoadResult]] = {"ping": [], "webhook": []}
    next_n = 1
    for round_no in range(args.rounds):
        for name in ("ping", "webhook") if round_no % 2 == 0 else ("webhook", "ping"):
            if name == "ping":
                result = load(ping, args.processes, args.warmup, args.duration)
            else:
                result = load(webhook, args.processes, args.warmup, args.duration, first_n=next_n)
                next_n = result.last_n + 1
            runs[name].append(result)
            print_run(f"{name}, round {round_no + 1}", result)
    return calibration, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per run (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before every run (default 1)")
    parser.add_argument("--rounds", type=int, default=4, help="runs per endpoint, in ABBA order (default 4)")
    parser.add_argument("--connections", type=int, default=16, help="requests in flight, both endpoints (default 16)")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--calibrate", type=float, default=2.0,
                        help="seconds per generator calibration step, 0 to skip (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (default gthread)")
    parser.add_argument("--redis-db", type=int, default=13,
                        help="Redis database for the server's broker and cache; must hold nothing else (default 13)")
    args = parser.parse_args()
    if args.connections < args.processes + 1:
        parser.error("--connections must be above --processes")
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds and --duration must be positive")

    def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    redis_url = with_path(os.environ["REDIS_URL"], f"/{args.redis_db}")
    broker = redis.Redis.from_url(redis_url)
    redis_check_free(broker, args.redis_db)

    creation = connection.creation
    bench_name = f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_webhooks"
    connection.settings_dict["TEST"]["NAME"] = bench_name
    print(f"creating a fresh database {bench_name} ...", file=sys.stderr)
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        token = secrets.token_urlsafe(32)
        bot_id = "4242424242"
        account = ChannelAccount.objects.create(
            platform="telegram", name="bench", external_id=bot_id,
            credentials={"bot_token": f"{bot_id}:{secrets.token_urlsafe(26)}"}, webhook_secret={"secret_token": token},
        )
        ping = Target("GET", "/ping/")
        webhook = Target("POST", f"/webhooks/telegram/{account.pk}/", bodies=telegram_bodies(),
                         headers=(("Content-Type", "application/json"), (SECRET_HEADER, token)))
        with tempfile.TemporaryFile(mode="w+") as log, Server(
            database_url=with_path(os.environ["DATABASE_URL"], f"/{bench_name}"), redis_url=redis_url,
            workers=args.workers, threads=args.threads, worker_class=args.worker_class, log=log,
        ) as server:
            calibration, runs = measure(args, server, ping, webhook, bench_name)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), count(DISTINCT convert_from(body, 'UTF8')::jsonb -> 'update_id') "
                           f"FROM {WebhookDelivery._meta.db_table}")
            stored, distinct = cursor.fetchone()
    finally:
        tasks_left = redis_purge(broker)
        wait_for_disconnect(bench_name)
        creation.destroy_test_db(bench_name, verbosity=0)

    ping_all, webhook_all = merged(runs["ping"]), merged(runs["webhook"])
    print()
    print_run("ping, all rounds", ping_all)
    print_run("webhook, all rounds", webhook_all)
    answered_200 = webhook_all.answered[200]
    ratio = webhook_all.rate / ping_all.rate
    round_ratios = [w.rate / p.rate for p, w in zip(runs["ping"], runs["webhook"], strict=True)]
    busiest = max(r.generator_busy for r in [*runs["ping"], *runs["webhook"]])
    print(f"\nwebhook / ping = {ratio:.2f}   (goal >= {GOAL:.2f}; per round "
          f"{', '.join(f'{r:.2f}' for r in round_ratios)})")
    print(f"p99 latency    = {ms(webhook_all.percentile(0.99)):.1f} ms webhook, "
          f"{ms(ping_all.percentile(0.99)):.1f} ms ping")
    bad = {name: sum(n for status, n in merged(results).answered.items() if not 200 <= status < 300)
           for name, results in runs.items()}
    unanswered = sum((r.failures for r in [*runs["ping"], *runs["webhook"]]), Counter())
    print(f"errors         = non-2xx answers: {bad['ping']} ping, {bad['webhook']} webhook (warm-ups included); "
          f"requests without an answer: {sum(unanswered.values())}"
          + (f" ({', '.join(f'{k}: {n}' for k, n in unanswered.items())})" if unanswered else ""))
    print(f"generator      = each process busy {100 * busiest:.0f}% of a core at most "
          + ("(it waits for the server: not the limit)" if busiest < GENERATOR_LIMIT else
             "(near its limit: raise --processes)")
          + (f"; ping with {', '.join(f'{p}: {r:,.0f}/s' for p, r in calibration.items())} processes"
             if calibration else ""))
    lost = "OK" if stored == answered_200 == distinct else "MISMATCH"
    print(f"deliveries     = {stored:,} stored, {distinct:,} distinct update_ids, {answered_200:,} answered 200 "
          f"(warm-ups included): {lost}")
    print(f"drain tasks    = {sum(tasks_left.values())} left in Redis db {args.redis_db} "
          f"({', '.join(f'{q}: {n}' for q, n in tasks_left.items()) or 'none'}), purged")
    print(json.dumps({
        "connections": args.connections, "processes": args.processes, "workers": args.workers,
        "threads": args.threads, "worker_class": args.worker_class, "duration": args.duration,
        "rounds": args.rounds, "ping_per_s": round(ping_all.rate), "webhook_per_s": round(webhook_all.rate),
        "ratio": round(ratio, 3), "round_ratios": [round(r, 3) for r in round_ratios],
        "ping_p50_ms": round(ms(ping_all.percentile(0.5)), 2), "ping_p99_ms": round(ms(ping_all.percentile(0.99)), 2),
        "webhook_p50_ms": round(ms(webhook_all.percentile(0.5)), 2),
        "webhook_p99_ms": round(ms(webhook_all.percentile(0.99)), 2),
        "ping_non_2xx": ping_all.non_2xx, "webhook_non_2xx": webhook_all.non_2xx,
        "non_2xx_all": bad, "failures": sum(unanswered.values()),
        "calibration_per_s": {str(k): round(v) for k, v in calibration.items()},
        "generator_busy_max": round(busiest, 3),
        "server_cpu_ms": {"ping": round(ping_all.cpu_per_request_ms("server"), 3),
                          "webhook": round(webhook_all.cpu_per_request_ms("server"), 3)},
        "db_cpu_ms": {"ping": round(ping_all.cpu_per_request_ms("database"), 3),
                      "webhook": round(webhook_all.cpu_per_request_ms("database"), 3)},
        "deliveries": stored, "distinct_update_ids": distinct, "answered_200": answered_200,
        "deliveries_ok": lost == "OK", "tasks_purged": sum(tasks_left.values()),
    }))
    if lost != "OK":
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: the server is stopped, its Redis keys purged and the bench database dropped")
