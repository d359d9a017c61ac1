"""The text customer search matches names, handles and e-mail addresses in: `Customer.search_text`.

One string per customer, upper-cased, in three sections (names, handles, e-mail addresses) separated by
`SECTION`, each value wrapped in `SEPARATOR`:

    \\x1fANNA SCHMIDT\\x1f\\x1fANNA S.\\x1f \\x1e \\x1fANNA_SCHMIDT\\x1f \\x1e \\x1fANNA.SCHMIDT@GMX.DE\\x1f

(without the spaces). The names are the customer's display name and its identities' display names, the handles
its identities' handles without a leading "@", the e-mail addresses the normalized values of its e-mail contact
points; empty values are left out, and control characters (the separators among them) are taken out of every
value and of the searched text alike. One trigram index on the column (contacts migration 0008) then answers a
"contains" over all of them at once, and on the customer row itself, so a search page can be read in the list's
order; a value matched whole (text too short for a trigram) is the text between two separators.

The string is derived data: `SEARCH_TEXT_SQL` computes it from the rows, `customers_search_text_refresh`
writes it for given customers and is called by every write of its inputs (merge, unmerge, link, unlink, the
API's customer writes, the admin); ingest writes it itself (`contacts.services.identities_resolve`). The
migration's backfill and the API benchmark (bench/api.py) use the same expression.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from django.db import connection
from django.db.models import F, Func, Q, TextField, Value
from django.db.models.functions import Upper
from django.db.models.lookups import Contains

SEPARATOR = "\x1f"  # around every value
SECTION = "\x1e"  # between the names, the handles and the e-mail addresses

# The shortest text a search matches inside names, handles and e-mail addresses (a trigram's length); shorter text
# matches whole values only.
MIN_FRAGMENT = 3

# The characters taken out of stored values and searched text: C0 controls (the separators among them) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_SQL = r"'[\x01-\x1f\x7f]'"


def clean_value_sql(value: str) -> str:
    """SQL: `value` (an SQL expression) without control characters."""
    return f"regexp_replace({value}, {_CONTROL_SQL}, '', 'g')"


def wrapped_value_sql(value: str) -> str:
    """SQL: one value of the search text (`value`, an SQL expression): cleaned and wrapped in separators, or ''
    when nothing is left of it."""
    return f"coalesce(E'\\x1f' || NULLIF({clean_value_sql(value)}, '') || E'\\x1f', '')"


def search_text_sql(*, names: list[str], handles: list[str], emails: list[str]) -> str:
    """SQL: a search text from SQL expressions, each one value already wrapped (`wrapped_value_sql`) or an
    aggregate of such values."""
    names_sql, handles_sql, emails_sql = (" || ".join(parts) if parts else "''" for parts in (names, handles, emails))
    return f"upper({names_sql} || E'\\x1e' || {handles_sql} || E'\\x1e' || {emails_sql})"


def _aggregate(table: str, value: str, condition: str = "") -> str:
    return (f"coalesce((SELECT string_agg({wrapped_value_sql(value)}, '' ORDER BY t.id) FROM {table} t "
            f"WHERE t.customer_id = c.id{condition}), '')")


# The search text of the customer row `c`, from its rows and its identities' and contact points'.
SEARCH_TEXT_SQL = search_text_sql(
    names=[wrapped_value_sql("c.display_name"), _aggregate("contacts_socialidentity", "t.display_name")],
    handles=[_aggregate("contacts_socialidentity", "ltrim(t.handle, '@')")],
    emails=[_aggregate("contacts_contactpoint", "t.normalized", " AND t.kind = 'email'")],
)


def customers_search_text_refresh(*, customer_ids: Collection[int]) -> int:
    """Recompute `Customer.search_text` of these customers from their rows: one statement, whatever their number,
    writing only the rows whose text changed. Returns how many changed."""
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE contacts_customer u SET search_text = v.search_text
                FROM (SELECT c.id, {SEARCH_TEXT_SQL} AS search_text FROM contacts_customer c
                      WHERE c.id = ANY(%s::bigint[])) v
                WHERE u.id = v.id AND u.search_text IS DISTINCT FROM v.search_text""",
            [ids],
        )
        return cursor.rowcount


def search_text_contains(needle: str) -> Q:
    """The customers with `needle` (case-insensitive, control characters taken out) inside one of their names,
    handles or e-mail addresses, whatever its length. For narrowing a search of identities down to their
    customers' trigram index first: a needle under `MIN_FRAGMENT` characters reads every customer."""
    return Q(Contains(F("search_text"), Upper(Value(_CONTROL.sub("", needle)))))


def _contains(expression: F | Func, needle: str) -> Contains:
    """`expression` holds `needle` (case-insensitive): inside a value, or as a whole value when `needle` is
    shorter than `MIN_FRAGMENT`. Upper-cased by PostgreSQL, as the stored text is."""
    pattern = needle if len(needle) >= MIN_FRAGMENT else f"{SEPARATOR}{needle}{SEPARATOR}"
    return Contains(expression, Upper(Value(pattern)))


def search_text_condition(text: str) -> Q:
    """The customers whose names, handles or e-mail addresses hold `text` (see `contacts.api.selectors.
    customers_search`), as a condition on `Customer.search_text`: one LIKE on the trigram index.

    A text starting with "@" is looked for as it is in names and addresses and without its "@"s in the handles
    (the second section): the LIKE on the whole string keeps the index usable, `split_part` narrows it to the
    handles. Control characters are taken out first; text with nothing else matches nothing.
    """
    needle = _CONTROL.sub("", text)
    if not needle:
        return Q(pk__in=[])
    condition = Q(_contains(F("search_text"), needle))
    handle = needle.lstrip("@") or needle
    if handle != needle:
        handles = Func(F("search_text"), Value(SECTION), Value(2), function="split_part", output_field=TextField())
        condition |= Q(_contains(F("search_text"), handle)) & Q(_contains(handles, handle))
    return condition
