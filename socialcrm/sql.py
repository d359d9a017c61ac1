"""Small helpers for the few hand-written, set-based SQL statements (batch upserts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def clean_text(value: str) -> str:
    """Make a string storable in PostgreSQL: drop NUL characters, replace lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def clean_json(value: Any) -> Any:
    """`clean_text` applied to every string (keys included) inside a decoded JSON value."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def dumps_for_postgres(value: Any) -> str:
    """JSON text that PostgreSQL's jsonb accepts: without NUL characters (``\\u0000``) or lone surrogates.

    The value is walked and cleaned only when the fast path finds something to clean.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        return json.dumps(clean_json(value), ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(clean_json(value), ensure_ascii=False, separators=(",", ":"))
    return text


def stage_rows(cursor: Any, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> None:
    """Fill the temporary table `table` (created on first use; emptied at commit) with `rows` by COPY.

    Batch writes stage their rows this way and then merge them with one INSERT ... SELECT or UPDATE ... FROM:
    COPY is the cheapest way into PostgreSQL (psycopg formats rows in C), far cheaper than adapting one
    array per column or parsing one JSON document. Three statements, however many rows. Strings are cleaned
    with `clean_text`; dicts and lists are written as JSON (for jsonb columns).
    """
    definition = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DELETE ROWS; TRUNCATE {table}"
    )
    with cursor.cursor.copy(f"COPY {table} ({', '.join(name for name, _ in columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([
                clean_text(v) if isinstance(v, str) else dumps_for_postgres(v) if isinstance(v, dict | list) else v
                for v in row
            ])
    # Temporary tables are never auto-analyzed; without statistics the planner joins them to large tables
    # with sequential scans. Analyzing a few thousand rows costs about a millisecond.
    cursor.execute(f"ANALYZE {table}")
