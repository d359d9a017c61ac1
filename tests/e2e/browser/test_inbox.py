"""The inbox in the browser: an agent logs in with the form and lands in the inbox, and a webhook delivered while
the inbox is open shows up there, without a reload.

The webhook is a recorded Telegram Update (nutgram's `entities.json`) posted to the live server with the channel's
secret token, exactly as Telegram delivers it; its `date` is set to now, as a live delivery would carry. The live
server stores it, the test's Celery worker drains it into an interaction, and the page's own polling brings the new
row in.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from channels.models import WebhookDelivery
from conversations.models import Conversation, Interaction

from ..fakeplatform import RECORDED
from .conftest import PASSWORD, TELEGRAM_SECRET, morning, post_webhook, telegram_headers, webhook_json

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from access.models import Team

    from ..conftest import CeleryWorker
    from .conftest import Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.usefixtures("fast_passwords")
def test_a_telegram_webhook_delivered_while_the_inbox_is_open_appears_there_without_a_reload(
        console: Console, agent: User, team: Team, worker: CeleryWorker) -> None:
    m = morning(team)
    agent.set_password(PASSWORD)
    agent.save(update_fields=["password"])
    page = console.page

    console.log_in_with_form(agent.username, PASSWORD)

    expect(page).to_have_url(console.url("/inbox/"))
    rows = page.get_by_test_id("inbox-row")
    expect(rows).to_have_count(6)  # the open view: Lena, Emre, Thomas, Sophie, Jana, Peter
    lena = rows.and_(page.locator(f'[data-conversation-id="{m.conversation(m.lena).pk}"]'))
    expect(lena).to_contain_text("Lena Schmidt")
    expect(lena).to_contain_text("Seit heute Morgen blinkt mein Router rot")
    expect(page.get_by_test_id("inbox-count-open")).to_have_text("6")
    console.mark_page()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)

    update = json.loads((RECORDED / "nutgram/telegram_bot_api/entities.json").read_bytes())
    update["message"]["date"] = int(time.time())
    delivery = post_webhook(console.base_url, m.telegram, webhook_json(update), telegram_headers(TELEGRAM_SECRET))

    conversation = worker.wait_for(
        lambda: Conversation.objects.filter(channel_account=m.telegram, thread_key="chat:321654").first(),
        what="the worker to store the delivered message")
    row = rows.and_(page.locator(f'[data-conversation-id="{conversation.pk}"]'))
    expect(row).to_be_visible()
    expect(row).to_contain_text("John Doe")
    expect(row).to_contain_text("test bold underline 😆👍 look here")
    expect(row).to_contain_text("Telegram")
    expect(rows).to_have_count(7)
    expect(rows.first).to_have_attribute("data-conversation-id", str(conversation.pk))  # newest activity first
    expect(page.get_by_test_id("inbox-count-open")).to_have_text("7")
    assert console.still_same_page()
    assert navigations == []
    assert WebhookDelivery.objects.get(pk=delivery).state == WebhookDelivery.State.PROCESSED
    stored = Interaction.objects.get(channel_account=m.telegram, external_id="321654:123")
    assert (stored.conversation_id, stored.text, stored.identity.display_name) == (
        conversation.pk, "test bold underline 😆👍 look here", "John Doe")
    assert conversation.status == Conversation.Status.OPEN
    console.screenshot("inbox")
