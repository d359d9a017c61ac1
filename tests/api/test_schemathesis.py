"""The whole OpenAPI schema, run by schemathesis against the live server: no 5xx, no schema violations.

The schemathesis CLI (its coverage, fuzzing and stateful phases) calls every operation of
`/api/v1/schema/` on pytest-django's live server with generated valid and invalid input, as a token with
every scope, over seeded data (two teams' channel accounts, customers, conversations, interactions, webhook
deliveries). Every response must pass the checks: no server error, documented status code, content type,
headers and body, invalid input refused, unsupported methods answered 405, and so on.

`positive_data_acceptance` is left out on purpose: some inputs the schema allows are refused by rules a JSON
schema cannot state (an opaque cursor, the keys a platform's webhook secret needs, an assignee id that must
name an active user, a birth date in the past), and that refusal is a 400 naming the field, as it should be.

The operations are split by tag over parallel CLI processes (one worker each: concurrent threads in one
process trip a CPython 3.11 bug in `ast.parse`). Each request asks for `Connection: close`: on a kept-alive
connection Django's development server answers in two writes, and Nagle's algorithm with delayed ACKs then
stalls every request by 40 ms. Replies and delivery drains stop at the task queue, so nothing leaves the
process.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from channels import services as channel_services
from tests.api.conftest import World

MAX_EXAMPLES = 10
SEED = 20261126
EXCLUDED_CHECKS = "positive_data_acceptance"
# Operation tags, one group per CLI process.
GROUPS = ["customers", "conversations", "interactions|social-identities", "channel-accounts|webhook-deliveries",
          "merges|audit-events", "duplicate-suggestions",
          "webhook-subscriptions"]


@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live_server, world: World, token_for, settings, monkeypatch, tmp_path: pathlib.Path
) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "1000000/minute"}}
    monkeypatch.setattr(channel_services, "_enqueue_send", lambda interaction_id: None)
    monkeypatch.setattr(channel_services, "_schedule_drain", lambda: None)
    token = token_for(world.admin)
    cli = pathlib.Path(sys.executable).parent / "schemathesis"
    runs = []
    for group in GROUPS:
        command = [
            str(cli), "run", f"{live_server.url}/api/v1/schema/", "--include-tag-regex", f"^({group})$",
            "--phases", "coverage,fuzzing,stateful", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-database", "none",
            "--header", f"Authorization: Bearer {token}", "--header", "Connection: close", "--workers", "1",
            "--request-timeout", "20", "--no-color", "--output-truncate", "false",
        ]
        out = (tmp_path / f"{len(runs)}.txt").open("w")
        runs.append((group, out, subprocess.Popen(command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)))
    failures = []
    for group, out, process in runs:
        code = process.wait(timeout=300)
        out.close()
        if code != 0:
            failures.append(f"--- {group} (exit {code}) ---\n" + pathlib.Path(out.name).read_text())
    assert not failures, "\n".join(failures)
