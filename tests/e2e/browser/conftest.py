"""Fixtures of the browser tests: Playwright drives Debian's Chromium, headless, against the live server.

The tests sit under tests/e2e, so everything of the end-to-end tests applies: a real Celery worker on a Redis
database of its own (`worker`), the fake platform server (`fake_platform`), `transaction=True` tests whose rows the
worker and the live server see. On top of that:

- `live_server` (pytest-django) serves the whole site from a thread of this process, static files included (the
  console's CSS and JS, and htmx from django-htmx, through the staticfiles handler; WhiteNoise would serve them
  too). Its host is added to ALLOWED_HOSTS by pytest-django. Because it runs in this process, the `worker` fixture's
  broker applies to it: a reply queued by a page, or a webhook's drain, is published to the test's own worker, and
  the cache that schedules the drain is pointed at the same Redis database (`browser_settings`).
- The browser: `/usr/bin/chromium` (Debian's package; `.ci/run` installs it), launched once per test package
  through `executable_path`, never a browser that Playwright downloads. Missing outside CI the tests are skipped
  with the reason; under CI (`CI=true`) a missing browser is an error.
- `console`: a fresh browser context per test (its own cookies and storage; 1366×768, English, Europe/Berlin),
  with one page that the test drives (`Console`). Every console error of the page (a script error, a CSP
  violation, a failed request), every uncaught exception and every dialog that a test did not announce with
  `Console.expect_confirm` is recorded, and a test with any of them fails after its body has run.
- Log in: `Console.log_in_with_form` fills the real login form (the login test); the other tests start from a
  session made by Django's test client (`Console.log_in_as`), which skips a password hash per test.
- Screenshots (`Console.screenshot`) are written to docs/screenshots/ only when `SCREENSHOTS=1` is set, so that a
  normal run (CI's) leaves the tree as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import pathlib
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    Response,
    expect,
    sync_playwright,
)

from access.models import Team
from channels.adapters.base import Author, Direction, EventKind, InboundEvent
from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.models import Customer, SocialIdentity
from conversations.api.services import conversation_add_tag, conversation_set_status
from conversations.models import Conversation

from ..fakeplatform import FakeMastodon, FakePlatform, FakeTelegram

if TYPE_CHECKING:
    from pytest_django.fixtures import SettingsWrapper
    from pytest_django.live_server_helper import LiveServer

    from ..conftest import CeleryWorker

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 768}
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
WAIT_MS = 10_000  # the longest a step waits for the page (an htmx poll, a worker's task)
BROWSERS = pytest.StashKey[list["Console"]]()
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"
# Requests whose 404 is no error: Chromium asks for /favicon.ico by itself (the console declares no icon), and the
# avatar proxy answers 404 for a picture it cannot show, over which the page keeps the initials.
EXPECTED_MISSES = r"/favicon\.ico|/avatars/\d+/"

expect.set_options(timeout=WAIT_MS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Chromium against the live server (tests/e2e/browser)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a browser test's body passed, fail it for what the browser saw: errors, CSP violations, dialogs."""
    result = yield
    problems = [p for console in item.stash.get(BROWSERS, []) for p in console.problems]
    if problems:
        raise AssertionError("the browser reported:\n" + "\n".join(f"- {p}" for p in problems))
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, add where each page was and what it showed to the report (the pages are still open here)."""
    report = yield
    if report.failed and call.when == "call":
        for number, console in enumerate(item.stash.get(BROWSERS, []), start=1):
            report.sections.append((f"browser page {number}", console.describe()))
    return report


# -- the browser ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for this package's tests; a temporary profile is made by Playwright."""
    if not CHROMIUM.exists():
        reason = f"the browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI it must be installed (.ci/run does)")
        pytest.skip(reason)
    # Playwright's sync API keeps an asyncio loop registered as running in this thread while it is started, and
    # Django refuses ORM calls where a loop runs. The tests' own ORM calls never run inside that loop (Playwright
    # switches to it only within its own calls), so the check is lifted while the browser is up, and only then.
    lifted = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if lifted is None:
            del os.environ[ASYNC_UNSAFE]
        else:
            os.environ[ASYNC_UNSAFE] = lifted


