"""Duplicate suggestions: Fellegi–Sunter scoring of customer pairs, explained field by field.

Three layers, the first two free of the database:

- **Normalisers** turn raw values into the forms that blocking and comparison use: e-mail (lower-cased; its
  local part), phone (E.164; its last 8 digits), handle (lower-cased, `@ . _ -` stripped), name tokens
  (case- and accent-folded) with their Kölner Phonetik codes, customer number, postal address.
- **Comparisons and the model.** Each comparison puts a pair of `Profile`s on one of a few ordered levels
  (e-mail: verified exact / exact / same local part / else). A level is worth log2(m/u) bits, where m is the
  share of true pairs and u the share of random pairs on that level; m is estimated without labels by EM
  (`model_estimate`), u from random pairs. Exact matches on frequent values (common names, a phone shared by a
  family) get u from the value's own frequency instead (term-frequency adjustment). `explain` lists the evidence
  of one pair; its bits add up to the pair's score. `may_auto_link` lets a pair be linked without a human only
  with a strong identifier (a verified e-mail or phone on both sides, the same customer number), agreeing names
  and no contrary evidence: names, handles, avatars and timing alone never qualify.
- **Candidate finder** (`duplicate_suggestions_for_customer`, `duplicate_suggestions_for_profile`): a handful of
  index probes on the blocking keys in one statement (blocks with more than `BLOCK_CAP` members are skipped; their
  sizes double as term frequencies), one statement to load the candidates, then scoring in Python.

The weights are a versioned, JSON-serialisable `Model`; every `Suggestion` carries the version it was scored with.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import math
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import phonenumbers
from django.conf import settings
from django.db import connection
from rapidfuzz import fuzz
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from . import copresence

# ---------------------------------------------------------------------------------------------------------------
# Normalisers
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_REGION = "DE"
# Mailboxes that several people read: never evidence that two customers are one person, never a blocking key.
ROLE_LOCAL_PARTS = frozenset({
    "admin", "buchhaltung", "contact", "office", "hello", "hallo", "help", "info", "kontakt", "mail", "noreply",
    "no-reply", "post", "sales", "service", "support", "team", "test", "vertrieb", "verwaltung", "webmaster",
})
# Titles and particles dropped from names before comparing (they say nothing about who someone is).
NAME_STOPWORDS = frozenset({"dr", "prof", "herr", "frau", "mr", "mrs", "ms", "miss", "dipl", "ing", "med"})
_FOLD = str.maketrans({"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})
_LETTERS = re.compile(r"[^\W\d_]+")
_NON_ALNUM = re.compile(r"[\W_]+")
_ADDRESS_WORDS = {"strasse": "str", "street": "st", "road": "rd", "place": "pl", "avenue": "ave", "weg": "weg"}


def fold(text: str) -> str:
    """Case- and accent-folded text: `Müller` -> `muller`, `Straße` -> `strasse`."""
    if text.isascii():  # nothing to decompose or translate; ASCII case-folds to lower case
        return text.lower()
    text = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def normalize_email(value: str) -> str:
    """Lower-cased, trimmed e-mail address, or "" when it is not one."""
    value = value.strip().lower().removeprefix("mailto:")
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or " " in value:
        return ""
    return value


def email_local_part(email: str) -> str:
    """The local part of a normalised address without a `+tag`: `anna.s+shop@x.de` -> `anna.s`."""
    return email.rpartition("@")[0].split("+", 1)[0]


def is_role_email(email: str) -> bool:
    """Whether the address is a shared role mailbox (info@, office@, ...)."""
    return email_local_part(email) in ROLE_LOCAL_PARTS


def normalize_phone(value: str, region: str = DEFAULT_REGION) -> str:
    """The number in E.164 (`+4930123456`), national numbers read in `region`; "" when it is not a valid number."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_last8(e164: str) -> str:
    """The last 8 digits: the same subscriber written with or without a wrong country or area prefix."""
    digits = "".join(ch for ch in e164 if ch.isdigit())
    return digits[-8:] if len(digits) >= 8 else ""


def canonical_handle(handle: str) -> str:
    """Lower-cased handle without `@ . _ -`; a Mastodon `@user@instance` keeps only the user part.

    Must stay equal to `HANDLE_KEY_SQL`, the expression the handle index is built on.
    """
    handle = handle.strip().lower().removeprefix("@")
    handle = handle.split("@", 1)[0]
    return handle.translate(str.maketrans("", "", "@._-"))


# The database side of `canonical_handle` (the expression of the index `identity_handle_key_idx`).
HANDLE_KEY_SQL = r"translate(split_part(ltrim(lower(btrim(handle)), '@'), '@', 1), '@._-', '')"


@functools.lru_cache(maxsize=65536)  # names repeat: ingest computes the keys of every new identity
def name_tokens(name: str) -> tuple[str, ...]:
    """Folded letter-only tokens of a name, titles dropped: `Dr. Jürgen Müller-Lüdenscheidt` ->
    (`jurgen`, `muller`, `ludenscheidt`)."""
    return tuple(t for t in _LETTERS.findall(fold(name)) if t not in NAME_STOPWORDS)


