"""End to end, per polled platform: a real Celery worker syncs a channel account from the fake platform server.

Each test enqueues the sync as beat or an agent would (`sync_account` / `sync_due_accounts`), waits until the worker
has stored the recorded pages, checks that the interactions are threaded (one conversation per thread key, replies in
their parent's conversation) and linked to identities that have a customer, then syncs again: nothing is added, and
the platform was asked only for what is newer than the stored cursor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from channels.adapters.base import CREATE_KINDS, Direction
from channels.adapters.demo import PAGES, DemoAdapter
from channels.models import ChannelAccount
from tests.channels.adapters.test_mail_imap_smtp import FakeImap, recorded_mailboxes, serving

from .fakeplatform import FakeGraph, FakeInstagram, FakeMastodon, FakePlatform, FakeTelegram, FakeX, graph_fields

if TYPE_CHECKING:
    from .conftest import CeleryWorker, Crm, Stored

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

View = tuple[str, str, str | None, str, tuple[str, str, str] | None]


def view(stored: dict[str, Stored]) -> dict[str, View]:
    """Kind, direction, thread key, reply-to and (for what customers wrote) the identity of each interaction."""
    return {external_id: (s.kind, s.direction, s.thread_key, s.reply_to, s.identity if s.direction == "in" else None)
            for external_id, s in stored.items()}


def assert_linked_to_customers(stored: dict[str, Stored]) -> None:
    """Every inbound interaction with an identity reaches a customer through it."""
    linked = [s for s in stored.values() if s.direction == "in" and s.identity is not None]
    assert linked
    assert all(s.customer_id is not None for s in linked)


# -- X --------------------------------------------------------------------------------------------------------------

X_USER = "2244994945"  # @TwitterDev, whom the recorded mention pages mention
X_NEXT_TOKEN = "7140dibdnow9c7btw3w3ixl43r8knib48jsfyzko1h5py"
X_NEWEST = "1364398068313903104"
X_DM = "1585321444547837956"
X_THREAD = "1273733248749690880"  # the root of the recorded reply thread (python-twitter README)


def x_expected() -> dict[str, View]:
    # The first recorded page was saved without `expansions=author_id`: its mentions name no author, so they get no
    # identity (none is made up). The reply thread and the DM name theirs.
    mentions = ["1364398068313903104", "1364377794327633925", "1364377404156772352", "1364373969852366849",
                "1364367885582352386"]
    expected: dict[str, View] = {m: ("mention", "in", m, "", None) for m in mentions}
    for tweet, reply_to, author in [("1276035977375477760", "1275653067283759104", "63046977"),
                                    ("1275882613572583424", X_THREAD, "17200003"),
                                    ("1275763727908798470", "1275653067283759104", "196883832"),
                                    ("1275653067283759104", "1274086728471461889", "17200003")]:
        expected[tweet] = ("reply", "in", X_THREAD, reply_to, ("x", "", author))
    expected[X_DM] = ("dm", "in", "dm:1585094756761149440", "", ("x", "", "906948460078698496"))
    return expected


def x_account(fake: FakePlatform, external_id: str = X_USER) -> ChannelAccount:
    return ChannelAccount.objects.create(
        platform="x", name=f"X {external_id}", external_id=external_id, credentials={"access_token": FakeX.token},
        config={"api_base_url": fake.url, "dm_poll_seconds": 1},
    )


def test_x_mentions_and_dms_are_stored_threaded_and_linked_and_a_second_sync_adds_nothing(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = x_account(fake_platform)

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    stored = crm.interactions(account)
    assert view(stored) == x_expected()
    assert crm.replies_outside_their_parents_conversation(account) == []
    assert_linked_to_customers(stored)
    assert crm.counts() == {"interactions": 10, "conversations": 7, "identities": 4, "customers": 4}
    assert account.sync_cursor["since_id"] == X_NEWEST
    assert account.sync_cursor["dm_since_id"] == X_DM

    # The next DM poll is due one second later (config dm_poll_seconds); then sync again.
    due = dt.datetime.fromisoformat(account.sync_cursor["dm_next_at"])
    worker.wait_for(lambda: timezone.now() >= due, what="the next DM poll to be due", timeout=5)
    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    assert (account.sync_cursor["since_id"], account.sync_cursor["dm_since_id"]) == (X_NEWEST, X_DM)
    mentions = fake_platform.seen("GET", rf"/2/users/{X_USER}/mentions")
    assert [(r.param("since_id"), r.param("pagination_token")) for r in mentions] == [
        (None, None), (None, X_NEXT_TOKEN),  # the first sync walks both recorded pages
        (X_NEWEST, None),  # the second asks only for what is newer than the newest stored mention
    ]
    assert len(fake_platform.seen("GET", "/2/dm_events")) == 2


# -- Facebook -------------------------------------------------------------------------------------------------------

PAGE = FakeGraph.page_id
CUSTOMER_PSID = "2711636948859886"  # Kun Liu, who comments and writes to the page in the recordings
# The recordings are from July 2021: the account's last poll ended just before them.
FACEBOOK_SINCE = int(dt.datetime(2021, 7, 19, tzinfo=dt.UTC).timestamp())


def test_facebook_feed_and_messenger_are_stored_threaded_and_linked_and_a_second_sync_adds_nothing(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="facebook", name="MyLife", external_id=PAGE, credentials={"page_access_token": FakeGraph.token},
        config={"api_base_url": f"{fake_platform.url}/v21.0"}, sync_cursor={"since": FACEBOOK_SINCE},
    )

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    post = f"{PAGE}_{FakeGraph.POST_ID}"
    kun_liu = ("facebook", PAGE, CUSTOMER_PSID)
    stored = crm.interactions(account)
    assert view(stored) == {
        post: ("post", "out", post, "", None),  # the page's own post
        f"{FakeGraph.POST_ID}_2966313500250461": ("comment", "in", post, post, kun_liu),
        "m_ToF35NI1OImBjyUIgplSaBMylUFmkYY4bHogy9C1otLISU6SGhccB5NK-THX_W4EdVQiKVv5SgCW9m-_C78mRA": (
            "dm", "in", f"psid:{CUSTOMER_PSID}", "", kun_liu),
    }
    assert crm.replies_outside_their_parents_conversation(account) == []
    assert_linked_to_customers(stored)
    assert crm.counts() == {"interactions": 3, "conversations": 2, "identities": 1, "customers": 1}

    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    feed = fake_platform.seen("GET", rf"/v21.0/{PAGE}/feed")
    assert len(feed) == 2
    # The first feed request reaches back from the stored `since` (less the comment window of 7 days); the second
    # from this run's start, minutes ago, so the old post is not served again.
    assert int(feed[0].param("since")) == FACEBOOK_SINCE - 7 * 86400
    assert int(feed[1].param("since")) > int((timezone.now() - dt.timedelta(days=7, minutes=10)).timestamp())
    assert len(fake_platform.seen("GET", rf"/v21.0/{PAGE}/conversations")) == 2
    assert account.sync_cursor["since"] > int((timezone.now() - dt.timedelta(minutes=10)).timestamp())


# -- Instagram ------------------------------------------------------------------------------------------------------

IG_ACCOUNT = FakeInstagram.account_id
IG_MEDIA = FakeInstagram.MEDIA_ID
IG_SAMPLE_MEDIA = "76543987"  # the media of Meta's webhook test delivery (restfb), with its one reply
# The recordings are from 2018 (Meta's test delivery) and 2020: the account's last poll ended just before them.
INSTAGRAM_SINCE = int(dt.datetime(2018, 2, 23, tzinfo=dt.UTC).timestamp())


def test_instagram_media_comments_are_stored_threaded_and_linked_and_a_second_sync_adds_nothing(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="instagram", name="@ikroskun", external_id=IG_ACCOUNT,
        credentials={"page_access_token": FakeInstagram.token},
        config={"api_base_url": f"{fake_platform.url}/v21.0"}, sync_cursor={"since": INSTAGRAM_SINCE},
    )

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    testuser = ("instagram", IG_ACCOUNT, "1234536447")  # scoped to our account, as every Instagram author
    stored = crm.interactions(account)
    assert view(stored) == {
        # The parent comment names no author (none was recorded): it takes its conversation's identity.
        "987654321": ("comment", "in", IG_SAMPLE_MEDIA, IG_SAMPLE_MEDIA, testuser),
        "123456789": ("reply", "in", IG_SAMPLE_MEDIA, "987654321", testuser),
        # Recorded without an author id: stored, with no identity made up.
        "17858154961981086": ("comment", "in", IG_MEDIA, IG_MEDIA, None),
        "17874875428706419": ("comment", "in", IG_MEDIA, IG_MEDIA, None),
        "17892250648466172": ("comment", "out", IG_MEDIA, IG_MEDIA, None),  # the account's own comment
        "17845747489952795": ("reply", "in", IG_MEDIA, "17892250648466172", None),
    }
    assert crm.replies_outside_their_parents_conversation(account) == []
    assert_linked_to_customers(stored)
    assert crm.counts() == {"interactions": 6, "conversations": 2, "identities": 1, "customers": 1}
    first_since = account.sync_cursor["since"]
    assert first_since > int((timezone.now() - dt.timedelta(minutes=10)).timestamp())

    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    assert account.sync_cursor["since"] >= first_since
    media = fake_platform.seen("GET", rf"/v21.0/{IG_ACCOUNT}/media")
    # One page per sync: every media fits in it, so there is no `after` to follow. The adapter sends no time to
    # this edge (the fake would honour `since` / `until`), so the second sync is answered the same page: what keeps
    # the old comments out is the cursor the first sync advanced (`since`, minutes ago), applied by the adapter.
    assert [(r.param("limit"), r.param("after"), r.param("since"), r.param("until")) for r in media] == [
        ("25", None, None, None), ("25", None, None, None)]
    # The authors' ids come from field expansion: `from` on the comments and on their replies.
    for request in media:
        comments = graph_fields(request.param("fields") or "")["comments"][1] or {}
        assert "from" in comments
        assert "from" in (comments["replies"][1] or {})


# -- Telegram -------------------------------------------------------------------------------------------------------


def test_telegram_updates_are_stored_threaded_and_linked_and_a_second_sync_adds_nothing(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="telegram", name="@support_bot", external_id=FakeTelegram.token.split(":")[0],
        credentials={"bot_token": FakeTelegram.token}, config={"api_base_url": fake_platform.url, "page_size": 4},
    )

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    stored = crm.interactions(account)
    chats = {"12345678": "123456", "10081232": "428640", "11111111": "456901", "12345": "123456", "456": "123",
             "321654": "123"}  # chat (= sender, private chats) -> message id, of the six recorded Updates
    assert view(stored) == {f"{chat}:{message}": ("dm", "in", f"chat:{chat}", "", ("telegram", "", chat))
                            for chat, message in chats.items()}
    assert_linked_to_customers(stored)
    assert crm.counts() == {"interactions": 6, "conversations": 6, "identities": 6, "customers": 6}
    first = FakeTelegram.FIRST_UPDATE_ID
    assert account.sync_cursor == {"offset": first + 6}

    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    polls = fake_platform.seen(path=rf"/bot{FakeTelegram.token}/getUpdates")
    # Pages of four: a full page means more is waiting; the offset confirms what was stored.
    assert [r.param("offset") for r in polls] == [None, str(first + 4), str(first + 6)]
    assert fake_platform.telegram.pending == []  # every update confirmed, so Telegram has forgotten them


# -- the demo channel -----------------------------------------------------------------------------------------------


def demo_expected() -> dict[str, int]:
    """What the demo's recorded pages hold, read with the adapter in this process (pure parsing, no database)."""
    adapter, cursor, events = DemoAdapter(), {}, []
    while True:
        page = adapter.fetch(cursor)
        events += page.events
        cursor = page.cursor
        if not page.has_more:
            break
    creates = [e for e in events if e.kind in CREATE_KINDS]
    authors = {(e.author.platform or e.platform, e.author.scope, e.author.external_id)
               for e in creates if e.author is not None and e.direction == Direction.INBOUND}
    return {"interactions": len({e.external_id for e in events}),
            "conversations": len({e.thread_key for e in creates}), "identities": len(authors),
            "customers": len(authors)}