@pytest.fixture
def browser_settings(settings: SettingsWrapper, worker: CeleryWorker) -> SettingsWrapper:
    """The web side of the test (the live server's thread) schedules its Celery work on the test's worker."""
    # The webhook intake debounces its drain through the cache: the broker's database, so that another test run's
    # cache entries on this machine never delay it (as tests/e2e/test_webhook_drain.py does).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": worker.broker.url}}
    settings.WEBHOOK_ACCOUNT_CACHE_SECONDS = 0
    return settings


class Console:
    """One browser page on the live server, and what went wrong in it.

    `problems` collects console errors (CSP violations are reported there too), uncaught exceptions and dialogs
    that nobody announced; `pytest_runtest_call` fails the test when it is not empty.
    """

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self._confirm: str | None = None
        self.page = context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught exception: {error}"))
        self.page.on("dialog", self._on_dialog)
        self.page.on("response", self._on_response)

    # -- what the page reports

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "assert"):
            return
        where = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and (
                re.fullmatch(EXPECTED_MISSES, urllib.parse.urlsplit(where).path)):
            return
        self.problems.append(f"console {message.type}: {message.text} ({where})")

    def _on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if dialog.type == "confirm" and self._confirm is not None and re.search(self._confirm, dialog.message):
            self._confirm = None
            dialog.accept()
            return
        self.problems.append(f"unexpected {dialog.type} dialog: {dialog.message!r}")
        dialog.dismiss()

    def _on_response(self, response: Response) -> None:
        if response.status >= 500 and response.url.startswith(self.base_url):
            self.problems.append(f"{response.status} from {response.request.method} {response.url}")

    @contextlib.contextmanager
    def expect_confirm(self, message: str = ".") -> Iterator[None]:
        """Accept the one confirm() dialog (whose text matches `message`) that the block's action opens."""
        self._confirm = message
        try:
            yield
        finally:
            self._confirm = None

    # -- driving it

    def url(self, path: str) -> str:
        return self.base_url + path

    def goto(self, path: str) -> Page:
        response = self.page.goto(self.url(path))
        assert response is not None, f"GET {path}: no answer"
        assert response.ok, f"GET {path}: {response.status}"
        return self.page

    def log_in_as(self, user: User) -> None:
        """Start the browser's session as `user` (a session made by Django's test client, not the form)."""
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        self.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": self.base_url,
                                   "httpOnly": True, "sameSite": "Lax"}])

    def log_in_with_form(self, username: str, password: str, *, next_path: str = "") -> None:
        self.goto("/login/" + (f"?next={next_path}" if next_path else ""))
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()

    def mark_page(self) -> None:
        """Put a marker on `window` that a reload or a navigation would drop (`still_same_page`)."""
        self.page.evaluate("window.__browserTestMarker = 'kept'")

    def still_same_page(self) -> bool:
        return self.page.evaluate("window.__browserTestMarker") == "kept"

    def describe(self) -> str:
        """Where the page is and what it shows, for a failure's report."""
        lines = [f"url: {self.page.url}", *[f"problem: {p}" for p in self.problems],
                 *[f"dialog: {d}" for d in self.dialogs]]
        with contextlib.suppress(Error):
            lines += ["text of <main>:", self.page.locator("main").inner_text(timeout=1000)[:5000]]
        return "\n".join(lines)

    def screenshot(self, name: str) -> None:
        """docs/screenshots/<name>.png of the viewport, only when SCREENSHOTS=1 (CI leaves the tree alone)."""
        if os.environ.get("SCREENSHOTS") != "1":
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        self.page.mouse.move(0, 0)  # no hover state in the picture
        self.page.evaluate("document.activeElement && document.activeElement.blur()")  # nor a blinking caret
        self.page.evaluate("window.scrollTo(0, 0)")  # the top of the page, as it opens
        # Playwright's own caret hiding writes style="" on every input, which htmx's settling then copies onto the
        # swapped-in elements: a CSP violation the page did not cause. So the caret is left alone, unfocused.
        self.page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), caret="initial")