@functools.lru_cache(maxsize=65536)
def koelner_phonetik(word: str) -> str:
    """The Kölner Phonetik code of a word (Postel 1969): `Müller` and `Mueller` -> `657`, `Schmidt` -> `862`."""
    letters = [ch for ch in fold(word).upper() if "A" <= ch <= "Z"]
    digits: list[str] = []
    for i, ch in enumerate(letters):
        prev = letters[i - 1] if i else ""
        nxt = letters[i + 1] if i + 1 < len(letters) else ""
        if ch in "AEIJOUY":
            code = "0"
        elif ch == "H":
            code = ""
        elif ch == "B":
            code = "1"
        elif ch == "P":
            code = "3" if nxt == "H" else "1"
        elif ch in "DT":
            code = "8" if nxt and nxt in "CSZ" else "2"
        elif ch in "FVW":
            code = "3"
        elif ch in "GKQ":
            code = "4"
        elif ch == "C":
            if i == 0:
                code = "4" if nxt and nxt in "AHKLOQRUX" else "8"
            else:
                code = "4" if nxt and nxt in "AHKOQUX" and prev not in ("S", "Z") else "8"
        elif ch == "X":
            code = "8" if prev and prev in "CKQ" else "48"
        elif ch == "L":
            code = "5"
        elif ch in "MN":
            code = "6"
        elif ch == "R":
            code = "7"
        else:  # S, Z
            code = "8"
        digits.append(code)
    collapsed: list[str] = []
    for digit in "".join(digits):
        if not collapsed or collapsed[-1] != digit:
            collapsed.append(digit)
    return "".join(collapsed[:1] + [d for d in collapsed[1:] if d != "0"])


def normalize_customer_number(value: str) -> str:
    """Upper-cased, without spaces, dots and dashes: `ab-123 45` -> `AB12345`."""
    return re.sub(r"[\s.\-/]", "", value).upper()


def normalize_address(value: str) -> str:
    """Folded address words, punctuation dropped, a few street words abbreviated (`Hauptstraße` -> `hauptstr`)."""
    words = _NON_ALNUM.sub(" ", fold(value)).split()
    return " ".join(_ADDRESS_WORDS.get(w, w[:-7] + "str" if w.endswith("strasse") else w) for w in words)


# ---------------------------------------------------------------------------------------------------------------
# Profiles and blocking keys
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Name:
    """One name prepared for comparing: its tokens, their set, their Kölner codes, the tokens run together."""

    tokens: tuple[str, ...]
    token_set: frozenset[str]
    codes: frozenset[str]
    joined: str

    @classmethod
    def of(cls, tokens: tuple[str, ...]) -> _Name:
        return cls(tokens, frozenset(tokens), frozenset(koelner_phonetik(t) for t in tokens if len(t) > 2),
                   "".join(tokens))


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """What the scorer knows about one customer, or about a new identity not yet linked: normalised values only.

    Build it with `profile_build` from raw values; the fields after `birth_date` are derived once, here, because a
    profile is compared with hundreds of others.
    """

    customer_id: int | None = None
    names: tuple[tuple[str, ...], ...] = ()  # the tokens of each distinct name (customer and identity names)
    handles: frozenset[str] = frozenset()  # canonical handles of its social identities
    emails: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # normalised address -> verified
    phones: Mapping[str, bool] = dataclasses.field(default_factory=dict)  # E.164 -> verified
    customer_number: str = ""
    address: str = ""
    birth_date: dt.date | None = None
    prepared_names: tuple[_Name, ...] = dataclasses.field(init=False, repr=False, compare=False)
    spelled: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    label: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prepared = tuple(_Name.of(t) for t in self.names)
        # How a handle would spell each name: "annaschmidt", "schmidtanna".
        spelled = {n.joined for n in prepared} | {"".join(reversed(n.tokens)) for n in prepared}
        label = " | ".join(filter(None, [" / ".join(" ".join(t) for t in self.names), ", ".join(sorted(self.handles))]))
        object.__setattr__(self, "prepared_names", prepared)
        object.__setattr__(self, "spelled", frozenset(x for x in spelled if len(x) >= 5))
        object.__setattr__(self, "label", label)


def profile_build(*, customer_id: int | None = None, names: Iterable[str] = (), handles: Iterable[str] = (),
                  emails: Iterable[str | tuple[str, bool]] = (), phones: Iterable[str | tuple[str, bool]] = (),
                  customer_number: str = "", address: str = "", birth_date: dt.date | None = None,
                  region: str = DEFAULT_REGION) -> Profile:
    """A `Profile` from raw values; e-mails and phones are plain strings or `(value, verified)` pairs.

    Role mailboxes and values that do not parse are left out.
    """
    token_sets = []
    for name in names:
        tokens = name_tokens(name)
        if tokens and tokens not in token_sets:
            token_sets.append(tokens)
    email_map: dict[str, bool] = {}
    for item in emails:
        raw, verified = (item, False) if isinstance(item, str) else item
        email = normalize_email(raw)
        if email and not is_role_email(email):
            email_map[email] = email_map.get(email, False) or verified
    phone_map: dict[str, bool] = {}
    for item in phones:
        raw, verified = (item, False) if isinstance(item, str) else item
        phone = raw if raw.startswith("+") and raw[1:].isdigit() else normalize_phone(raw, region)
        if phone:
            phone_map[phone] = phone_map.get(phone, False) or verified
    return Profile(
        customer_id=customer_id, names=tuple(token_sets),
        handles=frozenset(h for h in map(canonical_handle, handles) if len(h) >= 3),
        emails=email_map, phones=phone_map, customer_number=normalize_customer_number(customer_number),
        address=normalize_address(address), birth_date=birth_date,
    )


def name_keys(names: Iterable[tuple[str, ...]]) -> list[str]:
    """Blocking keys of names, as stored in `Customer.dedupe_keys`: `n:<token>` and `k:<Kölner code>`.

    One-letter tokens (initials) and codes shorter than two digits would make huge blocks and are left out.
    """
    keys: dict[str, None] = {}
    for tokens in names:
        for token in tokens:
            if len(token) >= 2:
                keys[f"n:{token[:60]}"] = None
                code = koelner_phonetik(token)
                if len(code) >= 2:
                    keys[f"k:{code[:60]}"] = None
    return list(keys)


