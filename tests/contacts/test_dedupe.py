import datetime as dt
import random

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from contacts import dedupe
from contacts.dedupe import FieldEvidence, profile_build
from contacts.models import ContactPoint, Customer, SocialIdentity

# ---------------------------------------------------------------------------------------------------------------
# Normalisers
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("word", "code"), [
    # The examples of the method's description (Postel 1969, and the German Wikipedia article).
    ("Müller-Lüdenscheidt", "65752682"), ("Breschnew", "17863"), ("Wikipedia", "3412"),
    ("Meyer", "67"), ("Maier", "67"), ("Mayr", "67"), ("Schmidt", "862"), ("Schmitt", "862"),
    ("Müller", "657"), ("Mueller", "657"), ("Christoph", "47823"), ("Xaver", "4837"), ("Anna", "06"),
    ("Czerny", "876"), ("Philipp", "351"), ("", ""),
])
def test_koelner_phonetik_known_values(word, code):
    assert dedupe.koelner_phonetik(word) == code


@pytest.mark.parametrize(("raw", "normalized"), [
    (" Anna.Schmidt@Example.DE ", "anna.schmidt@example.de"),
    ("mailto:info@firma.de", "info@firma.de"),
    ("not an address", ""),
    ("anna@localhost", ""),
])
def test_normalize_email(raw, normalized):
    assert dedupe.normalize_email(raw) == normalized


def test_email_local_part_drops_the_tag_and_role_mailboxes_are_recognised():
    assert dedupe.email_local_part("anna.s+shop@x.de") == "anna.s"
    assert dedupe.is_role_email("info@firma.de")
    assert not dedupe.is_role_email("anna@firma.de")


@pytest.mark.parametrize(("raw", "e164"), [
    ("030 1234567", "+49301234567"),
    ("+49 (0)171 2345678", "+491712345678"),
    ("0049 171 2345678", "+491712345678"),
    ("+43 664 1234567", "+436641234567"),
    ("12", ""),
    ("call me", ""),
])
def test_normalize_phone_to_e164_with_germany_as_default_region(raw, e164):
    assert dedupe.normalize_phone(raw) == e164


def test_phone_last8():
    assert dedupe.phone_last8("+491712345678") == "12345678"
    assert dedupe.phone_last8("+4912") == ""


@pytest.mark.parametrize(("handle", "canonical"), [
    ("@Anna.Schmidt_", "annaschmidt"), ("anna-schmidt", "annaschmidt"), ("@anna_s@mastodon.social", "annas"),
    ("  ANNA  ", "anna"),
])
def test_canonical_handle(handle, canonical):
    assert dedupe.canonical_handle(handle) == canonical


def test_name_tokens_fold_case_and_accents_and_drop_titles():
    assert dedupe.name_tokens("Dr. Jürgen Müller-Lüdenscheidt") == ("jurgen", "muller", "ludenscheidt")
    assert dedupe.name_tokens("SØREN Straße") == ("soren", "strasse")
    assert dedupe.name_tokens("@user_42") == ("user",)


def test_normalize_customer_number_and_address():
    assert dedupe.normalize_customer_number(" ab-123 45 ") == "AB12345"
    assert dedupe.normalize_address("Hauptstraße 5, 10115 Berlin") == "hauptstr 5 10115 berlin"


def test_profile_build_drops_role_mailboxes_and_invalid_numbers_and_keeps_verification():
    profile = profile_build(emails=[("Anna@X.de", True), "info@x.de", "anna@x.de"], phones=["0301234567", "12"])
    assert profile.emails == {"anna@x.de": True}
    assert profile.phones == {"+49301234567": False}


def test_blocking_keys_cover_every_kind():
    profile = profile_build(names=["Anna Schmidt"], emails=["anna.s@x.de"], phones=["+491712345678"],
                            handles=["@anna_s"], customer_number="K-1")
    assert dedupe.blocking_keys(profile) == [
        "n:anna", "k:06", "n:schmidt", "k:862", "e:anna.s@x.de", "l:anna.s", "p:+491712345678", "t:12345678",
        "h:annas", "c:K1",
    ]


