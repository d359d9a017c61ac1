"""A conversation in the browser: from the inbox into the thread, a reply that reaches the platform, assign, tag, an
internal note, resolve; and two agents on the same conversation, who see each other (collision detection).

The Mastodon channel account is the fake platform server's (tests/e2e/fakeplatform.py, `FakeMastodon`): the reply
is queued by the page, sent by the test's Celery worker with `POST /api/v1/statuses`, and the thread shows the
delivery state as the worker stores it, by its own polling (no reload).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from console.presence import presence_others
from conversations.models import CannedResponse, Conversation, Interaction

from .conftest import morning

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from access.models import Team

    from ..conftest import CeleryWorker
    from ..fakeplatform import FakePlatform
    from .conftest import Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CANNED = ("Hallo {first_name}, danke für den Hinweis! In Leipzig-Connewitz ist gerade ein Sendemast gestört, die "
          "Kolleginnen und Kollegen sind schon vor Ort. Wir melden uns, sobald alles wieder läuft.")


def test_an_agent_answers_from_the_conversation_and_the_reply_is_sent_to_the_platform_then_assigns_and_resolves(
        console: Console, agent: User, staff: User, team: Team, worker: CeleryWorker,
        fake_platform: FakePlatform) -> None:
    m = morning(team, fake_platform)
    CannedResponse.objects.create(title="Störung bekannt", shortcut="stoerung", text=CANNED)
    conversation = m.conversation(m.emre)
    console.log_in_as(agent)
    page = console.goto("/inbox/")

    page.locator(f'[data-testid="inbox-row"][data-conversation-id="{conversation.pk}"]').get_by_test_id(
        "inbox-open").click()

    expect(page).to_have_url(console.url(f"/conversations/{conversation.pk}/"))
    # The URL changes when the new page starts to arrive; its deferred script has run by DOMContentLoaded.
    page.wait_for_load_state("domcontentloaded")
    messages = page.get_by_test_id("message")
    expect(messages).to_have_count(1)
    expect(messages.first).to_contain_text("Gibt es eine Störung in Leipzig-Connewitz?")
    expect(page.get_by_test_id("customer-card")).to_contain_text("Emre Demir")
    expect(page.get_by_test_id("customer-card")).to_contain_text("emre@chaos.social")
    console.mark_page()

    # Reply: a canned response (its variables filled in), signed with the agent's initials.
    page.get_by_test_id("canned").select_option(label="Störung bekannt (/stoerung)")
    composer = page.get_by_test_id("reply-text")
    expect(composer).to_have_value(CANNED.replace("{first_name}", "Emre"))
    page.get_by_test_id("reply-send").click()
    expect(page.get_by_test_id("reply-queued")).to_be_visible()
    expect(composer).to_have_value("")

    reply = worker.wait_for(
        lambda: Interaction.objects.filter(conversation=conversation, direction="out", delivery_state="sent").first(),
        what="the worker to send the reply")
    [post] = fake_platform.seen("POST", "/api/v1/statuses")
    sent_text = post.json()["status"]
    assert sent_text == f"@emre@chaos.social {CANNED.replace('{first_name}', 'Emre')} ^AB"
    assert post.json()["in_reply_to_id"] == "113500000000000001"
    assert post.headers["idempotency-key"] == str(reply.idempotency_key)
    [status] = fake_platform.mastodon.posted
    assert reply.external_id == status["id"]
    assert (reply.sent_by_id, reply.text) == (agent.pk, f"{CANNED.replace('{first_name}', 'Emre')} ^AB")
    shown = page.locator(f'[data-testid="message"][data-interaction-id="{reply.pk}"]')
    expect(shown.get_by_test_id("delivery-state")).to_have_attribute("data-state", "sent")
    expect(shown.get_by_test_id("delivery-state")).to_have_text("Sent")
    expect(shown).to_contain_text("Sendemast gestört")
    expect(messages).to_have_count(2)

    # Assign to a colleague with the select, then take it back with "Take".
    page.get_by_test_id("assign").select_option(label="Jonas Wolf")
    expect(page.get_by_test_id("conversation-assignee")).to_have_text("Jonas Wolf")
    assert Conversation.objects.get(pk=conversation.pk).assignee_id == staff.pk
    page.get_by_test_id("assign-me").click()
    expect(page.get_by_test_id("conversation-assignee")).to_have_text("Anna Becker")
    assert Conversation.objects.get(pk=conversation.pk).assignee_id == agent.pk

    # A tag, and an internal note for the colleagues (never sent).
    page.get_by_test_id("tag-input").fill("Mobilfunk")
    page.get_by_test_id("tag-add").click()
    expect(page.get_by_test_id("tag")).to_have_count(2)
    expect(page.get_by_test_id("tags")).to_contain_text("Mobilfunk")
    assert set(conversation.tags.values_list("name", flat=True)) == {"Störung", "Mobilfunk"}
    page.get_by_test_id("note-text").fill("Netzbetrieb informiert, Ticket NB-20931. Kunde bei Entstörung anschreiben.")
    page.get_by_test_id("note-add").click()
    expect(page.get_by_test_id("note")).to_contain_text("Ticket NB-20931")
    [note] = conversation.notes.all()
    assert (note.author_id, note.text) == (agent.pk, "Netzbetrieb informiert, Ticket NB-20931. Kunde bei "
                                                     "Entstörung anschreiben.")
    assert len(fake_platform.seen("POST", "/api/v1/statuses")) == 1  # the note went nowhere
    console.screenshot("conversation")

    page.get_by_test_id("status-resolved").click()

    expect(page.get_by_test_id("conversation-status")).to_have_attribute("data-status", "resolved")
    expect(page.get_by_test_id("status-resolved")).to_have_attribute("aria-pressed", "true")
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.status, stored.assignee_id) == (Conversation.Status.RESOLVED, agent.pk)
    assert stored.resolved_at is not None
    assert stored.first_response_at is not None
    assert console.still_same_page()


def test_two_agents_on_one_conversation_see_each_other_and_who_is_typing(
        console: Console, colleague_console: Console, agent: User, staff: User, team: Team,
        worker: CeleryWorker) -> None:
    m = morning(team)
    conversation = m.conversation(m.sophie)
    path = f"/conversations/{conversation.pk}/"
    console.log_in_as(agent)
    colleague_console.log_in_as(staff)
    anna = console.goto(path)
    expect(anna.get_by_test_id("presence-banner")).to_have_count(0)  # alone so far

    jonas = colleague_console.goto(path)

    expect(jonas.get_by_test_id("presence-viewing")).to_have_text("Anna Becker is viewing")
    assert [v.name for v in presence_others(conversation_id=conversation.pk, user_id=staff.pk)] == ["Anna Becker"]

    # Anna writes for a few seconds, as a person writes a sentence: longer than one heartbeat (5 s). The page reports
    # "typing" for 4 s after the last key, so a shorter burst can fall between two heartbeats and never be seen.
    anna.get_by_test_id("reply-text").press_sequentially(
        "Hallo Sophie, die doppelte Abbuchung haben wir gefunden.", delay=110)

    expect(anna.get_by_test_id("presence-viewing")).to_have_text("Jonas Wolf is viewing")  # by her heartbeats
    expect(jonas.get_by_test_id("presence-typing")).to_have_text("Anna Becker is typing…")
    assert [v.name for v in presence_others(conversation_id=conversation.pk, user_id=agent.pk)] == ["Jonas Wolf"]

    anna.goto(console.url("/inbox/"))  # leaving says goodbye at once

    expect(jonas.get_by_test_id("presence-banner")).to_have_count(0)
    assert presence_others(conversation_id=conversation.pk, user_id=staff.pk) == []