def blocking_keys(profile: Profile) -> list[str]:
    """Every blocking key of a profile: names (`n:`, `k:`), e-mail (`e:`) and its local part (`l:`), phone (`p:`)
    and its last 8 digits (`t:`), handle (`h:`), customer number (`c:`)."""
    keys = name_keys(profile.names)
    for email in profile.emails:
        keys.append(f"e:{email}")
        local = email_local_part(email)
        if len(local) >= 3:
            keys.append(f"l:{local}")
    for phone in profile.phones:
        keys += [f"p:{phone}", f"t:{phone_last8(phone)}"]
    keys += [f"h:{h}" for h in sorted(profile.handles)]
    if profile.customer_number:
        keys.append(f"c:{profile.customer_number}")
    return list(dict.fromkeys(keys))


@dataclasses.dataclass(frozen=True, slots=True)
class TermFrequencies:
    """How many customers other than the subject hold each blocking key (`n:muller`, `p:+4930...`), out of `total`
    customers."""

    total: int
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def share(self, key: str, *, shared_only: bool = False) -> float | None:
        """The share of customers holding `key`, or None when its count is unknown.

        `shared_only`: None as well when only the candidate holds it. An e-mail, phone or handle found on just the
        two customers being compared is unique; one sighting says nothing about how often such values coincide.
        """
        count = self.counts.get(key)
        if not count or self.total <= 0 or (shared_only and count <= 1):
            return None
        return min(1.0, count / self.total)


NO_FREQUENCIES = TermFrequencies(total=0)

# ---------------------------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ComparisonSpec:
    """One comparison: its levels from best to worst, prior (m, u) for each, and which levels count against."""

    field: str
    levels: tuple[str, ...]
    prior: tuple[tuple[float, float], ...]  # (m, u) per level, used until EM has seen the level
    contrary: frozenset[str] = frozenset()  # levels that forbid auto-linking
    learned: bool = True  # False: the prior is fixed (no unlabelled data says anything about it)
    max_bits: dict[str, float] = dataclasses.field(default_factory=dict)  # a level's weight never exceeds this


COMPARISONS: tuple[ComparisonSpec, ...] = (
    ComparisonSpec("email", ("verified_exact", "exact", "local_part", "else"),
                   ((0.2, 1e-7), (0.45, 1e-6), (0.05, 1e-4), (0.3, 0.9999))),
    ComparisonSpec("phone", ("verified_exact", "exact", "last8", "else"),
                   ((0.2, 1e-7), (0.45, 2e-6), (0.05, 1e-5), (0.3, 0.99999))),
    # Handle and name together: a handle often spells the name, so the two are one piece of evidence.
    ComparisonSpec("name_handle",
                   ("handle_and_name", "name_exact", "handle_exact", "name_fuzzy", "name_close", "handle_similar",
                    "name_partial", "else"),
                   ((0.05, 1e-8), (0.5, 1e-5), (0.03, 1e-6), (0.15, 1e-4), (0.1, 1e-3), (0.02, 1e-4),
                    (0.1, 0.02), (0.05, 0.98)),
                   contrary=frozenset({"else"})),
    ComparisonSpec("customer_number", ("same", "near", "conflicting"), ((0.85, 1e-6), (0.05, 1e-4), (0.1, 0.9999)),
                   contrary=frozenset({"near", "conflicting"}), max_bits={"conflicting": -10.0}),
    ComparisonSpec("address", ("exact", "close", "similar", "else"),
                   ((0.5, 1e-5), (0.25, 1e-4), (0.1, 1e-2), (0.15, 0.99))),
    ComparisonSpec("birth_date", ("exact", "one_component", "else"), ((0.85, 5e-5), (0.1, 1.5e-3), (0.05, 0.998)),
                   contrary=frozenset({"else"})),
    # Two identities of the pair active in the same group thread at once: the same person rarely talks to itself.
    ComparisonSpec("group", ("co_present",), ((0.0002, 0.05),), contrary=frozenset({"co_present"}), learned=False),
)
SPECS = {spec.field: spec for spec in COMPARISONS}
# The only evidence that may carry an auto-link. Names, handles, avatars and timing are never on this list.
STRONG_IDENTIFIERS = frozenset({("email", "verified_exact"), ("phone", "verified_exact"),
                                ("customer_number", "same")})