# ---------------------------------------------------------------------------------------------------------------
# Comparison levels
# ---------------------------------------------------------------------------------------------------------------


def _level(field, a, b, tf=dedupe.NO_FREQUENCIES):
    return dedupe.compare(profile_build(**a), profile_build(**b), tf)[field].level


@pytest.mark.parametrize(("a", "b", "level"), [
    ([("anna@x.de", True)], [("anna@x.de", True)], "verified_exact"),
    ([("anna@x.de", True)], ["anna@x.de"], "exact"),
    (["anna.s@x.de"], ["anna.s+shop@y.de"], "local_part"),
    (["anna@x.de"], ["bert@x.de"], "else"),
    (["anna@x.de"], [], None),
])
def test_email_levels(a, b, level):
    assert _level("email", {"emails": a}, {"emails": b}) == level


@pytest.mark.parametrize(("a", "b", "level"), [
    ([("+491712345678", True)], [("0171 2345678", True)], "verified_exact"),
    (["+491712345678"], ["0171 2345678"], "exact"),
    (["+491712345678"], ["+431712345678"], "last8"),
    (["+491712345678"], ["+491719999999"], "else"),
    ([], ["+491712345678"], None),
])
def test_phone_levels(a, b, level):
    assert _level("phone", {"phones": a}, {"phones": b}) == level


def test_a_verified_phone_held_by_a_whole_family_is_not_a_strong_identifier():
    # counts: customers other than the subject holding the value (the candidate and anyone else)
    family = dedupe.TermFrequencies(total=1000, counts={"p:+49301234567": 2})
    couple = dedupe.TermFrequencies(total=1000, counts={"p:+49301234567": 1})
    a = {"phones": [("+49301234567", True)]}

    assert _level("phone", a, a, family) == "exact"
    assert _level("phone", a, a, couple) == "verified_exact"


def test_a_value_only_the_pair_holds_keeps_its_full_weight_and_a_shared_one_loses_some():
    a = profile_build(phones=["+49301234567"])
    unique = dedupe.TermFrequencies(total=1000, counts={"p:+49301234567": 1})
    shared = dedupe.TermFrequencies(total=1000, counts={"p:+49301234567": 4})

    assert dedupe.explain(a, a, tf=unique)[1].bits == pytest.approx(dedupe.DEFAULT_MODEL.bits("phone", "exact"),
                                                                    abs=1e-3)
    assert dedupe.explain(a, a, tf=shared)[1].bits < dedupe.DEFAULT_MODEL.bits("phone", "exact") - 5


@pytest.mark.parametrize(("a", "b", "level"), [
    ({"names": ["Anna Schmidt"], "handles": ["anna_schmidt"]},
     {"names": ["Anna Schmidt"], "handles": ["anna.schmidt"]}, "handle_and_name"),
    ({"names": ["Anna Schmidt"]}, {"names": ["Schmidt, Anna"]}, "name_exact"),
    ({"names": ["Anna Schmidt"], "handles": ["sunny_day"]}, {"names": ["Bert Jones"], "handles": ["sunnyday"]},
     "handle_exact"),
    ({"names": ["Anna Schmidt"]}, {"names": ["Anna Schmitd"]}, "name_fuzzy"),
    ({"names": ["Anna Maria Schmidt"]}, {"names": ["Anna Schmidt"]}, "name_fuzzy"),
    ({"names": ["Amber Black Well"]}, {"names": ["Amber Blackwell"]}, "name_fuzzy"),
    ({"names": ["Anna Schmidt"]}, {"names": ["Anja Schmidt"]}, "name_close"),
    ({"names": ["Anna Schmidt"], "handles": ["annaschmidt"]}, {"names": ["Bert Jones"], "handles": ["annaschmidt1"]},
     "handle_similar"),
    ({"names": ["Bert Jones"]}, {"names": ["Zora"], "handles": ["bertjones"]}, "handle_similar"),
    ({"names": ["Anna Schmidt"]}, {"names": ["Paul Schmidt"]}, "name_partial"),
    ({"names": ["Anna Meyer"]}, {"names": ["Paul Maier"]}, "name_partial"),
    ({"names": ["Anna Schmidt"]}, {"names": ["Bert Jones"]}, "else"),
    ({"names": ["Anna Schmidt"]}, {}, None),
])
def test_name_handle_levels(a, b, level):
    assert _level("name_handle", a, b) == level


