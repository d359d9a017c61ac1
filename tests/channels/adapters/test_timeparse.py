"""Timestamp helpers: every encoding the platforms use, always aware UTC, PayloadError on garbage."""

import datetime as dt
from collections.abc import Callable

import pytest

from channels.adapters.base import PayloadError
from channels.adapters.timeparse import (
    from_epoch_guess,
    from_epoch_millis,
    from_epoch_seconds,
    parse_iso8601,
    parse_twitter_legacy,
    utc_now,
)

UTC = dt.UTC
Parser = Callable[[object], dt.datetime]


@pytest.mark.parametrize(("value", "expected"), [
    ("2020-06-24T17:19:07.000Z", dt.datetime(2020, 6, 24, 17, 19, 7, tzinfo=UTC)),  # X v2
    ("2026-08-01T13:54:00.695Z", dt.datetime(2026, 8, 1, 13, 54, 0, 695000, tzinfo=UTC)),  # Mastodon
    ("2021-08-10T18:45:03+0000", dt.datetime(2021, 8, 10, 18, 45, 3, tzinfo=UTC)),  # Graph API, no colon
    ("2026-04-11T12:08:00.687+00:00", dt.datetime(2026, 4, 11, 12, 8, 0, 687000, tzinfo=UTC)),
    ("2021-08-10T20:45:03+0200", dt.datetime(2021, 8, 10, 18, 45, 3, tzinfo=UTC)),
])
def test_iso8601_variants_become_utc(value: object, expected: dt.datetime) -> None:
    parsed = parse_iso8601(value)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(("value", "expected"), [
    ("Wed Jul 10 23:09:15 +0000 2019", dt.datetime(2019, 7, 10, 23, 9, 15, tzinfo=UTC)),
    ("Tue Oct 31 22:10:47 +0000 2017", dt.datetime(2017, 10, 31, 22, 10, 47, tzinfo=UTC)),
    ("Wed Jul 10 18:09:15 -0500 2019", dt.datetime(2019, 7, 10, 23, 9, 15, tzinfo=UTC)),
])
def test_twitter_legacy_format(value: object, expected: dt.datetime) -> None:
    parsed = parse_twitter_legacy(value)
    assert parsed == expected
    assert parsed.utcoffset() == dt.timedelta(0)


def test_epoch_seconds_int_and_string() -> None:
    assert from_epoch_seconds(1449135003) == dt.datetime(2015, 12, 3, 9, 30, 3, tzinfo=UTC)  # Facebook feed
    assert from_epoch_seconds("1684984664") == dt.datetime(2023, 5, 25, 3, 17, 44, tzinfo=UTC)  # WhatsApp string
    assert from_epoch_seconds(1449135003).tzinfo is not None


def test_epoch_milliseconds_are_exact() -> None:
    assert from_epoch_millis(1457764197627) == dt.datetime(2016, 3, 12, 6, 29, 57, 627000, tzinfo=UTC)
    assert from_epoch_millis("1457764197627") == from_epoch_millis(1457764197627)


def test_epoch_guess_tells_seconds_from_milliseconds() -> None:
    assert from_epoch_guess(1449135003) == dt.datetime(2015, 12, 3, 9, 30, 3, tzinfo=UTC)
    assert from_epoch_guess(1458668856451) == dt.datetime(2016, 3, 22, 17, 47, 36, 451000, tzinfo=UTC)


def test_utc_now_is_aware() -> None:
    assert utc_now().utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize(("func", "value", "message"), [
    (parse_iso8601, "TIMESTAMP", "not ISO-8601"),
    (parse_iso8601, "2021-08-10T18:45:03", "no UTC offset"),
    (parse_iso8601, "2021-08-10", "no time of day"),
    (parse_iso8601, None, "not an ISO-8601 string"),
    (parse_iso8601, 1449135003, "not an ISO-8601 string"),
    (parse_twitter_legacy, "2019-07-10T23:09:15Z", "X v1.1 format"),
    (parse_twitter_legacy, "Wed Foo 10 23:09:15 +0000 2019", "unknown month"),
    (parse_twitter_legacy, "Wed Feb 31 23:09:15 +0000 2019", "not a valid date"),
    (from_epoch_seconds, "TIMESTAMP", "not a number"),
    (from_epoch_seconds, True, "boolean"),
    (from_epoch_seconds, None, "not a number"),
    (from_epoch_seconds, 1457764197627, "milliseconds given as seconds"),
    (from_epoch_millis, "abc", "not a number"),
    (from_epoch_millis, float("nan"), "not a finite number"),
    (from_epoch_millis, 10**20, "out of range"),
    (from_epoch_guess, [], "not a number"),
])
def test_garbage_raises_payload_error_naming_the_value(func: Parser, value: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message) as info:
        func(value)
    assert repr(value)[:20] in str(info.value)
