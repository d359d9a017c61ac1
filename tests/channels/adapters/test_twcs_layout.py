"""The derived TWCS layout sample (fixtures/twcs/, see its README): every row is a consistent `twcs.csv` row, and
the threads the rows form are exactly the recorded IBM customer-care threads they were laid out from.

The file is our own re-layout of channels/recorded/ibm-twitter-customer-care/conversations_sample.json, so these
tests hold it to the recording: a future twcs importer can then trust it as a stand-in for the Kaggle file.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import pathlib
import re
from typing import NamedTuple

import pytest

from channels.adapters.x import snowflake_time

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = HERE / "fixtures" / "twcs" / "derived_twcs_layout_sample.csv"
RECORDED = HERE.parents[2] / "channels" / "recorded" / "ibm-twitter-customer-care" / "conversations_sample.json"
COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id", "in_response_to_tweet_id"]
CREATED_AT = "%a %b %d %H:%M:%S +0000 %Y"  # Twitter's v1.1 `created_at`, always in UTC
# The first X ids that encode a time (snowflake) were issued on 4 November 2010; a snowflake is a positive
# signed 64-bit integer.
SNOWFLAKE_START = dt.datetime(2010, 11, 4, tzinfo=dt.UTC)
SNOWFLAKE_MAX = 2**63 - 1


def read_sample() -> tuple[list[str], list[dict[str, str]]]:
    with SAMPLE.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


HEADER, ROWS = read_sample()
BY_ID = {row["tweet_id"]: row for row in ROWS}
POSITION = {row["tweet_id"]: i for i, row in enumerate(ROWS)}
CONVERSATIONS = json.loads(RECORDED.read_bytes())
# The brands' support accounts: the company of each recorded thread (whose agent turns and final tweet are theirs).
BRANDS = {c["dialogHeader"]["company"] for c in CONVERSATIONS}


class Tweet(NamedTuple):
    tweet_id: str
    author: str
    created_at: dt.datetime | None
    text: str


def created_at(row: dict[str, str]) -> dt.datetime | None:
    value = row["created_at"]
    return dt.datetime.strptime(value, CREATED_AT).replace(tzinfo=dt.UTC) if value else None


def ids(value: str) -> list[str]:
    """The tweet ids of a twcs id column: empty, one id, or several separated by commas."""
    return [part for part in value.split(",") if part]


def test_the_sample_has_the_twcs_columns_and_one_row_per_recorded_tweet() -> None:
    assert HEADER == COLUMNS
    assert all(None not in row and len(row) == len(COLUMNS) for row in ROWS)  # no row with extra or missing cells
    recorded = sum(len(c["dialogContent"]) + 1 for c in CONVERSATIONS)  # the turns and the agent's final tweet
    assert len(ROWS) == len(BY_ID) == recorded == 87


@pytest.mark.parametrize("row", ROWS, ids=[row["tweet_id"] for row in ROWS])
def test_the_tweet_id_is_a_snowflake_whose_time_is_created_at(row: dict[str, str]) -> None:
    tweet_id = row["tweet_id"]
    assert re.fullmatch(r"[1-9][0-9]*", tweet_id), f"{tweet_id!r} is not a decimal id"
    assert 0 < int(tweet_id) <= SNOWFLAKE_MAX
    encoded = snowflake_time(tweet_id)
    assert SNOWFLAKE_START <= encoded <= dt.datetime.now(dt.UTC)
    when = created_at(row)
    if when is None:
        # Only the agent's final tweet has no time (the source gives none): the last of its thread, by a brand.
        assert row["response_tweet_id"] == ""
        assert row["author_id"] in BRANDS
    else:
        assert encoded.replace(microsecond=0) == when  # created_at has whole seconds; the id, milliseconds


@pytest.mark.parametrize("row", ROWS, ids=[row["tweet_id"] for row in ROWS])
def test_the_reply_links_name_earlier_tweets_of_the_file_and_agree(row: dict[str, str]) -> None:
    tweet_id = row["tweet_id"]
    parents = ids(row["in_response_to_tweet_id"])
    assert len(parents) <= 1  # a tweet answers at most one tweet
    for parent in parents:
        assert parent in BY_ID, f"{tweet_id} answers {parent}, which is not in the file"
        assert POSITION[parent] < POSITION[tweet_id]
        assert snowflake_time(parent) < snowflake_time(tweet_id)
        assert tweet_id in ids(BY_ID[parent]["response_tweet_id"])
    responses = ids(row["response_tweet_id"])
    assert all(r in BY_ID for r in responses)
    # response_tweet_id lists exactly the tweets of the file whose in_response_to_tweet_id is this one.
    assert sorted(responses) == sorted(r["tweet_id"] for r in ROWS if r["in_response_to_tweet_id"] == tweet_id)


@pytest.mark.parametrize("row", ROWS, ids=[row["tweet_id"] for row in ROWS])
def test_inbound_is_whether_the_author_is_a_customer(row: dict[str, str]) -> None:
    assert row["inbound"] in ("True", "False")
    assert (row["inbound"] == "True") == (row["author_id"] not in BRANDS)


def sample_threads() -> list[list[Tweet]]:
    """The threads of the file: from each tweet that answers none, down its responses, in file order."""
    threads = []
    for root in (row for row in ROWS if not row["in_response_to_tweet_id"]):
        thread, row = [], root
        while True:
            thread.append(Tweet(row["tweet_id"], row["author_id"], created_at(row), row["text"]))
            responses = ids(row["response_tweet_id"])
            if not responses:
                break
            assert len(responses) == 1, f"{row['tweet_id']} branches"
            row = BY_ID[responses[0]]
        threads.append(thread)
    return threads


def recorded_threads() -> list[list[Tweet]]:
    """The recorded threads: their turns, then the agent's final tweet (by the company, with no time)."""
    threads = []
    for conversation in CONVERSATIONS:
        thread = []
        for turn in conversation["dialogContent"]:
            (author,) = (turn[key] for key in ("client", "client1", "agent") if key in turn)
            thread.append(Tweet(turn["tweet_ID"], author, dt.datetime.fromisoformat(turn["datetime"]),
                                turn["message"]))
        final = conversation["agentURL"]
        thread.append(Tweet(final["tweet_ID"], conversation["dialogHeader"]["company"], None, final["url_utterance"]))
        threads.append(thread)
    return threads


def test_the_threads_are_exactly_the_recorded_ones() -> None:
    threads = sample_threads()

    assert threads == recorded_threads()  # same threads in the same order: ids, authors, times and texts
    assert sorted(t.tweet_id for thread in threads for t in thread) == sorted(BY_ID)  # every row in one thread