# Name levels that count as "the names match" for an auto-link.
AGREEING_NAMES = frozenset({"handle_and_name", "name_exact", "name_fuzzy"})
# A verified e-mail or phone held by more customers than this is a family's or an office's, not a person's.
MAX_SHARED_VERIFIED = 2
# How far a term-frequency adjustment may move a level's weight (bits): rare values gain a little, common lose more.
TF_MAX_GAIN = 4.0
TF_MAX_LOSS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The level a comparison reached (None: one side lacks the value), the values compared, and the
    frequency-based u of the matched value where it is known."""

    level: str | None
    left: str = ""
    right: str = ""
    u_value: float | None = None
    tf_down_only: bool = False
    note: str = ""


def _shared_value_outcome(field: str, a: Mapping[str, bool], b: Mapping[str, bool], tf: TermFrequencies,
                          prefix: str) -> Outcome | None:
    """Level of the best value two contact-point maps share (verified on both sides or not)."""
    common = a.keys() & b.keys()
    if not common:
        return None
    best = max(common, key=lambda v: (a[v] and b[v], -(tf.counts.get(prefix + v) or 0)))
    holders = (tf.counts.get(prefix + best) or 1) + 1  # the subject and the others holding it
    level, note = ("verified_exact" if a[best] and b[best] else "exact"), ""
    if level == "verified_exact" and holders > MAX_SHARED_VERIFIED:
        level, note = "exact", f"verified, but held by {holders} customers"
    return Outcome(level, best, best, tf.share(prefix + best, shared_only=True), tf_down_only=True, note=note)


def compare_email(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    if not a.emails or not b.emails:
        return Outcome(None, ", ".join(a.emails), ", ".join(b.emails))
    shared = _shared_value_outcome("email", a.emails, b.emails, tf, "e:")
    if shared:
        return shared
    left_locals = {email_local_part(e): e for e in a.emails}
    for email in b.emails:
        local = email_local_part(email)
        if len(local) >= 3 and local in left_locals:
            return Outcome("local_part", left_locals[local], email, tf.share(f"l:{local}", shared_only=True),
                           tf_down_only=True)
    return Outcome("else", ", ".join(sorted(a.emails)), ", ".join(sorted(b.emails)))


def compare_phone(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    if not a.phones or not b.phones:
        return Outcome(None, ", ".join(a.phones), ", ".join(b.phones))
    shared = _shared_value_outcome("phone", a.phones, b.phones, tf, "p:")
    if shared:
        return shared
    left_tails = {phone_last8(p): p for p in a.phones}
    for phone in b.phones:
        tail = phone_last8(phone)
        if tail and tail in left_tails:
            return Outcome("last8", left_tails[tail], phone, tf.share(f"t:{tail}", shared_only=True),
                           tf_down_only=True)
    return Outcome("else", ", ".join(sorted(a.phones)), ", ".join(sorted(b.phones)))


def _token_similarity(a: tuple[str, ...], b: tuple[str, ...]) -> list[float]:
    """Jaro-Winkler similarity of the tokens of the shorter name to their best partners in the other, each
    token used once (greedy on the best pairs first)."""
    if len(a) > len(b):
        a, b = b, a
    pairs = sorted(((JaroWinkler.similarity(x, y), i, j) for i, x in enumerate(a) for j, y in enumerate(b)),
                   reverse=True)
    used_a: set[int] = set()
    used_b: set[int] = set()
    sims: list[float] = []
    for sim, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            sims.append(sim)
    return sims


_NAME_ORDER = {"name_exact": 0, "name_fuzzy": 1, "name_close": 2, "name_partial": 3, "else": 4}


def name_level(a: tuple[str, ...], b: tuple[str, ...]) -> str:
    """`name_exact` (same tokens, at least two), `name_fuzzy` (every token within Jaro-Winkler 0.92, or one name
    contained in the other), `name_close` (one token exact and the rest within 0.75, or all within 0.85),
    `name_partial` (one token or its Kölner code shared), `else`. A name split or run together counts as fuzzy."""
    return _name_level(_Name.of(a), _Name.of(b))


def _name_level(a: _Name, b: _Name) -> str:
    set_a, set_b = a.token_set, b.token_set
    shortest = min(len(set_a), len(set_b))
    if set_a == set_b and shortest >= 2:
        return "name_exact"
    if shortest >= 2 and (set_a <= set_b or set_b <= set_a):
        return "name_fuzzy"
    if len(a.tokens) != len(b.tokens) and JaroWinkler.similarity(a.joined, b.joined) >= 0.95:
        return "name_fuzzy"  # a name split or run together: "black well" and "blackwell"
    shared = set_a & set_b
    if shortest >= 2:
        sims = _token_similarity(a.tokens, b.tokens)
        if len(a.tokens) == len(b.tokens) and min(sims) >= 0.92:
            return "name_fuzzy"
        if (shared and min(sims) >= 0.75) or min(sims) >= 0.85:
            return "name_close"
    if shared or a.codes & b.codes:
        return "name_partial"
    return "else"


def _name_share(tokens: Iterable[str], tf: TermFrequencies) -> float | None:
    """The share of customers expected to carry all these tokens (independence assumed), if all are counted."""
    share = 1.0
    for token in tokens:
        token_share = tf.share(f"n:{token}")
        if token_share is None:
            return None
        share *= token_share
    return share


def compare_name_handle(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    best: tuple[str, _Name, _Name] | None = None
    for x in a.prepared_names:
        for y in b.prepared_names:
            level = _name_level(x, y)
            if best is None or _NAME_ORDER[level] < _NAME_ORDER[best[0]]:
                best = (level, x, y)
        if best is not None and best[0] == "name_exact":
            break
    shared_handles = a.handles & b.handles
    handle = "exact" if shared_handles else None
    if handle is None and a.handles and b.handles:
        similar = max(JaroWinkler.similarity(x, y) for x in a.handles for y in b.handles) >= 0.92
        handle = "similar" if similar else "different"
    if handle in (None, "different") and (
            # A handle that spells the other side's name ("annaschmidt" and "Anna Schmidt") looks alike too.
            any(JaroWinkler.similarity(h, x) >= 0.92 for h in b.handles for x in a.spelled)
            or any(JaroWinkler.similarity(h, x) >= 0.92 for h in a.handles for x in b.spelled)):
        handle = "similar"
    left, right = a.label, b.label
    name = best[0] if best else None
    if handle == "exact" and name in ("name_exact", "name_fuzzy"):
        return Outcome("handle_and_name", left, right, tf.share(f"h:{min(shared_handles)}", shared_only=True),
                       tf_down_only=True)
    if name == "name_exact":
        assert best is not None
        return Outcome("name_exact", left, right, _name_share(best[1].tokens, tf))
    if handle == "exact":
        return Outcome("handle_exact", left, right, tf.share(f"h:{min(shared_handles)}", shared_only=True),
                       tf_down_only=True)
    if name in ("name_fuzzy", "name_close"):
        return Outcome(name, left, right)
    if handle == "similar":
        return Outcome("handle_similar", left, right)
    if name == "name_partial":
        assert best is not None
        shared = best[1].token_set & best[2].token_set
        return Outcome("name_partial", left, right, _name_share(shared, tf) if shared else None, tf_down_only=True)
    return Outcome(name, left, right)  # "else", or None when a side has neither name nor handle


def compare_customer_number(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    x, y = a.customer_number, b.customer_number
    if not x or not y:
        return Outcome(None, x, y)
    if x == y:
        return Outcome("same", x, y)
    # One typo (a digit changed, added, dropped or two swapped) in a long number, as when it is typed by hand.
    if min(len(x), len(y)) >= 6 and DamerauLevenshtein.distance(x, y, score_cutoff=1) <= 1:
        return Outcome("near", x, y)
    return Outcome("conflicting", x, y)


def compare_address(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    x, y = a.address, b.address
    if not x or not y:
        return Outcome(None, x, y)
    if x == y:
        return Outcome("exact", x, y)
    if fuzz.token_sort_ratio(x, y) >= 90 or fuzz.token_set_ratio(x, y) >= 95:
        return Outcome("close", x, y)
    if fuzz.token_set_ratio(x, y) >= 70:
        return Outcome("similar", x, y)
    return Outcome("else", x, y)


def compare_birth_date(a: Profile, b: Profile, tf: TermFrequencies) -> Outcome:
    x, y = a.birth_date, b.birth_date
    if x is None or y is None:
        return Outcome(None, str(x or ""), str(y or ""))
    if x == y:
        return Outcome("exact", str(x), str(y))
    differing = (x.year != y.year) + (x.month != y.month) + (x.day != y.day)
    swapped = x.year == y.year and x.month == y.day and x.day == y.month
    return Outcome("one_component" if differing == 1 or swapped else "else", str(x), str(y))


_COMPARE = {
    "email": compare_email, "phone": compare_phone, "name_handle": compare_name_handle,
    "customer_number": compare_customer_number, "address": compare_address, "birth_date": compare_birth_date,
}
LEARNED_FIELDS = tuple(spec.field for spec in COMPARISONS if spec.learned)


def compare(a: Profile, b: Profile, tf: TermFrequencies = NO_FREQUENCIES, *,
            co_present: bool = False) -> dict[str, Outcome]:
    """The outcome of every comparison for one pair, keyed by field."""
    outcomes = {field: fn(a, b, tf) for field, fn in _COMPARE.items()}
    outcomes["group"] = Outcome("co_present" if co_present else None)
    return outcomes


def comparison_vector(a: Profile, b: Profile) -> tuple[str | None, ...]:
    """The levels of the learned comparisons (None where a side lacks the value): what EM works on."""
    return tuple(_COMPARE[field](a, b, NO_FREQUENCIES).level for field in LEARNED_FIELDS)


# ---------------------------------------------------------------------------------------------------------------
# The model: weights, thresholds, versions
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Model:
    """Fellegi–Sunter weights: (m, u) of every level of every comparison, the prior match rate among blocked pairs,
    and the two thresholds in bits. `version` is derived from the content, so equal weights have equal versions."""

    weights: Mapping[str, Mapping[str, tuple[float, float]]]
    prior: float = 0.01
    suggest: float = 8.0
    auto_link: float = 24.0
    # The number of customers the weights and bars were set for. In a database k times larger a random customer is
    # k times less likely to be the subject, so both bars rise by log2(k) bits (`bars`): that keeps the share of
    # wrong suggestions level as the database grows, where a fixed bar would drown reviewers in namesakes.
    population: int = 5_000
    trained: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def version(self) -> str:
        body = json.dumps({"weights": self.weights, "prior": self.prior, "suggest": self.suggest,
                           "auto_link": self.auto_link, "population": self.population}, sort_keys=True)
        return "fs1-" + hashlib.sha256(body.encode()).hexdigest()[:12]

    def shift(self, total: int) -> float:
        """How many bits both bars rise in a database of `total` customers (never below the model's own bars)."""
        return max(0.0, math.log2(total / self.population)) if total > 0 else 0.0

    def bars(self, total: int) -> tuple[float, float]:
        """The suggest and auto-link bars in a database of `total` customers."""
        shift = self.shift(total)
        return self.suggest + shift, self.auto_link + shift

    def bits(self, field: str, level: str, u_value: float | None = None, *, tf_down_only: bool = False) -> float:
        """log2(m/u) of a level; with `u_value`, u is the matched value's own frequency (bounded adjustment)."""
        m, u = self.weights[field][level]
        bits = math.log2(m / u)
        if u_value is not None and u_value > 0:
            adjust = max(-TF_MAX_LOSS, min(TF_MAX_GAIN, math.log2(u / u_value)))
            bits += min(adjust, 0.0) if tf_down_only else adjust
        cap = SPECS[field].max_bits.get(level)
        return min(bits, cap) if cap is not None else bits

    def probability(self, score: float, total: int = 0) -> float:
        """The posterior match probability of a blocked pair with this score, in a database of `total` customers."""
        log_odds = score + math.log2(self.prior / (1 - self.prior)) - self.shift(total)
        return 1 / (1 + 2 ** -max(-60.0, min(60.0, log_odds)))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "weights": {f: {lv: list(mu) for lv, mu in levels.items()}
                                                     for f, levels in self.weights.items()},
                "prior": self.prior, "suggest": self.suggest, "auto_link": self.auto_link,
                "population": self.population, "trained": dict(self.trained)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Model:
        weights = {f: {lv: (float(mu[0]), float(mu[1])) for lv, mu in levels.items()}
                   for f, levels in data["weights"].items()}
        model = cls(weights=weights, prior=data["prior"], suggest=data["suggest"], auto_link=data["auto_link"],
                    population=data["population"], trained=data.get("trained", {}))
        if "version" in data and data["version"] != model.version:
            raise ValueError(f"model version {data['version']} does not match its weights ({model.version})")
        return model

    @classmethod
    def from_json(cls, text: str) -> Model:
        return cls.from_dict(json.loads(text))


# The priors of every comparison, until a model estimated on the deployment's own customers replaces it.
DEFAULT_MODEL = Model(weights={spec.field: dict(zip(spec.levels, spec.prior, strict=True)) for spec in COMPARISONS},
                      trained={"source": "priors"})


@dataclasses.dataclass(frozen=True, slots=True)
class FieldEvidence:
    """One comparison's contribution to a pair's score: its level, its weight in bits, and the two values."""

    field: str
    level: str  # "missing" when a side lacks the value (0 bits)
    bits: float
    left: str
    right: str
    note: str = ""

    @property
    def contrary(self) -> bool:
        """Whether this evidence speaks against the pair being one person strongly enough to forbid auto-linking."""
        spec = SPECS.get(self.field)
        return spec is not None and self.level in spec.contrary

    @property
    def strong(self) -> bool:
        return (self.field, self.level) in STRONG_IDENTIFIERS


def explain(a: Profile, b: Profile, *, model: Model = DEFAULT_MODEL, tf: TermFrequencies = NO_FREQUENCIES,
            co_present: bool = False) -> list[FieldEvidence]:
    """The evidence for and against `a` and `b` being one person, field by field (missing values are 0 bits)."""
    evidence = []
    for field, outcome in compare(a, b, tf, co_present=co_present).items():
        if outcome.level is None:
            if field != "group":
                evidence.append(FieldEvidence(field, "missing", 0.0, outcome.left, outcome.right))
            continue
        bits = model.bits(field, outcome.level, outcome.u_value, tf_down_only=outcome.tf_down_only)
        evidence.append(FieldEvidence(field, outcome.level, round(bits, 3), outcome.left, outcome.right, outcome.note))
    return evidence


def score(evidence: Iterable[FieldEvidence]) -> float:
    """A pair's match weight: the sum of its evidence in bits."""
    return sum(e.bits for e in evidence)


def may_auto_link(evidence: Sequence[FieldEvidence], *, threshold: float = DEFAULT_MODEL.auto_link) -> bool:
    """Whether this evidence would allow linking without a human (the deployment must also switch it on).

    All of: a score of at least `threshold`; a strong identifier (a verified e-mail or phone on both sides, or the
    same customer number); names that agree; nothing contrary (other customer number, other birth date, disagreeing
    names, both active in one group thread). Names, handles, avatars and timing are never strong identifiers, so
    they alone can never qualify, however many bits they add up to.
    """
    if not any(e.strong for e in evidence):
        return False
    if any(e.contrary for e in evidence):
        return False
    if not any(e.field == "name_handle" and e.level in AGREEING_NAMES for e in evidence):
        return False
    return score(evidence) >= threshold


def auto_link_enabled() -> bool:
    """The per-deployment switch `DEDUPE_AUTO_LINK` (off unless set)."""
    return bool(getattr(settings, "DEDUPE_AUTO_LINK", False))


# ---------------------------------------------------------------------------------------------------------------
# Estimating the weights without labels
# ---------------------------------------------------------------------------------------------------------------

Vector = tuple[str | None, ...]


def random_pairs(profiles: Sequence[Profile], n: int, *, seed: int = 0) -> Iterable[tuple[Profile, Profile]]:
    """`n` pairs of distinct profiles drawn at random (nearly all of them two different people)."""
    rnd = random.Random(seed)
    for _ in range(n):
        i, j = rnd.sample(range(len(profiles)), 2)
        yield profiles[i], profiles[j]


def _level_counts(vectors: Mapping[Vector, float]) -> list[Counter[str]]:
    counts: list[Counter[str]] = [Counter() for _ in LEARNED_FIELDS]
    for vector, weight in vectors.items():
        for k, level in enumerate(vector):
            if level is not None:
                counts[k][level] += weight
    return counts


def _fit(counts: Counter[str], spec: ComparisonSpec, prior_index: int, smoothing: float = 0.5) -> dict[str, float]:
    """Shares of each level from weighted counts; levels never seen keep their prior share (the rest is scaled into
    what remains), so a comparison absent from the training data keeps its prior weights."""
    seen = [lv for lv in spec.levels if counts[lv] > 0]
    unseen_mass = sum(p[prior_index] for lv, p in zip(spec.levels, spec.prior, strict=True) if lv not in seen)
    total = sum(counts[lv] + smoothing for lv in seen)
    shares = {lv: p[prior_index] for lv, p in zip(spec.levels, spec.prior, strict=True) if lv not in seen}
    for lv in seen:
        shares[lv] = (counts[lv] + smoothing) / total * (1 - unseen_mass)
    return shares


@dataclasses.dataclass(frozen=True, slots=True)
class EstimateReport:
    """How an EM run went."""

    iterations: int
    converged: bool
    pairs: int
    random_pairs: int
    prior: float


def model_estimate(candidate_vectors: Iterable[Vector], random_vectors: Iterable[Vector], *, population: int,
                   base: Model = DEFAULT_MODEL, max_iterations: int = 200,
                   tolerance: float = 1e-6) -> tuple[Model, EstimateReport]:
    """Estimate u from random pairs and m (and the prior match rate) by EM over the blocked candidate pairs.

    No labels: EM fits a two-class mixture (matches, non-matches) under conditional independence of the
    comparisons, with u held at its random-pair estimate. `population` is the number of customers the pairs came
    from. Thresholds and the fixed comparisons come from `base`.
    """
    candidates: Counter[Vector] = Counter(candidate_vectors)
    randoms: Counter[Vector] = Counter(random_vectors)
    u = [_fit(c, SPECS[f], 1) for f, c in zip(LEARNED_FIELDS, _level_counts(randoms), strict=True)]
    m = [{lv: base.weights[f][lv][0] for lv in SPECS[f].levels} for f in LEARNED_FIELDS]
    prior = base.prior
    items = list(candidates.items())
    total = sum(candidates.values())
    iterations, converged = 0, False
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (the count is reported)
        posteriors: dict[Vector, float] = {}
        for vector, count in items:
            log_m = math.log(prior)
            log_u = math.log(1 - prior)
            for k, level in enumerate(vector):
                if level is not None:
                    log_m += math.log(m[k][level])
                    log_u += math.log(u[k][level])
            posteriors[vector] = count / (1 + math.exp(max(-700.0, min(700.0, log_u - log_m))))
        new_prior = min(0.999, max(1e-6, sum(posteriors.values()) / total))
        new_m = [_fit(c, SPECS[f], 0) for f, c in zip(LEARNED_FIELDS, _level_counts(posteriors), strict=True)]
        change = max([abs(new_prior - prior)] + [abs(new_m[k][lv] - m[k][lv]) for k in range(len(m)) for lv in m[k]])
        m, prior = new_m, new_prior
        if change < tolerance:
            converged = True
            break
    weights = {f: dict(base.weights[f]) for f in base.weights}
    for k, field in enumerate(LEARNED_FIELDS):
        weights[field] = {lv: (m[k][lv], u[k][lv]) for lv in SPECS[field].levels}
    report = EstimateReport(iterations, converged, total, sum(randoms.values()), prior)
    trained = {"source": "em", "pairs": total, "random_pairs": report.random_pairs, "iterations": iterations,
               "converged": converged}
    model = Model(weights=weights, prior=prior, suggest=base.suggest, auto_link=base.auto_link, population=population,
                  trained=trained)
    return model, report


# ---------------------------------------------------------------------------------------------------------------
# Candidate finder (PostgreSQL)
# ---------------------------------------------------------------------------------------------------------------

# A blocking key held by more customers than this says too little to be worth scoring its members.
BLOCK_CAP = 500
# At most this many candidates are scored per subject, those sharing the rarest keys first.
MAX_CANDIDATES = 300

# One probe per kind of key: each returns the ids of customers holding the key (%s), served by an index.
_PROBES = {
    "n": "SELECT id FROM contacts_customer WHERE dedupe_keys @> ARRAY[%s]::varchar(64)[]",
    "c": "SELECT id FROM contacts_customer WHERE customer_number = %s AND NOT (customer_number = '')",
    "e": "SELECT customer_id FROM contacts_contactpoint WHERE kind = 'email' AND normalized = %s",
    "l": "SELECT customer_id FROM contacts_contactpoint WHERE kind = 'email' "
         "AND split_part(split_part(normalized, '@', 1), '+', 1) = %s",
    "p": "SELECT customer_id FROM contacts_contactpoint WHERE kind = 'phone' AND normalized = %s",
    "t": "SELECT customer_id FROM contacts_contactpoint WHERE kind = 'phone' AND right(normalized, 8) = %s",
    "h": f"SELECT customer_id FROM contacts_socialidentity WHERE {HANDLE_KEY_SQL} = %s AND NOT (handle = '')",
}
_PROBES["k"] = _PROBES["n"]
_PROFILE_SQL = """
    SELECT c.id, c.display_name, c.postal_address, c.birth_date, c.customer_number,
           (SELECT json_agg(json_build_array(cp.kind, cp.normalized, cp.verified_at IS NOT NULL))
              FROM contacts_contactpoint cp WHERE cp.customer_id = c.id),
           (SELECT json_agg(json_build_array(si.handle, si.display_name))
              FROM contacts_socialidentity si WHERE si.customer_id = c.id)
    FROM contacts_customer c
    WHERE c.id = ANY(%s) AND c.merged_into_id IS NULL
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Blocks:
    """What the probes found: the members of every block that was small enough, and every block's size."""

    members: Mapping[str, tuple[int, ...]]
    frequencies: TermFrequencies
    skipped: tuple[str, ...]

    def candidates(self, *, exclude: Collection[int] = (), limit: int = MAX_CANDIDATES) -> list[int]:
        """Candidate ids, those sharing the rarest keys (summed inverse block sizes) first."""
        rank: Counter[int] = Counter()
        for ids in self.members.values():
            weight = 1.0 / len(ids)
            for customer_id in ids:
                rank[customer_id] += weight
        for customer_id in exclude:
            rank.pop(customer_id, None)
        return [customer_id for customer_id, _ in rank.most_common(limit)]


def blocks_probe(profile: Profile, *, cap: int = BLOCK_CAP) -> Blocks:
    """Probe every blocking key of `profile` in one statement (each probe reads at most `cap` + 1 index entries).

    The subject itself is left out of the blocks' members and counts.
    """
    keys = blocking_keys(profile)
    parts = ["(SELECT '', ARRAY[(SELECT CASE WHEN reltuples > 0 THEN reltuples::bigint "
             "ELSE (SELECT count(*) FROM contacts_customer) END FROM pg_class "
             "WHERE oid = 'contacts_customer'::regclass)])"]
    params: list[Any] = []
    for key in keys:
        parts.append(f"(SELECT %s, ARRAY(SELECT DISTINCT * FROM ({_PROBES[key[0]]} LIMIT {cap + 1}) s))")
        params += [key, key if key[0] in "nk" else key[2:]]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        rows = cursor.fetchall()
    total = 0
    members: dict[str, tuple[int, ...]] = {}
    counts: dict[str, int] = {}
    skipped = []
    for key, ids in rows:
        if key == "":  # the estimated number of customers
            total = int(ids[0] or 0)
            continue
        others = tuple(i for i in ids if i != profile.customer_id)
        counts[key] = len(others)
        if len(ids) > cap:
            skipped.append(key)
        elif others:
            members[key] = others
    return Blocks(members, TermFrequencies(total=max(total, max(counts.values(), default=0)), counts=counts),
                  tuple(skipped))


def profiles_fetch(customer_ids: Collection[int]) -> dict[int, Profile]:
    """Profiles of these live customers (tombstones are left out), in one statement."""
    if not customer_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_PROFILE_SQL, [list(customer_ids)])
        rows = cursor.fetchall()
    profiles = {}
    for customer_id, name, address, birth_date, number, points, identities in rows:
        points = points or []
        identities = identities or []
        profiles[customer_id] = profile_build(
            customer_id=customer_id, names=[name, *(i[1] for i in identities if i[1])],
            handles=[i[0] for i in identities if i[0]],
            emails=[(p[1], p[2]) for p in points if p[0] == "email"],
            phones=[(p[1], p[2]) for p in points if p[0] == "phone"],
            customer_number=number, address=address, birth_date=birth_date,
        )
    return profiles