def test_demo_channel_synced_by_beat_stores_every_recorded_page_once(
        worker: CeleryWorker, crm: Crm) -> None:
    account = ChannelAccount.objects.create(platform="demo", name="Demo", external_id="demo", sync_interval=1)

    account = worker.sync(account, via_beat=True)

    assert (account.health, account.last_error) == ("ok", "")
    assert account.sync_cursor == {"position": len(PAGES)}
    assert crm.counts() == demo_expected()
    assert crm.replies_outside_their_parents_conversation(account) == []
    assert_linked_to_customers(crm.interactions(account))

    worker.wait_for(lambda: ChannelAccount.objects.filter(pk=account.pk, next_sync_at__lte=timezone.now()).exists(),
                    what="the demo account to be due again (sync_interval=1)", timeout=5)
    before = crm.counts()
    account = worker.sync(account, via_beat=True)

    assert crm.counts() == before
    assert account.sync_cursor == {"position": len(PAGES)}


# -- Mastodon -------------------------------------------------------------------------------------------------------


def test_mastodon_mentions_are_stored_linked_and_a_second_sync_asks_only_for_newer_ones(
        worker: CeleryWorker, fake_platform: FakePlatform, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="mastodon", name="@mastodonpy_test", external_id=FakeMastodon.account_id,
        credentials={"access_token": FakeMastodon.token},
        config={"instance": "localhost:3000", "api_base_url": fake_platform.url},
    )

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    stored = crm.interactions(account)
    status = "117020577157693549"  # "@mastodonpy_test hello!" by admin, in the recorded notification 21
    assert view(stored) == {status: ("mention", "in", status, "", ("mastodon", "localhost:3000",
                                                                    "117020565693913441"))}
    assert_linked_to_customers(stored)
    assert account.sync_cursor == {"min_id": "21"}

    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    polls = fake_platform.seen("GET", "/api/v1/notifications")
    assert [(r.query.get("types[]"), r.param("min_id")) for r in polls] == [(["mention"], None), (["mention"], "21")]


