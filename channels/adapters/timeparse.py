"""Timestamp helpers for the encodings the platforms use (see PLATFORMS.md, "Timestamps come in five encodings").

Every helper returns a timezone-aware datetime in UTC and raises `PayloadError` naming the value on garbage:

- `parse_iso8601`: ISO-8601 with `Z` or an offset, with or without a colon (`2020-06-24T17:19:07.000Z` for
  X v2 and Mastodon, `2021-08-10T18:45:03+0000` for the Graph API). A value without an offset is refused:
  guessing its zone would silently shift every message.
- `parse_twitter_legacy`: X v1.1 `Wed Jul 10 23:09:15 +0000 2019`, parsed without the C library's locale.
- `from_epoch_seconds` / `from_epoch_millis`: ints or digit strings (Telegram, WhatsApp, the Facebook feed;
  Messenger, X DM `created_timestamp`, `timestamp_ms`).
- `from_epoch_guess`: seconds or milliseconds by magnitude, for fields documented as either (Meta `entry.time`).

Pure standard library; no Django.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from .base import PayloadError

__all__ = [
    "from_epoch_guess",
    "from_epoch_millis",
    "from_epoch_seconds",
    "parse_iso8601",
    "parse_twitter_legacy",
    "utc_now",
]

# An epoch value at or above this is milliseconds: 1e11 seconds is the year 5138, 1e11 ms is March 1973.
_MILLIS_THRESHOLD = 100_000_000_000

_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LEGACY = re.compile(
    r"^(?P<weekday>[A-Z][a-z]{2}) (?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2}) "
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2}) (?P<sign>[+-])(?P<oh>\d{2})(?P<om>\d{2}) (?P<year>\d{4})$"
)


def utc_now() -> dt.datetime:
    """The current time in UTC: the receive time for events whose platform gives none (tests may patch it)."""
    return dt.datetime.now(tz=dt.UTC)


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_iso8601(value: object) -> dt.datetime:
    """An ISO-8601 date-time with `Z` or a UTC offset (`+00:00` or `+0000`), as an aware UTC datetime."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"timestamp {_describe(value)} is not an ISO-8601 string")
    text = value.strip()
    if "T" not in text and " " not in text:
        raise PayloadError(f"timestamp {_describe(value)} is not an ISO-8601 date-time (no time of day)")
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(f"timestamp {_describe(value)} is not ISO-8601: {exc}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PayloadError(f"timestamp {_describe(value)} has no UTC offset")
    return parsed.astimezone(dt.UTC)


def parse_twitter_legacy(value: object) -> dt.datetime:
    """X v1.1 `created_at` (`Wed Jul 10 23:09:15 +0000 2019`), independent of the process locale."""
    match = _LEGACY.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise PayloadError(f"timestamp {_describe(value)} is not in the X v1.1 format 'Wed Jul 10 23:09:15 +0000 2019'")
    parts = match.groupdict()
    month = _MONTHS.get(parts["month"])
    if month is None or parts["weekday"] not in _WEEKDAYS:
        raise PayloadError(f"timestamp {_describe(value)} has an unknown month or weekday name")
    offset = dt.timedelta(hours=int(parts["oh"]), minutes=int(parts["om"]))
    if parts["sign"] == "-":
        offset = -offset
    try:
        parsed = dt.datetime(int(parts["year"]), month, int(parts["day"]), int(parts["hour"]), int(parts["minute"]),
                             int(parts["second"]), tzinfo=dt.timezone(offset))
    except ValueError as exc:
        raise PayloadError(f"timestamp {_describe(value)} is not a valid date: {exc}") from None
    return parsed.astimezone(dt.UTC)


def _epoch_number(value: object, unit: str) -> int | float:
    """The number behind an epoch value given as int, float or digit string; PayloadError otherwise."""
    if isinstance(value, bool):
        raise PayloadError(f"epoch {unit} {_describe(value)} is a boolean, not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"epoch {unit} {_describe(value)} is not a finite number")
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        text = value.strip()
        return float(text) if "." in text else int(text)
    raise PayloadError(f"epoch {unit} {_describe(value)} is not a number")


def from_epoch_seconds(value: object) -> dt.datetime:
    """Epoch seconds (int, float or digit string) as an aware UTC datetime."""
    number = _epoch_number(value, "seconds")
    if abs(number) >= _MILLIS_THRESHOLD:
        raise PayloadError(f"epoch seconds {_describe(value)} is out of range (milliseconds given as seconds?)")
    try:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=number)
    except OverflowError:
        raise PayloadError(f"epoch seconds {_describe(value)} is out of range") from None


def from_epoch_millis(value: object) -> dt.datetime:
    """Epoch milliseconds (int, float or digit string) as an aware UTC datetime; integer values stay exact."""
    number = _epoch_number(value, "milliseconds")
    try:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=number)
    except OverflowError:
        raise PayloadError(f"epoch milliseconds {_describe(value)} is out of range") from None


def from_epoch_guess(value: object) -> dt.datetime:
    """Epoch seconds or milliseconds, told apart by magnitude (values from 1e11 up are milliseconds)."""
    number = _epoch_number(value, "time")
    if abs(number) >= _MILLIS_THRESHOLD:
        return from_epoch_millis(value)
    return from_epoch_seconds(value)