@contextlib.contextmanager
def _opened(request: pytest.FixtureRequest, browser: Browser, base_url: str) -> Iterator[Console]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id="Europe/Berlin", base_url=base_url)
    # CSP violations are printed by Chromium as console errors already; this names the directive and the blocked
    # thing in the report as well. An init script is the browser's own, so the page's policy does not apply to it.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', function (e) {"
        " console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline')"
        " + ' at ' + e.sourceFile + ':' + e.lineNumber); });"
    )
    console = Console(context, base_url)
    request.node.stash.setdefault(BROWSERS, []).append(console)
    try:
        yield console
    finally:
        with contextlib.suppress(Error):
            context.close()


@pytest.fixture
def console(request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer,
            browser_settings: SettingsWrapper) -> Iterator[Console]:
    """A fresh context and page for one test (nobody logged in yet)."""
    with _opened(request, browser, live_server.url) as console:
        yield console


@pytest.fixture
def colleague_console(request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer,
                      browser_settings: SettingsWrapper) -> Iterator[Console]:
    """A second browser, for a colleague working at the same time (its own cookies: another agent)."""
    with _opened(request, browser, live_server.url) as console:
        yield console


# -- people and channels --------------------------------------------------------------------------------------------

PASSWORD = "rote Lampe am Router 42"


@pytest.fixture
def fast_passwords(settings: SettingsWrapper) -> None:
    """A fast password hasher, for speed only: the login form and the authentication stay Django's own."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def team(transactional_db: None) -> Team:
    return Team.objects.create(name="Kundenservice")


def _user(username: str, first: str, last: str, group: str, team: Team, password: str | None = None) -> User:
    user = User.objects.create_user(username, email=f"{username}@example.com", first_name=first, last_name=last,
                                    password=password)
    user.groups.add(Group.objects.get(name=group))
    team.members.add(user)
    return user


@pytest.fixture
def agent(team: Team) -> User:
    """Anna Becker, an agent of the team: sees the team's channel accounts, answers, assigns and resolves."""
    return _user("anna", "Anna", "Becker", "Agents", team)


@pytest.fixture
def staff(team: Team) -> User:
    """Jonas Wolf, CRM staff: sees every customer, merges and undoes merges."""
    return _user("jonas", "Jonas", "Wolf", "CRM staff", team)


def channel_account(team: Team, platform: str, name: str, external_id: str, **fields: Any) -> ChannelAccount:
    """A channel account that the team sees."""
    account = ChannelAccount.objects.create(platform=platform, name=name, external_id=external_id, **fields)
    team.channel_accounts.add(account)
    return account


# -- webhooks as the platforms send them ----------------------------------------------------------------------------


def post_webhook(base_url: str, account: ChannelAccount, body: bytes, headers: dict[str, str]) -> int:
    """POST a signed webhook body to the live server as the platform would; the stored delivery's id."""
    response = httpx.post(f"{base_url}/webhooks/{account.platform}/{account.pk}/", content=body,
                          headers={"Content-Type": "application/json", **headers}, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["received"])


def telegram_headers(secret: str) -> dict[str, str]:
    return {"X-Telegram-Bot-Api-Secret-Token": secret}


def mastodon_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def webhook_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


# -- demo-like data: a service team's morning -----------------------------------------------------------------------


def ago(minutes: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=minutes)


def person(platform: str, external_id: str, handle: str, name: str, scope: str = "") -> Author:
    return Author(platform=platform, external_id=external_id, scope=scope, handle=handle, display_name=name)


def said(who: Author | None, external_id: str, text: str, *, minutes_ago: float, thread: str = "",
         kind: EventKind = EventKind.MENTION, reply_to: str = "", direction: Direction = Direction.INBOUND,
         attachments: Iterable[dict[str, Any]] = ()) -> InboundEvent:
    """One interaction on `who`'s platform, `minutes_ago` minutes before now."""
    platform = who.platform if who is not None else "x"
    return InboundEvent(platform=platform, external_id=external_id, kind=kind, occurred_at=ago(minutes_ago),
                        author=who, text=text, thread_key=thread or external_id, reply_to_id=reply_to,
                        direction=direction, attachments=tuple(attachments), raw={"id": external_id, "text": text})