# -- e-mail ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def imap_server() -> Iterator[FakeImap]:
    """The fake IMAP server of the e-mail adapter's tests, with the recorded messages in INBOX."""
    with serving(FakeImap(recorded_mailboxes())) as server:
        yield server


def test_email_is_polled_over_imap_in_batches_threaded_and_a_second_sync_adds_nothing(
        worker: CeleryWorker, imap_server: FakeImap, crm: Crm) -> None:
    account = ChannelAccount.objects.create(
        platform="email", name="Support", external_id="support@example.com",
        credentials={"username": "support@example.com", "password": "imap-pass"},
        config={"imap_host": "127.0.0.1", "imap_port": imap_server.port, "imap_security": "none", "timeout": 5,
                "imap_max_messages": 4},
    )

    account = worker.sync(account)

    assert (account.health, account.last_error) == ("ok", "")
    stored = crm.interactions(account)
    chatwoot = ["0CB459E0-0336-41DA-BC88-E6E28C697DDBF@chatwoot.com",
                "0CB459E0-0336-41DA-BC88-E6E28C697DDB@chatwoot.com"]
    # Two recorded messages that answer the same (unrecorded) first mail share its conversation.
    assert {stored[m].thread_key for m in chatwoot} == {"4e6e35f5a38b4_479f13bb90078178@small-app-01.mail"}
    assert {stored[m].identity for m in chatwoot} == {("email", "", "sony@chatwoot.com")}
    assert all(s.kind == "dm" and s.direction == "in" and s.identity is not None for s in stored.values())
    assert_linked_to_customers(stored)
    # Ten recorded messages, two of which carry the same Message-ID: nine interactions.
    assert crm.counts() == {"interactions": 9, "conversations": 8, "identities": 6, "customers": 6}
    assert account.sync_cursor == {"uidvalidity": 1700000001, "last_uid": 30}

    before = crm.counts()
    account = worker.sync(account)

    assert crm.counts() == before
    searches = [c for c in imap_server.commands if c.startswith("UID SEARCH")]
    # Batches of four messages (imap_max_messages), then the second sync asks only for UIDs after the last one.
    assert searches == ["UID SEARCH UID 1:*", "UID SEARCH UID 13:*", "UID SEARCH UID 25:*", "UID SEARCH UID 31:*"]
