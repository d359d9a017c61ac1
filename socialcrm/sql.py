"""Small helpers for the few hand-written, set-based SQL statements (batch upserts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from django.db import IntegrityError, transaction


def clean_text(value: str) -> str:
    """Make a string storable in PostgreSQL: drop NUL characters, replace lone surrogates."""
    if value.isascii():  # no surrogates possible; the common case costs no encoding
        return value.replace("\x00", "") if "\x00" in value else value
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


_EMPTY = {dict: b"{}", list: b"[]"}


def json_for_postgres(value: Any) -> bytes:
    """JSON text (UTF-8) that PostgreSQL's jsonb accepts: without NUL characters (``\\u0000``) or lone surrogates.

    The value is walked and cleaned only when the fast path finds something to clean (orjson refuses lone
    surrogates and writes NUL as ``\\u0000``); values orjson cannot encode fall back to the json module.
    """
    if not value and value.__class__ in _EMPTY:
        return _EMPTY[value.__class__]
    try:
        data = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return _json_cleaned(value)
    if b"\\u0000" in data:
        return _json_cleaned(value)
    return data


def _json_cleaned(value: Any) -> bytes:
    return json.dumps(clean_json(value), ensure_ascii=False, separators=(",", ":"), default=str).encode()


def dumps_for_postgres(value: Any) -> str:
    """`json_for_postgres` as a string."""
    return json_for_postgres(value).decode()


ON_CONFLICT = "/* on conflict */"


def fetch_inserting_plainly_first(cursor: Any, sql: str, params: Any, *, constraint: str, on_conflict: str
                                  ) -> list[tuple]:
    """The rows of `sql`, a statement that inserts rows whose keys it has just looked up and found free.

    It runs first with its insert plain, `ON_CONFLICT` in its text left empty: inserting 1,000 rows with
    ON CONFLICT costs about a third more, as every row's key is checked before it is inserted. Only a
    concurrent transaction inserting one of the same keys in the meantime makes it fail, on the unique
    `constraint`; then it runs again, with `on_conflict` in place of `ON_CONFLICT`, after its savepoint was
    rolled back.
    """
    try:
        with transaction.atomic():
            cursor.execute(sql, params)
            return cursor.fetchall()
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != constraint:
            raise
    cursor.execute(sql.replace(ON_CONFLICT, on_conflict), params)
    return cursor.fetchall()


def text_array_literal(values: Iterable[str]) -> str:
    """The PostgreSQL literal of a text array (`{"a","b"}`), for a text column cast to an array in SQL: formatting
    it here costs a fraction of adapting a list element by element."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def stage_rows(cursor: Any, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> None:
    """Fill the temporary table `table` (created on first use; emptied at commit) with `rows` by COPY.

    Batch writes stage their rows this way and then merge them with one INSERT ... SELECT or UPDATE ... FROM:
    COPY is the cheapest way into PostgreSQL (psycopg formats rows in C), far cheaper than adapting one
    array per column or parsing one JSON document; its binary format spares the escaping of text and the
    formatting of timestamps, which cost ten times as much in Python as binary values do. Two or three
    statements, however many rows. Values must be of their column's type (str, int, aware datetime, bool, None);
    strings in text columns are cleaned with `clean_text`; values of jsonb columns are written as JSON (a str
    is taken as JSON text already).

    The table is emptied with DELETE, not TRUNCATE: it is already empty unless it was used earlier in the same
    transaction, and deleting nothing is free where TRUNCATE swaps the table's files every time. Temporary
    tables have no statistics (they are never auto-analyzed, and ANALYZE costs a few milliseconds a batch), so
    a statement that joins a stage to a large table looks rows up through a LATERAL subquery with LIMIT, which
    the planner cannot turn into a scan of the large table.
    """
    definition = ", ".join(f"{name} {sql_type}" for name, sql_type in columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DELETE ROWS; DELETE FROM {table}"
    )
    texts = [i for i, (_, sql_type) in enumerate(columns) if sql_type == "text"]
    documents = [i for i, (_, sql_type) in enumerate(columns) if sql_type == "jsonb"]
    names = ", ".join(name for name, _ in columns)
    with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        # Dumpers chosen once per column instead of once per value. jsonb travels in its binary form, a version
        # byte and the JSON text, written below.
        copy.set_types(["bytea" if sql_type == "jsonb" else sql_type for _, sql_type in columns])
        write_row = copy.write_row
        for row in rows:
            row = list(row)
            for i in texts:
                if row[i].__class__ is str:
                    row[i] = clean_text(row[i])
            for i in documents:
                value = row[i]
                if value is not None:
                    row[i] = _JSONB_VERSION + (clean_text(value).encode() if value.__class__ is str
                                               else json_for_postgres(value))
            write_row(row)


_JSONB_VERSION = b"\x01"