@dataclasses.dataclass
class Morning:
    """The channel accounts of a service team and who wrote to them this morning (see `morning`)."""

    x: ChannelAccount
    facebook: ChannelAccount
    telegram: ChannelAccount
    mastodon: ChannelAccount
    email: ChannelAccount
    instagram: ChannelAccount
    whatsapp: ChannelAccount
    lena: Author  # X: her router blinks red
    thomas: Author  # X: a thread with our answer and his follow-up
    murat: Author  # Facebook comment: tariffs
    sophie: Author  # Telegram DM: a double debit
    emre: Author  # Mastodon mention: an outage
    klaus: Author  # e-mail: cancelling a landline
    jana: Author  # Instagram comment: fibre
    peter: Author  # WhatsApp: an eSIM

    def conversation(self, who: Author) -> Conversation:
        return Conversation.objects.get(identity__platform=who.platform, identity__external_id=who.external_id,
                                        identity__scope=who.scope)

    def customer(self, who: Author) -> Customer:
        return SocialIdentity.objects.get(platform=who.platform, scope=who.scope,
                                          external_id=who.external_id).customer


MASTODON_INSTANCE = "localhost:3000"  # the instance of the recorded Mastodon account (FakeMastodon)
TELEGRAM_SECRET = "telegram-webhook-secret-token"
MASTODON_SECRET = "mastodon-webhook-secret"


