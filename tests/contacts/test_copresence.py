"""Group co-presence as contrary duplicate evidence, on real PostgreSQL: two customers whose identities both wrote
in one group thread are not auto-linked, and the explanation says why."""

from __future__ import annotations

import ast
import pathlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import contacts
from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts import copresence, dedupe
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from contacts.suggestions import dedupe_outbox_drain
from conversations.models import Conversation
from conversations.selectors import copresent_customer_pairs
from tests.channels.factories import author, post
from tests.contacts.builders import new_author

pytestmark = pytest.mark.django_db

EMAIL = "anna.schmidt@example.de"


def _customer_of(who: int) -> Customer:
    return SocialIdentity.objects.get(platform="x", external_id=f"u{who}").customer


def _verified_email(customer: Customer) -> None:
    ContactPoint.objects.create(customer=customer, kind="email", value=EMAIL, normalized=EMAIL,
                                verified_at=timezone.now(), verified_by="double-opt-in")


def _pair(account: ChannelAccount, *, same_thread: bool) -> tuple[Customer, Customer]:
    """Two customers named Anna Schmidt with one verified e-mail, who wrote in one group thread or apart."""
    first, second = new_author(), new_author()
    thread = f"group-{first}"
    ingest(account, [
        post(who=first, thread=thread, author=author(first, display_name="Anna Schmidt", handle="anna_s")),
        post(who=second, thread=thread if same_thread else None, minutes=1, reply_to_id=thread if same_thread else "",
             author=author(second, display_name="Anna Schmidt", handle="schmidt_a_1990")),
    ])
    a, b = _customer_of(first), _customer_of(second)
    _verified_email(a)
    _verified_email(b)
    return a, b


def _group(evidence: list[dict]) -> dict | None:
    return next((e for e in evidence if e["field"] == "group"), None)


def test_conversations_registers_its_copresence_lookup():
    assert copresent_customer_pairs in copresence.registered()


def test_contacts_imports_nothing_of_the_apps_above_it():
    root = pathlib.Path(contacts.__file__).parent
    above = {"conversations", "channels"}
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in above]
    assert offenders == []


def test_group_thread_authors_are_copresent_in_one_statement(account):
    a, b = _pair(account, same_thread=True)
    c, d = _pair(account, same_thread=False)
    assert Conversation.objects.filter(thread_key__startswith="group-").count() == 2

    with CaptureQueriesContext(connection) as ctx:
        pairs = copresent_customer_pairs([a.pk, c.pk, d.pk])

    assert len(ctx.captured_queries) == 1
    assert pairs == {frozenset({a.pk, b.pk})}
    assert copresent_customer_pairs([]) == set()


def test_pair_in_one_group_thread_is_suggested_with_negative_copresence_not_auto_linked(account, settings):
    settings.DEDUPE_AUTO_LINK = True
    a, b = _pair(account, same_thread=True)

    outcome = dedupe_outbox_drain()

    assert outcome.auto_linked == 0
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.AUTO_LINK).exists()
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.merged_into_id is None
    assert b.merged_into_id is None
    low, high = sorted([a.pk, b.pk])
    suggestion = DuplicateSuggestion.objects.get(customer_low=low, customer_high=high)
    assert suggestion.status == "open"
    group = _group(suggestion.explanation)
    assert group is not None
    assert group["level"] == "co_present"
    assert group["bits"] < -7


def test_same_pair_apart_is_auto_linked(account, settings):
    settings.DEDUPE_AUTO_LINK = True
    a, b = _pair(account, same_thread=False)

    outcome = dedupe_outbox_drain()

    assert outcome.auto_linked == 1
    event = AuditEvent.objects.get(kind=AuditEvent.Kind.AUTO_LINK)
    assert {event.customer_id, event.source_customer_id} == {a.pk, b.pk}
    assert _group(event.moved["evidence"]) is None


def test_copresence_costs_the_drain_one_statement_per_batch(account, settings):
    settings.DEDUPE_AUTO_LINK = False
    _pair(account, same_thread=True)
    _pair(account, same_thread=False)

    with CaptureQueriesContext(connection) as ctx:
        outcome = dedupe_outbox_drain()

    lookups = [q for q in ctx.captured_queries if "conversations_interaction" in q["sql"]]
    assert len(outcome.scored) == 4
    assert len(lookups) == 1


def test_finder_looks_up_copresence_when_asked(account):
    a, b = _pair(account, same_thread=True)

    plain = dedupe.duplicate_suggestions_for_customer(a.pk, auto_link=True)
    checked = dedupe.duplicate_suggestions_for_customer(a.pk, auto_link=True, co_present=None)

    assert [s.customer_id for s in plain] == [b.pk]
    assert plain[0].decision == "auto_link"
    assert [s.customer_id for s in checked] == [b.pk]
    assert checked[0].decision == "suggest"
    assert checked[0].score < plain[0].score - 7
    assert not dedupe.may_auto_link(checked[0].evidence)
    assert any(e.field == "group" and e.level == "co_present" and e.contrary for e in checked[0].evidence)
