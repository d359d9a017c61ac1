"""Small helpers for the few hand-written, set-based SQL statements (batch upserts)."""

from __future__ import annotations

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