@pytest.mark.parametrize(("a", "b", "level"), [
    ("1804974", "1804974", "same"), ("1804974", "1809474", "near"), ("1804974", "1804975", "near"),
    ("1804974", "6089216", "conflicting"), ("", "1804974", None),
])
def test_customer_number_levels(a, b, level):
    assert _level("customer_number", {"customer_number": a}, {"customer_number": b}) == level


@pytest.mark.parametrize(("a", "b", "level"), [
    (dt.date(1980, 5, 17), dt.date(1980, 5, 17), "exact"),
    (dt.date(1980, 5, 17), dt.date(1981, 5, 17), "one_component"),
    (dt.date(1980, 5, 7), dt.date(1980, 7, 5), "one_component"),
    (dt.date(1980, 5, 17), dt.date(1975, 2, 17), "else"),
    (None, dt.date(1980, 5, 17), None),
])
def test_birth_date_levels(a, b, level):
    assert _level("birth_date", {"birth_date": a}, {"birth_date": b}) == level


@pytest.mark.parametrize(("a", "b", "level"), [
    ("Hauptstraße 5, 10115 Berlin", "Hauptstr. 5, 10115 Berlin", "exact"),
    ("Hauptstraße 5, 10115 Berlin", "Hauptstraße 5, Berlin", "close"),
    ("Hauptstraße 5, 10115 Berlin", "Hauptstraße 7, 10117 Berlin Mitte", "similar"),
    ("Hauptstraße 5, 10115 Berlin", "Am Markt 1, 80331 München", "else"),
])
def test_address_levels(a, b, level):
    assert _level("address", {"address": a}, {"address": b}) == level


