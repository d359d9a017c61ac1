"""Hostile text renders inert on every console page, asserted in the browser.

Strangers write the message text, their names, handles and profile links, and the names and links of what they
attach; a platform writes the error texts that end up on the channel health page. Here all of it carries markup
that would run script if it reached the page as HTML: `<script>`, event handlers on `<img>` and `<svg>`, an
`<iframe>` after a quote that tries to leave an attribute, and `javascript:` / `data:` URLs. It arrives for real:

- a Telegram Update (nutgram's recorded `document.json`, with its names, caption and file name replaced) and a
  Mastodon admin webhook (the recorded mention of Mastodon.py's notifications, with the author's name and profile
  link, the text and an attachment replaced), posted signed to the live server and drained by the Celery worker;
- a Telegram account whose `getUpdates` answers an error with hostile text (the fake platform server), synced by
  the worker, so that the platform's words become the account's last error.

Each page is then checked in the browser: no dialog opened (alert, confirm, prompt: the test fails on any), no
element the payloads would create exists (inline `<script>`, `img[src=x]`, `svg[onload]`, any `<iframe>`, any
`on*` attribute), no link or source uses a `javascript:` or `data:` URL, and the text is shown literally.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from channels.models import WebhookDelivery
from contacts.models import SocialIdentity
from conversations.models import Conversation, Interaction

from ..fakeplatform import RECORDED, Answer, FakeTelegram
from .conftest import (
    MASTODON_SECRET,
    TELEGRAM_SECRET,
    channel_account,
    mastodon_headers,
    morning,
    post_webhook,
    telegram_headers,
    webhook_json,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from access.models import Team

    from ..conftest import CeleryWorker
    from ..fakeplatform import FakePlatform
    from .conftest import Console, Morning

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
SVG = "<svg onload=alert(1)>"
IFRAME = '"><iframe src=javascript:alert(1)>'
JS_URL = "javascript:alert(1)"
CAPTION = f'Rechnung anbei {SCRIPT} {IMG} {SVG} {IFRAME} <a href="{JS_URL}">klick</a> {JS_URL}'
FILE_NAME = f"{IFRAME}{IMG}.pdf"
TELEGRAM_FIRST, TELEGRAM_LAST = SCRIPT, IMG
MASTODON_NAME = f"{SVG} Mallory"
PLATFORM_ERROR = f"{SCRIPT}{IMG} Bad Request: chat not found"

# What the payloads would create if any of it were parsed as HTML, or a link could carry it.
INJECTED = ("script:not([src])", 'img[src="x"]', "svg[onload]", "iframe", "object", "embed",
            "[onerror]", "[onload]", "[onclick]", "[onmouseover]", "[onfocus]",
            '[href^="javascript" i]', '[src^="javascript" i]', '[href^="data:" i]', '[src^="data:text" i]')


def telegram_update() -> bytes:
    update = json.loads((RECORDED / "nutgram/telegram_bot_api/document.json").read_bytes())
    message = update["message"]
    for who in (message["from"], message["chat"]):
        who.update(first_name=TELEGRAM_FIRST, last_name=TELEGRAM_LAST, username="mallory_tg")
    message.update(date=int(time.time()), caption=CAPTION)
    message["document"].update(file_name=FILE_NAME, mime_type=SCRIPT)
    return webhook_json(update)


def mastodon_webhook() -> bytes:
    exchanges = json.loads((RECORDED / "mastodon-py/local_instance/notifications_mentions_only.exchanges.json")
                           .read_bytes())["exchanges"]
    status = exchanges[1]["response_body"][0]["status"]
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    status["account"].update(display_name=MASTODON_NAME, url=JS_URL, acct="mallory")
    status.update(created_at=now, content=(
        f'<p>@hallonetz <a href="{JS_URL}">Hier klicken</a> &lt;img src=x onerror=alert(1)&gt; '
        f"{SVG.replace('<', '&lt;').replace('>', '&gt;')} Bitte prüfen</p>"))
    status["media_attachments"] = [{
        "id": "990001", "type": "image", "url": JS_URL, "preview_url": JS_URL,
        "remote_url": "data:text/html,<script>alert(1)</script>", "description": f"{IFRAME}{SCRIPT}",
    }]
    return webhook_json({"event": "status.created", "created_at": now, "object": status})


def assert_inert(console: Console, page: Page) -> None:
    """Nothing that the payloads would create exists on the page, and no dialog opened."""
    for selector in INJECTED:
        assert page.locator(selector).count() == 0, f"{selector} found on {page.url}"
    sources = page.locator("script[src]").evaluate_all("(els) => els.map((el) => el.src)")
    assert all(src.startswith(console.url("/static/")) for src in sources), sources
    assert console.dialogs == []


def hostile_world(m: Morning, console: Console, worker: CeleryWorker, fake: FakePlatform,
                  team: Team) -> tuple[Conversation, Conversation]:
    """Both webhooks delivered and drained, and a sync that failed with the platform's hostile error text."""
    deliveries = [
        post_webhook(console.base_url, m.telegram, telegram_update(), telegram_headers(TELEGRAM_SECRET)),
        post_webhook(console.base_url, m.mastodon, body := mastodon_webhook(), mastodon_headers(MASTODON_SECRET, body)),
    ]
    failing = channel_account(team, "telegram", f"{SCRIPT} Support-Bot", "654321",
                              credentials={"bot_token": FakeTelegram.token}, config={"api_base_url": fake.url})
    for method in ("GET", "POST"):
        fake.rule(method, r"/bot[^/]+/getUpdates",
                  answer=Answer(400, {"ok": False, "error_code": 400, "description": PLATFORM_ERROR}))
    failing = worker.sync(failing)
    assert PLATFORM_ERROR in failing.last_error
    worker.wait_for(lambda: not WebhookDelivery.objects.filter(pk__in=deliveries).exclude(state="processed").exists(),
                    what="the worker to drain both deliveries")
    telegram = Conversation.objects.get(channel_account=m.telegram, thread_key="chat:456")
    mastodon = Conversation.objects.get(channel_account=m.mastodon, thread_key="117020577157693549")
    return telegram, mastodon