@dataclasses.dataclass(frozen=True, slots=True)
class Suggestion:
    """A customer that may be the same person as the subject, with the evidence and the model version behind it."""

    customer_id: int
    score: float
    probability: float
    decision: str  # "auto_link", "suggest" or "none" (only when asked for scores below the suggest bar)
    evidence: tuple[FieldEvidence, ...]
    model_version: str


def _decision(evidence: Sequence[FieldEvidence], total: float, bars: tuple[float, float]) -> str:
    if may_auto_link(evidence, threshold=bars[1]):
        return "auto_link"
    return "suggest" if total >= bars[0] else "none"


def suggestions_rank(subject: Profile, candidates: Iterable[Profile], *, model: Model = DEFAULT_MODEL,
                     tf: TermFrequencies = NO_FREQUENCIES, co_present: Collection[int] = (),
                     min_score: float | None = None, auto_link: bool | None = None) -> list[Suggestion]:
    """Score candidates against a subject; those at or above `min_score` (default: the suggest bar), best first.

    The bars are the model's, raised for a database of `tf.total` customers (`Model.bars`). At most one suggestion
    is marked `auto_link`, and only when auto-linking is on and exactly one candidate qualifies: two customers
    sharing a strong identifier mean it is no longer one person's.
    """
    bars = model.bars(tf.total)
    bar = bars[0] if min_score is None else min_score
    version = model.version
    allow = auto_link_enabled() if auto_link is None else auto_link
    found = []
    for candidate in candidates:
        if candidate.customer_id is None or candidate.customer_id == subject.customer_id:
            continue
        evidence = explain(subject, candidate, model=model, tf=tf,
                           co_present=candidate.customer_id in co_present)
        total = score(evidence)
        if total < bar:
            continue
        found.append(Suggestion(candidate.customer_id, round(total, 3), model.probability(total, tf.total),
                                _decision(evidence, total, bars), tuple(evidence), version))
    found.sort(key=lambda s: (-s.score, s.customer_id))
    linkable = [s for s in found if s.decision == "auto_link"]
    if not allow or len(linkable) != 1:
        found = [dataclasses.replace(s, decision="suggest") if s.decision == "auto_link" else s for s in found]
    return found