def test_term_frequency_makes_a_common_name_worth_less_than_a_rare_one():
    anna = profile_build(names=["Anna Schmidt"])
    tf = dedupe.TermFrequencies(total=100_000, counts={"n:anna": 2000, "n:schmidt": 900})
    rare = profile_build(names=["Wiebke Quandt"])
    tf_rare = dedupe.TermFrequencies(total=100_000, counts={"n:wiebke": 3, "n:quandt": 2})

    common_bits = dedupe.explain(anna, anna, tf=tf)[2].bits
    rare_bits = dedupe.explain(rare, rare, tf=tf_rare)[2].bits

    assert common_bits < dedupe.DEFAULT_MODEL.bits("name_handle", "name_exact") < rare_bits
    assert rare_bits - dedupe.DEFAULT_MODEL.bits("name_handle", "name_exact") == pytest.approx(dedupe.TF_MAX_GAIN,
                                                                                              abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------
# Explanations, thresholds, auto-link guard
# ---------------------------------------------------------------------------------------------------------------


def test_explain_lists_every_field_with_level_bits_and_both_values():
    a = profile_build(names=["Anna Schmidt"], emails=[("anna@x.de", True)], customer_number="K1",
                      birth_date=dt.date(1980, 5, 17))
    b = profile_build(names=["Anna Schmitt"], emails=[("anna@x.de", True)], customer_number="K1")

    evidence = dedupe.explain(a, b, co_present=True)

    assert [e.field for e in evidence] == [
        "email", "phone", "name_handle", "customer_number", "address", "birth_date", "group"]
    by_field = {e.field: e for e in evidence}
    assert (by_field["email"].level, by_field["email"].left, by_field["email"].right) == (
        "verified_exact", "anna@x.de", "anna@x.de")
    assert (by_field["name_handle"].level, by_field["name_handle"].left, by_field["name_handle"].right) == (
        "name_fuzzy", "anna schmidt", "anna schmitt")
    assert (by_field["birth_date"].level, by_field["birth_date"].bits) == ("missing", 0.0)
    assert by_field["group"].bits < 0
    assert by_field["group"].contrary
    assert dedupe.score(evidence) == pytest.approx(sum(e.bits for e in evidence))


def _strong_pair() -> tuple[dedupe.Profile, dedupe.Profile]:
    a = profile_build(names=["Anna Schmidt"], emails=[("anna@x.de", True)], birth_date=dt.date(1980, 5, 17))
    return a, dataclasses_replace(a, customer_id=2)


def dataclasses_replace(profile, **changes):
    import dataclasses

    return dataclasses.replace(profile, **changes)


def test_verified_email_and_agreeing_name_may_auto_link():
    a, b = _strong_pair()
    evidence = dedupe.explain(a, b)

    assert dedupe.score(evidence) >= dedupe.DEFAULT_MODEL.auto_link
    assert dedupe.may_auto_link(evidence)


@pytest.mark.parametrize("contrary", [
    {"co_present": True},
    {"b": {"customer_number": "K2"}, "a": {"customer_number": "K1"}},
    {"b": {"birth_date": dt.date(1955, 1, 2)}},
    {"b": {"names": ["Bert Jones"]}},
])
def test_contrary_evidence_blocks_auto_link(contrary):
    base = {"names": ["Anna Schmidt"], "emails": [("anna@x.de", True)], "birth_date": dt.date(1980, 5, 17),
            "address": "Hauptstraße 5, 10115 Berlin"}
    a = profile_build(**{**base, **contrary.get("a", {})})
    b = profile_build(**{**base, **contrary.get("b", {})})

    evidence = dedupe.explain(a, b, co_present=contrary.get("co_present", False))

    assert any(e.contrary for e in evidence)
    assert not dedupe.may_auto_link(evidence, threshold=-1000)


def test_names_and_handles_alone_never_auto_link_however_strong():
    a = profile_build(names=["Wiebke Quandt"], handles=["wiebke_quandt"], address="Am Markt 1, 80331 München",
                      birth_date=dt.date(1980, 5, 17))
    evidence = dedupe.explain(a, a)

    assert dedupe.score(evidence) > dedupe.DEFAULT_MODEL.auto_link
    assert not dedupe.may_auto_link(evidence, threshold=-1000)


_WEAK_LEVELS = sorted((spec.field, level) for spec in dedupe.COMPARISONS for level in spec.levels
                      if (spec.field, level) not in dedupe.STRONG_IDENTIFIERS)
_ALL_LEVELS = sorted((spec.field, level) for spec in dedupe.COMPARISONS for level in spec.levels)


def _evidence(levels):
    return st.lists(st.builds(
        lambda fl, bits, left, right: FieldEvidence(fl[0], fl[1], bits, left, right),
        st.sampled_from(levels), st.floats(-100, 1000, allow_nan=False), st.text(max_size=5), st.text(max_size=5),
    ), max_size=12)


@hypothesis_settings(max_examples=300, deadline=None)
@given(_evidence(_WEAK_LEVELS), st.floats(-1000, 1000, allow_nan=False))
def test_no_evidence_without_a_strong_identifier_ever_auto_links(evidence, threshold):
    assert not dedupe.may_auto_link(evidence, threshold=threshold)


@hypothesis_settings(max_examples=300, deadline=None)
@given(_evidence(_ALL_LEVELS), st.floats(-1000, 1000, allow_nan=False))
def test_auto_link_needs_a_strong_identifier_agreeing_names_and_nothing_contrary(evidence, threshold):
    allowed = dedupe.may_auto_link(evidence, threshold=threshold)

    if allowed:
        assert any((e.field, e.level) in dedupe.STRONG_IDENTIFIERS for e in evidence)
        assert any(e.field == "name_handle" and e.level in dedupe.AGREEING_NAMES for e in evidence)
        assert not any(e.level in dedupe.SPECS[e.field].contrary for e in evidence)
        assert dedupe.score(evidence) >= threshold


def test_auto_link_is_off_unless_the_deployment_switches_it_on(settings):
    a, b = _strong_pair()
    b = dataclasses_replace(b, customer_id=2)

    settings.DEDUPE_AUTO_LINK = False
    off = dedupe.suggestions_rank(a, [b])
    settings.DEDUPE_AUTO_LINK = True
    on = dedupe.suggestions_rank(a, [b])
    del settings.DEDUPE_AUTO_LINK
    unset = dedupe.suggestions_rank(a, [b])

    assert [s.decision for s in off] == ["suggest"]
    assert [s.decision for s in on] == ["auto_link"]
    assert [s.decision for s in unset] == ["suggest"]


def test_two_candidates_sharing_the_strong_identifier_are_both_only_suggested():
    a, b = _strong_pair()
    c = dataclasses_replace(b, customer_id=3)

    suggestions = dedupe.suggestions_rank(a, [b, c], auto_link=True)

    assert [s.decision for s in suggestions] == ["suggest", "suggest"]


def test_bars_rise_with_the_size_of_the_database():
    model = dedupe.DEFAULT_MODEL

    assert model.bars(model.population) == (model.suggest, model.auto_link)
    assert model.bars(model.population * 8) == (model.suggest + 3, model.auto_link + 3)
    assert model.bars(10) == (model.suggest, model.auto_link)


# ---------------------------------------------------------------------------------------------------------------
# Model and EM
# ---------------------------------------------------------------------------------------------------------------


def test_model_round_trips_through_json_with_its_version():
    model = dedupe.DEFAULT_MODEL
    restored = dedupe.Model.from_json(model.to_json())

    assert restored.version == model.version
    assert restored.bits("email", "exact") == model.bits("email", "exact")
    tampered = model.to_dict()
    tampered["suggest"] = 1.0
    with pytest.raises(ValueError, match="does not match"):
        dedupe.Model.from_dict(tampered)


def _draw(rnd, shares):
    return rnd.choices(list(shares), weights=list(shares.values()))[0]


def test_em_recovers_the_m_probabilities_of_a_synthetic_population():
    # Given vectors drawn from known m (true pairs, 30%) and u (other pairs) for the learned comparisons
    rnd = random.Random(3)
    m = {"email": {"verified_exact": 0.2, "exact": 0.4, "local_part": 0.1, "else": 0.3},
         "customer_number": {"same": 0.8, "near": 0.1, "conflicting": 0.1},
         "address": {"exact": 0.5, "close": 0.3, "similar": 0.1, "else": 0.1},
         "birth_date": {"exact": 0.85, "one_component": 0.1, "else": 0.05}}
    u = {"email": {"verified_exact": 0.0005, "exact": 0.001, "local_part": 0.01, "else": 0.9885},
         "customer_number": {"same": 0.001, "near": 0.005, "conflicting": 0.994},
         "address": {"exact": 0.001, "close": 0.004, "similar": 0.05, "else": 0.945},
         "birth_date": {"exact": 0.003, "one_component": 0.03, "else": 0.967}}

    def vector(dist):
        return tuple(_draw(rnd, dist[f]) if f in dist else None for f in dedupe.LEARNED_FIELDS)

    candidates = [vector(m) if rnd.random() < 0.3 else vector(u) for _ in range(20_000)]
    randoms = [vector(u) for _ in range(50_000)]

    # When EM runs without labels
    model, report = dedupe.model_estimate(candidates, randoms, population=10_000)

    # Then it converges on the true match rate and m
    assert report.converged
    assert report.prior == pytest.approx(0.3, abs=0.02)
    for field, levels in m.items():
        for level, share in levels.items():
            assert model.weights[field][level][0] == pytest.approx(share, abs=0.03), (field, level)
    # and the comparisons absent from the data keep their prior weights
    assert model.weights["phone"] == dedupe.DEFAULT_MODEL.weights["phone"]
    assert model.weights["name_handle"] == dedupe.DEFAULT_MODEL.weights["name_handle"]
    assert model.population == 10_000
    assert model.trained["source"] == "em"


# ---------------------------------------------------------------------------------------------------------------
# Candidate finder on PostgreSQL
# ---------------------------------------------------------------------------------------------------------------


def _customer(name="", *, emails=(), phones=(), handles=(), number="", birth_date=None) -> Customer:
    customer = Customer.objects.create(display_name=name, customer_number=number, birth_date=birth_date)
    for value, verified in emails:
        ContactPoint.objects.create(customer=customer, kind="email", value=value,
                                    normalized=dedupe.normalize_email(value),
                                    verified_at=timezone.now() if verified else None)
    for value, verified in phones:
        ContactPoint.objects.create(customer=customer, kind="phone", value=value,
                                    normalized=dedupe.normalize_phone(value),
                                    verified_at=timezone.now() if verified else None)
    for n, handle in enumerate(handles):
        SocialIdentity.objects.create(customer=customer, platform="x", external_id=f"{customer.pk}-{n}",
                                      handle=handle, display_name=name, first_seen_at=timezone.now(),
                                      last_seen_at=timezone.now())
    dedupe.customer_dedupe_keys_refresh(customer_ids=[customer.pk])
    return customer


@pytest.fixture
def crowd(db):
    """Customers that share nothing with the subjects below."""
    return [_customer(f"Other Person{i}", emails=[(f"other{i}@z.de", False)], phones=[(f"+4989{1000000 + i}", False)],
                      handles=[f"other{i}"], number=f"Z{i}") for i in range(5)]


@pytest.mark.parametrize(("target", "subject", "key"), [
    ({"emails": [("anna.s@x.de", False)]}, {"emails": ["Anna.S@x.de"]}, "e:anna.s@x.de"),
    ({"emails": [("anna.s@x.de", False)]}, {"emails": ["anna.s+news@y.org"]}, "l:anna.s"),
    ({"phones": [("0171 2345678", True)]}, {"phones": ["+49 171 2345678"]}, "p:+491712345678"),
    ({"phones": [("0171 2345678", False)]}, {"phones": ["+43 171 2345678"]}, "t:12345678"),
    ({"handles": ["Anna_Schmidt"]}, {"handles": ["@anna.schmidt"]}, "h:annaschmidt"),
    ({"name": "Wiebke Quandt"}, {"names": ["Wiebke Q."]}, "n:wiebke"),
    ({"name": "Jürgen Meyer"}, {"names": ["Maier"]}, "k:67"),
    ({"number": "K100"}, {"customer_number": "k-100"}, "c:K100"),
])
def test_candidate_finder_finds_the_customer_through_each_blocking_key(crowd, target, subject, key,
                                                                       django_assert_num_queries):
    # Given a customer and others that share nothing with the subject
    customer = _customer(target.pop("name", "Some Body"), **target)
    profile = profile_build(**subject)

    # When the subject's blocks are probed (one statement)
    with django_assert_num_queries(1):
        blocks = dedupe.blocks_probe(profile)

    # Then the customer is found through that key, alone
    assert blocks.members[key] == (customer.pk,)
    assert blocks.candidates() == [customer.pk]
    assert blocks.frequencies.counts[key] == 1
    assert blocks.frequencies.total >= 6


def test_finder_scores_a_new_identity_in_two_statements_and_a_customer_in_three(crowd, django_assert_num_queries):
    anna = _customer("Anna Schmidt", emails=[("anna@x.de", True)], phones=[("0171 2345678", False)],
                     handles=["anna_schmidt"], birth_date=dt.date(1980, 5, 17))
    twin = _customer("Anna Schmidt", emails=[("anna@x.de", False)], handles=["annaschmidt"])
    profile = profile_build(names=["Anna Schmidt"], emails=["anna@x.de"], handles=["anna.schmidt"])

    with django_assert_num_queries(2):
        found = dedupe.duplicate_suggestions_for_profile(profile)
    with django_assert_num_queries(3):
        for_customer = dedupe.duplicate_suggestions_for_customer(anna.pk)

    assert {s.customer_id for s in found} == {anna.pk, twin.pk}
    assert [s.customer_id for s in for_customer] == [twin.pk]
    suggestion = for_customer[0]
    assert suggestion.decision == "suggest"
    assert suggestion.model_version == dedupe.DEFAULT_MODEL.version
    assert {e.field: e.level for e in suggestion.evidence}["name_handle"] == "handle_and_name"


def test_finder_skips_blocks_above_the_cap_and_leaves_tombstones_out(db):
    keep = _customer("Wiebke Quandt")
    others = [_customer("Wiebke Quandt") for _ in range(2)]
    gone = _customer("Wiebke Quandt")
    Customer.objects.filter(pk=gone.pk).update(merged_into=keep)

    blocks = dedupe.blocks_probe(profile_build(names=["Wiebke Quandt"]), cap=3)
    found = dedupe.duplicate_suggestions_for_customer(keep.pk, min_score=-100)

    assert "n:wiebke" in blocks.skipped
    assert "n:wiebke" not in blocks.members
    assert blocks.frequencies.counts["n:wiebke"] == 4  # the subject (a new identity) is not one of them
    assert {s.customer_id for s in found} == {o.pk for o in others}
    assert dedupe.duplicate_suggestions_for_customer(gone.pk) == []


def test_each_probe_is_an_index_lookup(db):
    # Given tables with some rows and fresh statistics (empty tables make every plan cost the same)
    customers = Customer.objects.bulk_create(
        [Customer(display_name=f"Name{i}", customer_number=f"N{i}", dedupe_keys=[f"n:name{i}"]) for i in range(300)])
    ContactPoint.objects.bulk_create(
        [ContactPoint(customer=c, kind=kind, value=f"{i}",
                      normalized=f"u{i}@x.de" if kind == "email" else f"+49{i:09d}")
         for i, c in enumerate(customers) for kind in ("email", "phone")])
    SocialIdentity.objects.bulk_create(
        [SocialIdentity(customer=c, platform="x", external_id=str(i), handle=f"h{i}", first_seen_at=timezone.now(),
                        last_seen_at=timezone.now()) for i, c in enumerate(customers)])
    profile = profile_build(names=["Anna"], emails=["anna.s@x.de"], phones=["+491712345678"], handles=["anna_s"],
                            customer_number="K1")
    expected = {"n": "customer_dedupe_keys_idx", "k": "customer_dedupe_keys_idx", "c": "customer_number_idx",
                "e": "contactpoint_lookup_idx", "l": "contactpoint_email_local_idx",
                "p": "contactpoint_lookup_idx", "t": "contactpoint_phone_last8_idx", "h": "identity_handle_key_idx"}
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE contacts_customer, contacts_contactpoint, contacts_socialidentity")
        cursor.execute("SET LOCAL enable_seqscan = off")
        for key in dedupe.blocking_keys(profile):
            # When a probe is planned, Then it looks its value up in its own index
            cursor.execute("EXPLAIN " + dedupe._PROBES[key[0]], [key if key[0] in "nk" else key[2:]])
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert f"on {expected[key[0]]}" in plan.replace("using", "on"), (key, plan)
            assert "Index Cond" in plan, (key, plan)


def test_canonical_handle_matches_the_indexed_sql_expression(db):
    handles = ["@Anna.Schmidt_", " anna-schmidt ", "@anna_s@mastodon.social", "ANNA", "a.b_c-d@e"]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {dedupe.HANDLE_KEY_SQL} FROM unnest(%s::text[]) AS t(handle)", [handles])
        in_sql = [row[0] for row in cursor.fetchall()]

    assert in_sql == [dedupe.canonical_handle(h) for h in handles]


def test_ingest_fills_the_dedupe_keys_the_refresh_would_compute(db):
    from contacts.services import IdentitySeen, identities_resolve

    resolved = identities_resolve(seen=[IdentitySeen(platform="x", scope="", external_id="1", handle="jm",
                                                     display_name="Jürgen Meyer", seen_at=timezone.now())])
    customer_id = next(iter(resolved.values())).customer_id
    assert Customer.objects.get(pk=customer_id).dedupe_keys == ["n:jurgen", "k:0746", "n:meyer", "k:67"]

    Customer.objects.filter(pk=customer_id).update(dedupe_keys=[])
    changed = dedupe.customer_dedupe_keys_refresh(customer_ids=[customer_id])
    again = dedupe.customer_dedupe_keys_refresh(customer_ids=[customer_id])

    assert (changed, again) == (1, 0)
    assert Customer.objects.get(pk=customer_id).dedupe_keys == ["n:jurgen", "k:0746", "n:meyer", "k:67"]