def test_hostile_names_texts_file_names_and_links_render_inert_on_every_page(
        console: Console, agent: User, team: Team, worker: CeleryWorker, fake_platform: FakePlatform) -> None:
    m = morning(team)
    telegram, mastodon = hostile_world(m, console, worker, fake_platform, team)
    stored = Interaction.objects.get(conversation=telegram)
    assert (stored.text, stored.attachments[0]["file_name"]) == (CAPTION, FILE_NAME)
    tg_identity = SocialIdentity.objects.get(platform="telegram", external_id="456")
    assert tg_identity.display_name == f"{TELEGRAM_FIRST} {TELEGRAM_LAST}"
    md_identity = SocialIdentity.objects.get(platform="mastodon", external_id="117020565693913441")
    assert (md_identity.display_name, md_identity.profile_url) == (MASTODON_NAME, JS_URL)
    console.log_in_as(agent)

    page = console.goto("/inbox/")
    row = page.locator(f'[data-testid="inbox-row"][data-conversation-id="{telegram.pk}"]')
    expect(row).to_contain_text(f"{TELEGRAM_FIRST} {TELEGRAM_LAST}")
    expect(row).to_contain_text(CAPTION[:60])
    expect(page.locator(f'[data-testid="inbox-row"][data-conversation-id="{mastodon.pk}"]')).to_contain_text(
        MASTODON_NAME)
    assert_inert(console, page)

    page = console.goto(f"/conversations/{telegram.pk}/")
    expect(page.get_by_test_id("message-text")).to_have_text(CAPTION)
    expect(page.get_by_test_id("message-author")).to_have_text(f"{TELEGRAM_FIRST} {TELEGRAM_LAST}")
    expect(page.get_by_test_id("attachment")).to_contain_text(FILE_NAME)
    expect(page.get_by_test_id("customer-card")).to_contain_text(f"{TELEGRAM_FIRST} {TELEGRAM_LAST}")
    assert_inert(console, page)

    page = console.goto(f"/conversations/{mastodon.pk}/")
    expect(page.get_by_test_id("message-author")).to_have_text(MASTODON_NAME)
    expect(page.get_by_test_id("message-text")).to_contain_text("Hier klicken")
    expect(page.get_by_test_id("attachment")).to_have_count(1)
    assert_inert(console, page)

    page = console.goto(f"/customers/{tg_identity.customer_id}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{TELEGRAM_FIRST} {TELEGRAM_LAST}")
    expect(page.get_by_test_id("identity")).to_contain_text(f"{TELEGRAM_FIRST} {TELEGRAM_LAST}")
    expect(page.get_by_test_id("timeline-item")).to_contain_text(CAPTION)
    expect(page.get_by_test_id("timeline-item")).to_contain_text(FILE_NAME)
    assert_inert(console, page)

    page = console.goto(f"/customers/{md_identity.customer_id}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(MASTODON_NAME)
    expect(page.get_by_test_id("identity")).to_contain_text(MASTODON_NAME)
    expect(page.get_by_test_id("timeline-item")).to_contain_text("Hier klicken")
    assert_inert(console, page)

    page = console.goto("/search/?q=alert(1)")
    expect(page.get_by_test_id("search-result")).to_have_count(2)  # both authors' names carry it
    expect(page.get_by_test_id("message-result")).to_have_count(1)  # the Telegram caption (Mastodon's is cleaned)
    expect(page.get_by_test_id("message-result")).to_contain_text(CAPTION)
    assert_inert(console, page)

    page = console.goto("/channels/health/")
    expect(page.get_by_text(PLATFORM_ERROR, exact=False)).to_be_visible()
    expect(page.get_by_role("heading", name=f"{SCRIPT} Support-Bot")).to_be_visible()
    assert_inert(console, page)


def test_the_checks_see_a_payload_that_runs(console: Console) -> None:
    """The checks above are not vacuous: where the same payloads do reach a page as HTML, they see it."""
    page = console.page
    page.set_content(f"<p>{CAPTION}</p>")  # a page without the console's escaping nor its policy

    expect(page.locator("iframe")).to_have_count(1)
    with pytest.raises(AssertionError, match="found on"):
        assert_inert(console, page)
    assert len(console.dialogs) >= 2  # the script and the event handlers ran
    assert set(console.dialogs) == {"alert: 1"}
    assert any("unexpected alert dialog" in p for p in console.problems)
    console.problems.clear()  # seen, as it must be; the test itself passes