def duplicate_suggestions_for_profile(profile: Profile, *, model: Model = DEFAULT_MODEL,
                                      co_present: Collection[int] | None = (), min_score: float | None = None,
                                      auto_link: bool | None = None, limit: int = 20,
                                      exclude: Collection[int] = ()) -> list[Suggestion]:
    """Ranked, explained duplicate suggestions for a customer or a new identity's data: two statements.

    `co_present` are customers seen in a group thread with the subject; they count against. The caller may know
    them (the drain asks `contacts.copresence` once per batch); with None the finder asks the registered
    co-presence functions itself about the subject and its candidates (one more statement, and only for a stored
    customer with candidates). `exclude` are customers never to be suggested (cannot-link constraints): they are
    left out before ranking, so they neither appear nor stand in the way of an auto-link.
    """
    blocks = blocks_probe(profile)
    excluded = [*exclude, profile.customer_id] if profile.customer_id is not None else list(exclude)
    candidates = profiles_fetch(blocks.candidates(exclude=excluded))
    if co_present is None:
        co_present = ()
        if profile.customer_id is not None and candidates:
            pairs = copresence.copresent_pairs([profile.customer_id, *candidates])
            co_present = copresence.partners(pairs, profile.customer_id)
    return suggestions_rank(profile, candidates.values(), model=model, tf=blocks.frequencies, co_present=co_present,
                            min_score=min_score, auto_link=auto_link)[:limit]