def morning(team: Team, fake: FakePlatform | None = None) -> Morning:
    """Eight customers on seven channels, as a service inbox looks at 10 o'clock, stored through ingest: six
    conversations open, one pending (Murat), one resolved (Klaus), some tagged.

    The Telegram and Mastodon accounts take webhooks (their secrets: TELEGRAM_SECRET, MASTODON_SECRET); the
    Mastodon account is the fake platform's (`FakeMastodon`), so replies there reach the fake platform server.
    """
    api = {"api_base_url": fake.url} if fake else {}
    m = Morning(
        x=channel_account(team, "x", "@HalloNetz_hilft", "1510000000000000001"),
        facebook=channel_account(team, "facebook", "HalloNetz", "104000000000001"),
        telegram=channel_account(team, "telegram", "@hallonetz_bot", FakeTelegram.token.split(":")[0],
                                 credentials={"bot_token": FakeTelegram.token},
                                 webhook_secret={"secret_token": TELEGRAM_SECRET},
                                 config=api),
        mastodon=channel_account(team, "mastodon", "@hallonetz", FakeMastodon.account_id,
                                 credentials={"access_token": FakeMastodon.token},
                                 webhook_secret={"secret": MASTODON_SECRET},
                                 config={"instance": MASTODON_INSTANCE, **api}),
        email=channel_account(team, "email", "Kundenservice", "service@hallonetz.example"),
        instagram=channel_account(team, "instagram", "@hallonetz", "17841400000000007"),
        whatsapp=channel_account(team, "whatsapp", "HalloNetz Service", "106540000000008"),
        lena=person("x", "2810001", "lena_schmidt", "Lena Schmidt"),
        thomas=person("x", "2810002", "tmueller_ffm", "Thomas Müller"),
        murat=person("facebook", "7310004", "", "Murat Yılmaz", scope="104000000000001"),
        sophie=person("telegram", "530000005", "sophie_w", "Sophie Wagner"),
        emre=person("mastodon", "110000000000000006", "emre@chaos.social", "Emre Demir", scope=MASTODON_INSTANCE),
        klaus=person("email", "klaus.peters@example.org", "klaus.peters@example.org", "Klaus Peters"),
        jana=person("instagram", "17841400000000071", "jana.krueger", "Jana Krüger", scope="17841400000000007"),
        peter=person("whatsapp", "4917612345678", "+49 176 12345678", "Peter Hoffmann", scope="106540000000008"),
    )
    brand = person("x", m.x.external_id, "HalloNetz_hilft", "HalloNetz hilft")
    ingest(m.x, [
        said(m.thomas, "1851000000000000001", "@HalloNetz_hilft Mein Techniker-Termin heute wurde ohne Info "
             "abgesagt. Wie geht es jetzt weiter?", minutes_ago=190),
        said(brand, "1851000000000000002", "@tmueller_ffm Hallo Thomas, das tut uns leid! Schreib uns bitte per "
             "DM deine Kundennummer, dann suchen wir einen neuen Termin. ^AB", minutes_ago=172,
             thread="1851000000000000001", kind=EventKind.REPLY, reply_to="1851000000000000001",
             direction=Direction.OUTBOUND),
        said(m.thomas, "1851000000000000003", "@HalloNetz_hilft DM ist raus, danke für die schnelle Antwort!",
             minutes_ago=24, thread="1851000000000000001", kind=EventKind.REPLY, reply_to="1851000000000000002"),
        said(m.lena, "1851000000000000004", "@HalloNetz_hilft Seit heute Morgen blinkt mein Router rot und das "
             "Internet ist komplett weg. Neustart hat nichts gebracht. Könnt ihr bitte mal schauen?", minutes_ago=7),
    ])
    ingest(m.facebook, [said(m.murat, "104000000000001_880001", "Mein Vertrag läuft im März aus. Welche Tarife "
                             "gibt es für Bestandskunden mit Glasfaser?", minutes_ago=38, kind=EventKind.COMMENT,
                             thread="104000000000001_870001", reply_to="104000000000001_870001")])
    ingest(m.telegram, [said(m.sophie, "530000005:41", "Hallo, die Rechnung für Oktober wurde doppelt abgebucht. "
                             "Kundennummer 4711-0815. Wie bekomme ich das Geld zurück?", minutes_ago=52,
                             kind=EventKind.DIRECT_MESSAGE, thread="chat:530000005",
                             attachments=[{"type": "document", "file_name": "Kontoauszug_Oktober.pdf",
                                           "mime_type": "application/pdf", "file_id": "BQACAgIAAxkBAAIBQ"}])])
    ingest(m.mastodon, [said(m.emre, "113500000000000001", "@hallonetz Gibt es eine Störung in Leipzig-Connewitz? "
                             "Seit 10 Uhr kein Mobilfunk, SMS gehen auch nicht.", minutes_ago=16)])
    ingest(m.email, [said(m.klaus, "<kuendigung-4711@example.org>", "Sehr geehrte Damen und Herren,\n\nhiermit "
                          "kündige ich meinen Festnetzanschluss fristgerecht zum 31.12.\n\nMit freundlichen "
                          "Grüßen\nKlaus Peters", minutes_ago=240, kind=EventKind.DIRECT_MESSAGE)])
    ingest(m.instagram, [said(m.jana, "17900000000000071", "Wann kommt endlich Glasfaser nach Bornheim? Die "
                              "Bagger waren doch schon im Sommer da 🙈", minutes_ago=64, kind=EventKind.COMMENT,
                              thread="17900000000000070", reply_to="17900000000000070")])
    ingest(m.whatsapp, [said(m.peter, "wamid.HBgNNDkxNzYxMjM0NTY3OBUCABIYFjNFQjA", "Hallo! Meine eSIM lässt sich "
                             "nicht aktivieren, der QR-Code wird abgelehnt. Was kann ich tun?", minutes_ago=95,
                             kind=EventKind.DIRECT_MESSAGE, thread="4917612345678")])
    for who, name, number in [(m.lena, "Lena Schmidt", "K-100-2231"), (m.sophie, "Sophie Wagner", "4711-0815"),
                              (m.thomas, "Thomas Müller", "")]:
        Customer.objects.filter(pk=m.customer(who).pk).update(display_name=name, customer_number=number)
    conversation_add_tag(conversation_id=m.conversation(m.emre).pk, name="Störung")
    conversation_add_tag(conversation_id=m.conversation(m.sophie).pk, name="Rechnung")
    conversation_add_tag(conversation_id=m.conversation(m.thomas).pk, name="Techniker")
    conversation_set_status(conversation_id=m.conversation(m.murat).pk, status=Conversation.Status.PENDING)
    conversation_set_status(conversation_id=m.conversation(m.klaus).pk, status=Conversation.Status.RESOLVED)
    return m
