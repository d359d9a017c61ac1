"""The customer profile in the browser: the cross-channel timeline scrolled past its first page, and a merge from the
side-by-side preview undone again.

The timeline's last item is a sentinel (`timeline-more`) that htmx loads when it is revealed: scrolling it into view
must bring the next page (keyset-paginated on the server) below the first, without a reload and without showing any
interaction twice, in the order the database gives (`conversations.selectors.customer_timeline`).
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from channels.adapters.base import Direction, EventKind
from channels.ingest import ingest
from console.selectors.customers import TIMELINE_PAGE_SIZE
from contacts.merge import identity_link
from contacts.models import AuditEvent, ContactPoint, Customer, SocialIdentity
from conversations.selectors import customer_timeline

from .conftest import morning, person, said

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from access.models import Team

    from ..conftest import CeleryWorker
    from .conftest import Console, Morning

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What Lena wrote over the last months, and what the team answered (every third message is the team's).
LENA_SAYS = [
    "Hallo, mein Internet bricht abends ständig ab. Könnt ihr die Leitung prüfen?",
    "Der Speedtest zeigt nur 12 statt 100 Mbit/s, per LAN gemessen.",
    "Danke, der Router hat jetzt die neue Firmware. Heute Abend war es stabil!",
    "Kann ich meinen Tarif auf 250 Mbit/s ändern, ohne dass die Laufzeit neu beginnt?",
    "Die Auftragsbestätigung ist da, danke!",
    "Seit dem Umzug fehlt mir noch der Techniker-Termin für die neue Wohnung.",
    "Termin passt, Donnerstag 8 bis 12 Uhr.",
    "Meine Rechnung ist diesen Monat 20 € höher, warum?",
    "Ah, die Umzugspauschale, verstehe. Danke für die Erklärung.",
]
TEAM_SAYS = [
    "Hallo Lena, wir schauen uns das an. Magst du uns per DM deine Kundennummer schicken? ^MK",
    "Danke! Wir haben einen Leitungstest gestartet und melden uns gleich. ^AB",
    "Sehr gern, Lena! Melde dich, falls noch etwas ist. ^JW",
]


def lena_history(m: Morning, staff: User, count: int) -> Customer:
    """`count` more interactions: Lena's and the team's answers, every third day back in time, on X and on a
    Telegram account that a staff member linked to her profile. With her message of this morning, over two pages.
    Her profile gets an e-mail address, a phone number, tags and an address, as a long-standing customer has."""
    lena = m.customer(m.lena)
    brand = person("x", m.x.external_id, "HalloNetz_hilft", "HalloNetz hilft")
    telegram = person("telegram", "530000011", "lena_sch", "Lena S.")
    says, answers = itertools.cycle(LENA_SAYS), itertools.cycle(TEAM_SAYS)
    on_x, on_telegram = [], []
    # Newest first: the team's answer is stored before the tweet it answers, which ingest threads all the same.
    for i in range(count):
        minutes = (i + 1) * 3 * 24 * 60
        tweet = f"19000000000000{i:04d}"
        if i % 3 == 0 and i + 1 < count:
            thread = f"19000000000000{i + 1:04d}"  # answers Lena's tweet just before it
            on_x.append(said(brand, tweet, f"@lena_schmidt {next(answers)}", minutes_ago=minutes, thread=thread,
                             kind=EventKind.REPLY, reply_to=thread, direction=Direction.OUTBOUND))
        elif i % 3 == 2 and i % 2 == 0:
            on_telegram.append(said(telegram, f"530000011:{1000 - i}", next(says), minutes_ago=minutes,
                                    thread="chat:530000011", kind=EventKind.DIRECT_MESSAGE))
        else:
            on_x.append(said(m.lena, tweet, f"@HalloNetz_hilft {next(says)}", minutes_ago=minutes))
    ingest(m.x, on_x)
    ingest(m.telegram, on_telegram)
    identity = SocialIdentity.objects.get(platform="telegram", external_id="530000011")
    identity_link(identity=identity, customer=lena, actor=staff, reason="Gleiche Kundennummer im DM genannt")
    ContactPoint.objects.create(customer=lena, kind=ContactPoint.Kind.EMAIL, value="lena.schmidt@example.org",
                                normalized="lena.schmidt@example.org")
    ContactPoint.objects.create(customer=lena, kind=ContactPoint.Kind.PHONE, value="+49 221 5550123",
                                normalized="+492215550123")
    Customer.objects.filter(pk=lena.pk).update(tags=["Glasfaser", "Umzug"], language="de",
                                               postal_address="Venloer Str. 12\n50672 Köln")
    return lena


def test_the_timeline_loads_its_next_pages_when_scrolled_to_the_end_without_duplicates(
        console: Console, agent: User, staff: User, team: Team, worker: CeleryWorker) -> None:
    m = morning(team)
    lena = lena_history(m, staff, count=2 * TIMELINE_PAGE_SIZE + 4)
    expected = [row.pk for row in customer_timeline(customer_id=lena.pk, limit=1000)]
    assert len(expected) == 2 * TIMELINE_PAGE_SIZE + 5
    console.log_in_as(agent)
    page = console.goto(f"/customers/{lena.pk}/")
    items = page.get_by_test_id("timeline-item")

    expect(page.get_by_role("heading", level=1)).to_have_text("Lena Schmidt")
    expect(page.get_by_test_id("identity")).to_have_count(2)  # X and the linked Telegram account
    expect(items).to_have_count(TIMELINE_PAGE_SIZE)
    expect(items.first).to_contain_text("Seit heute Morgen blinkt mein Router rot")
    console.screenshot("profile")
    console.mark_page()

    page.get_by_test_id("timeline-more").scroll_into_view_if_needed()
    expect(items).to_have_count(2 * TIMELINE_PAGE_SIZE)
    page.get_by_test_id("timeline-more").scroll_into_view_if_needed()
    expect(items).to_have_count(len(expected))
    expect(page.get_by_test_id("timeline-end")).to_be_visible()
    expect(page.get_by_test_id("timeline-more")).to_have_count(0)

    shown = [int(i) for i in items.evaluate_all("(els) => els.map((el) => el.dataset.interactionId)")]
    assert len(set(shown)) == len(shown), "an interaction is shown twice"
    assert shown == expected
    assert console.still_same_page()


def test_two_customers_are_merged_from_the_preview_with_a_conflict_choice_and_the_merge_is_undone(
        console: Console, staff: User, team: Team, worker: CeleryWorker) -> None:
    m = morning(team)
    sophie = m.customer(m.sophie)  # Telegram, customer number 4711-0815
    mail = person("email", "sophie.wagner@example.net", "sophie.wagner@example.net", "S. Wagner")
    ingest(m.email, [said(mail, "<erstattung-0815@example.net>", "Guten Tag, ich warte noch auf die Erstattung der "
                          "doppelten Abbuchung vom Oktober. Viele Grüße, Sophie Wagner", minutes_ago=30,
                          kind=EventKind.DIRECT_MESSAGE)])
    other_identity = SocialIdentity.objects.get(platform="email", external_id="sophie.wagner@example.net")
    other = other_identity.customer
    Customer.objects.filter(pk=other.pk).update(customer_number="4711-0851", tags=["Rechnung"])
    console.log_in_as(staff)

    page = console.goto(f"/customers/{sophie.pk}/merge/?source={other.pk}")

    expect(page.get_by_test_id("merge-side-target")).to_contain_text("Sophie Wagner")
    expect(page.get_by_test_id("merge-side-source")).to_contain_text("sophie.wagner@example.net")
    number = page.locator('[data-testid="merge-field"][data-field="customer_number"]')
    expect(number).to_contain_text("4711-0815")
    expect(number).to_contain_text("4711-0851")
    page.get_by_test_id("choice-target-customer_number").check()
    page.get_by_label("Reason (recorded in the audit log)").fill("Dieselbe Kundin: Rechnung vom Oktober")
    page.get_by_test_id("merge-confirm").click()

    expect(page).to_have_url(re.compile(rf"/customers/{sophie.pk}/\?merged=\d+$"))
    page.wait_for_load_state("domcontentloaded")  # the undo's confirmation is bound by a deferred script
    expect(page.get_by_test_id("identity")).to_have_count(2)
    expect(page.get_by_test_id("customer-number")).to_have_text("4711-0815")
    expect(page.get_by_test_id("merged-banner")).to_be_visible()
    merge = _merge_of(sophie, other)
    assert Customer.objects.get(pk=other.pk).merged_into_id == sophie.pk  # the source is a tombstone
    assert SocialIdentity.objects.get(pk=other_identity.pk).customer_id == sophie.pk
    survivor = Customer.objects.get(pk=sophie.pk)
    assert (survivor.customer_number, survivor.tags) == ("4711-0815", ["Rechnung"])
    assert (merge.actor_id, merge.reason, merge.undone_by_id) == (staff.pk, "Dieselbe Kundin: Rechnung vom Oktober",
                                                                  None)

    with console.expect_confirm("Undo this merge"):
        page.get_by_test_id("merged-banner").get_by_test_id("merge-undo").click()

    # Back on the customer that was merged in, whole again.
    expect(page).to_have_url(console.url(f"/customers/{other.pk}/"))
    expect(page.get_by_role("status")).to_contain_text("The merge was undone")
    expect(page.get_by_test_id("identity")).to_have_count(1)
    expect(page.get_by_test_id("identity")).to_contain_text("sophie.wagner@example.net")
    expect(page.get_by_test_id("customer-number")).to_have_text("4711-0851")
    expect(page.locator(f'[data-testid="merge-event"][data-merge-event-id="{merge.pk}"]')).to_contain_text("undone")
    merge.refresh_from_db()
    assert merge.undone_by_id is not None
    restored = Customer.objects.get(pk=other.pk)
    assert (restored.merged_into_id, restored.customer_number, restored.tags) == (None, "4711-0851", ["Rechnung"])
    assert SocialIdentity.objects.get(pk=other_identity.pk).customer_id == other.pk
    assert list(Customer.objects.get(pk=sophie.pk).identities.values_list("platform", flat=True)) == ["telegram"]
    assert console.dialogs == ["confirm: Undo this merge? Both customers will be as they were before it."]


def _merge_of(target: Customer, source: Customer) -> AuditEvent:
    return AuditEvent.objects.get(kind=AuditEvent.Kind.MERGE, customer_id=target.pk, source_customer_id=source.pk)