def duplicate_suggestions_for_customer(customer_id: int, **kwargs: Any) -> list[Suggestion]:
    """Duplicate suggestions for a stored customer (three statements; four with `co_present=None`, which looks
    up group co-presence through `contacts.copresence`); [] for a tombstone or an unknown id."""
    subject = profiles_fetch([customer_id]).get(customer_id)
    if subject is None:
        return []
    return duplicate_suggestions_for_profile(subject, **kwargs)


def customer_dedupe_keys_refresh(*, customer_ids: Collection[int]) -> int:
    """Recompute `Customer.dedupe_keys` (name tokens and their Kölner codes, from the customer's name and its
    identities' names) for these customers: two statements, whatever their number. Returns the rows changed."""
    if not customer_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT c.id, c.display_name, (SELECT array_agg(si.display_name) FROM contacts_socialidentity si
                                             WHERE si.customer_id = c.id AND si.display_name <> '')
               FROM contacts_customer c WHERE c.id = ANY(%s)""",
            [list(customer_ids)],
        )
        ids, keys = [], []
        for customer_id, name, identity_names in cursor.fetchall():
            tokens = [name_tokens(n) for n in [name, *(identity_names or [])]]
            ids.append(customer_id)
            keys.append("\x1f".join(name_keys(tokens)))
        cursor.execute(
            """UPDATE contacts_customer c SET dedupe_keys = v.keys
               FROM (SELECT id, coalesce(string_to_array(NULLIF(keys, ''), E'\\x1f'), '{}')::varchar(64)[] AS keys
                     FROM unnest(%s::bigint[], %s::text[]) AS u(id, keys)) v
               WHERE c.id = v.id AND c.dedupe_keys IS DISTINCT FROM v.keys""",
            [ids, keys],
        )
        return cursor.rowcount
