"""The inbox page (`/inbox/`) and its polled list (`/inbox/rows/`): views, filters, keyset pages, the SLA clock,
team scoping, escaping of hostile text, and a fixed number of queries whatever the number of conversations."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels.adapters.base import Author, EventKind
from channels.ingest import ingest
from channels.models import ChannelAccount
from conversations.api.services import conversation_add_tag, conversation_assign, conversation_set_status
from conversations.models import Conversation
from tests.api.conftest import World
from tests.channels.factories import T0, author, post, reply_from_us

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)><svg onload=alert(2)>'


def row_ids(response) -> list[int]:
    """The conversation ids of the inbox rows, top to bottom."""
    assert response.status_code == 200, response.content[:2000]
    return [int(i) for i in re.findall(rb'data-testid="inbox-row" data-conversation-id="(\d+)"', response.content)]


def threads(account: ChannelAccount, n: int, *, start: int = 0, who: int = 100) -> list[Conversation]:
    """n new conversations on the account, each a mention by its own author, one minute apart (newest last)."""
    ingest(account, [post(f"{account.pk}-c{i}", who=who + i, minutes=10 + i, text=f"Frage {i}\nzweite Zeile")
                     for i in range(start, start + n)])
    return list(Conversation.objects.filter(channel_account=account).order_by("-last_activity_at", "-id"))


def test_the_open_view_lists_the_teams_conversations_newest_activity_first(
    world: World, console_for: Callable[[User], Client],
) -> None:
    # given three conversations on team a's account and one on team b's
    convs = threads(world.a.account, 2)
    client = console_for(world.a.agent)

    # when agent a opens the inbox
    response = client.get("/inbox/")

    # then the rows are team a's, newest activity first, and none of team b's
    assert row_ids(response) == [c.pk for c in convs]
    assert world.a.conversation.pk in row_ids(response)
    assert world.b.conversation.pk not in row_ids(response)
    html = response.content.decode()
    assert "Frage 1" in html
    assert "zweite Zeile" not in html
    assert 'data-testid="inbox-count-open">3<' in html
    assert "Content-Security-Policy" in response.headers
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    # the first page polls its list; the rows partial needs no reload
    assert 'hx-get="/inbox/rows/"' in html
    assert 'hx-trigger="every 3s"' in html
    assert 'aria-live="polite"' in html


def test_each_view_shows_its_conversations(world: World, console_for: Callable[[User], Client]) -> None:
    open_mine, pending, resolved, open_other = threads(world.a.account, 4)[:4]
    colleague = User.objects.create_user("colleague")
    world.a.account.teams.first().members.add(colleague)
    conversation_assign(conversation_id=open_mine.pk, assignee_id=world.a.agent.pk)
    conversation_assign(conversation_id=open_other.pk, assignee_id=colleague.pk)
    conversation_set_status(conversation_id=pending.pk, status="pending")
    conversation_assign(conversation_id=pending.pk, assignee_id=world.a.agent.pk)
    conversation_set_status(conversation_id=resolved.pk, status="resolved")
    client = console_for(world.a.agent)

    assert set(row_ids(client.get("/inbox/"))) == {open_mine.pk, open_other.pk, world.a.conversation.pk}
    assert set(row_ids(client.get("/inbox/?view=open"))) == {open_mine.pk, open_other.pk, world.a.conversation.pk}
    assert row_ids(client.get("/inbox/?view=pending")) == [pending.pk]
    assert row_ids(client.get("/inbox/?view=resolved")) == [resolved.pk]
    assert set(row_ids(client.get("/inbox/?view=mine"))) == {open_mine.pk, pending.pk}
    assert row_ids(client.get("/inbox/?view=unassigned")) == [world.a.conversation.pk]

    html = client.get("/inbox/?view=mine").content.decode()
    for view, count in {"open": 3, "pending": 1, "resolved": 1, "mine": 2, "unassigned": 1}.items():
        assert f'data-testid="inbox-count-{view}">{count}<' in html
    assert 'data-testid="inbox-view-mine" aria-current="page"' in html


def test_channel_and_tag_filters(world: World, staff: User, console_for: Callable[[User], Client]) -> None:
    tagged = threads(world.a.account, 1)[0]
    conversation_add_tag(conversation_id=tagged.pk, name="billing")
    conversation_add_tag(conversation_id=world.b.conversation.pk, name="beta-secret")
    client = console_for(staff)

    assert set(row_ids(client.get("/inbox/"))) == {tagged.pk, world.a.conversation.pk, world.b.conversation.pk}
    assert set(row_ids(client.get(f"/inbox/?channel={world.b.account.pk}"))) == {world.b.conversation.pk}
    assert row_ids(client.get("/inbox/?tag=billing")) == [tagged.pk]
    assert row_ids(client.get(f"/inbox/?tag=billing&channel={world.b.account.pk}")) == []

    # agent a's filters offer only team a's channel account and tags
    html = console_for(world.a.agent).get("/inbox/").content.decode()
    assert f'<option value="{world.a.account.pk}"' in html
    assert f'<option value="{world.b.account.pk}"' not in html
    assert '<option value="billing"' in html
    assert "beta-secret" not in html


def test_team_b_never_sees_team_a_in_the_inbox(world: World, console_for: Callable[[User], Client]) -> None:
    conversation_add_tag(conversation_id=world.a.conversation.pk, name="alpha-only")
    client = console_for(world.b.agent)

    assert row_ids(client.get("/inbox/")) == [world.b.conversation.pk]
    assert row_ids(client.get("/inbox/?tag=alpha-only")) == []
    assert client.get(f"/inbox/?channel={world.a.account.pk}").status_code == 404
    assert client.get(f"/inbox/rows/?channel={world.a.account.pk}").status_code == 404
    assert client.get("/inbox/?channel=999999").status_code == 404
    assert b"Hallo von alpha" not in client.get("/inbox/rows/").content


@pytest.mark.parametrize(("query", "message"), [
    ("view=everything", b"Unknown view"),
    ("channel=abc", b"channel account id"),
    ("tag=" + "x" * 65, b"at most 64"),
    ("cursor=not-a-cursor", b"no longer valid"),
    ("cursor=eyJ0IjoiMjAyNiJ9", b"no longer valid"),  # {"t":"2026"}: no id
    ("cursor=eyJ0IjoiMjAyNi0xMy00NVQwMDowMDowMCswMDowMCIsImkiOjF9", b"no longer valid"),  # month 13
    ("cursor=eyJ0IjoiMjAyNi0xMS0wMlQwOTowMDowMCIsImkiOjF9", b"no longer valid"),  # no time zone
    ("cursor=eyJ0IjoiMjAyNi0xMS0wMlQwOTowMDowMCswMDowMCIsImkiOiIxIn0", b"no longer valid"),  # id a string
])
def test_bad_parameters_answer_400_with_a_message(world: World, console_for: Callable[[User], Client],
                                                  query: str, message: bytes) -> None:
    response = console_for(world.a.agent).get(f"/inbox/?{query}")
    assert response.status_code == 400
    assert message in response.content
    assert b'role="alert"' in response.content
    assert console_for(world.a.agent).get(f"/inbox/rows/?{query}").status_code == 400


def test_older_pages_follow_a_keyset_cursor(world: World, console_for: Callable[[User], Client]) -> None:
    convs = threads(world.a.account, 60)  # 61 with the world's
    client = console_for(world.a.agent)

    first = client.get("/inbox/")
    first_ids = row_ids(first)
    assert first_ids == [c.pk for c in convs[:50]]
    older = re.search(rb'href="([^"]+)" rel="next" data-testid="inbox-older"', first.content)
    assert older is not None
    second = client.get(older.group(1).decode().replace("&amp;", "&"))
    assert row_ids(second) == [c.pk for c in convs[50:]]
    assert b'data-testid="inbox-older"' not in second.content
    assert b'data-testid="inbox-newest"' in second.content
    assert b'hx-trigger="every 3s"' not in second.content  # only the first page polls


def test_the_polled_list_shows_new_conversations_and_answers_204_while_unchanged(
    world: World, console_for: Callable[[User], Client],
) -> None:
    client = console_for(world.a.agent)
    page = client.get("/inbox/").content.decode()
    version = re.search(r'id="inbox-v" name="v" value="([0-9a-f]+)"', page).group(1)
    seen = re.search(r'id="inbox-seen" name="seen" value="([^"]*)"', page).group(1)

    unchanged = client.get("/inbox/rows/", {"v": version, "seen": seen})
    assert unchanged.status_code == 204
    assert client.get("/inbox/rows/", {"v": "x", "seen": "2026-13-45T00:00:00+00:00"}).status_code == 200  # ignored

    # a new mention arrives (as a webhook drain would ingest it)
    ingest(world.a.account, [post("late", who=77, minutes=600, text="Neu: Internet weg")])
    changed = client.get("/inbox/rows/", {"v": version, "seen": seen})

    assert changed.status_code == 200
    ids = row_ids(changed)
    assert ids[0] == Conversation.objects.get(thread_key="late").pk
    body = changed.content.decode()
    assert "Neu: Internet weg" in body
    assert 'id="inbox-notice" hx-swap-oob="innerHTML">1 conversation with new activity' in body
    assert 'id="inbox-tabs"' in body
    assert 'hx-swap-oob="true"' in body
    assert f'id="inbox-link-{ids[0]}"' in body  # ids keep the focused link across swaps


def test_waiting_time_runs_until_we_answer(world: World, console_for: Callable[[User], Client]) -> None:
    ingest(world.a.account, [
        post("q1", who=50, minutes=0, text="Hilfe?"),
        reply_from_us("a1", thread="q1", minutes=5),
        post("q2", who=50, minutes=7, thread="q1", text="Noch da?"),
        post("q3", who=50, minutes=9, thread="q1", text="Hallo?"),
        post("w1", who=51, minutes=1, text="Warte"),
        post("d1", who=52, minutes=2, text="Beantwortet"),
        reply_from_us("d2", thread="d1", minutes=3),
    ])
    client = console_for(world.a.agent)
    html = client.get("/inbox/").content.decode()

    def waiting(thread_key: str) -> dt.datetime | None:
        pk = Conversation.objects.get(channel_account=world.a.account, thread_key=thread_key).pk
        row = re.search(rf'data-conversation-id="{pk}".*?</tr>', html, re.S).group(0)
        found = re.search(r'<time datetime="([^"]+)"[^>]*data-testid="waiting"', row)
        return dt.datetime.fromisoformat(found.group(1)) if found else None

    assert waiting("q1") == T0 + dt.timedelta(minutes=7)  # the first message after our reply
    assert waiting("w1") == T0 + dt.timedelta(minutes=1)  # never answered
    assert waiting("d1") is None  # we answered last


def test_hostile_text_is_escaped_in_the_inbox(world: World, console_for: Callable[[User], Client]) -> None:
    hostile_author = Author(platform="x", external_id="u666", handle=HOSTILE, display_name=HOSTILE,
                            profile_url="javascript:alert(1)", avatar_url="https://tracker.example/pixel.png")
    ingest(world.a.account, [post("evil", author=hostile_author, minutes=30, text=HOSTILE, kind=EventKind.MENTION)])
    conversation = Conversation.objects.get(thread_key="evil")
    conversation_add_tag(conversation_id=conversation.pk, name="<script>tag</script>")
    client = console_for(world.a.agent)

    for response in (client.get("/inbox/"), client.get("/inbox/rows/"), client.get("/inbox/?tag=<script>tag</script>")):
        assert response.status_code == 200
        assert b"<script>" not in response.content
        assert b"<img src=x" not in response.content
        assert b"<svg" not in response.content
        assert b"&lt;script&gt;" in response.content
        assert b"tracker.example" not in response.content  # avatars only through the console's proxy
    identity_id = Conversation.objects.get(thread_key="evil").identity_id
    assert f'src="/avatars/{identity_id}/"'.encode() in client.get("/inbox/").content


def _count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", ["/inbox/", "/inbox/rows/", "/inbox/?view=mine&tag=vip", "/inbox/?view=unassigned"])
def test_the_inbox_runs_a_fixed_number_of_queries(world: World, console_for: Callable[[User], Client],
                                                  django_assert_max_num_queries, url: str) -> None:
    threads(world.a.account, 1)  # two conversations, each shown in every view asked for
    for conversation in Conversation.objects.filter(channel_account=world.a.account):
        conversation_add_tag(conversation_id=conversation.pk, name="vip")
        if url != "/inbox/?view=unassigned":
            conversation_assign(conversation_id=conversation.pk, assignee_id=world.a.agent.pk)
    client = console_for(world.a.agent)
    few = _count_queries(client, url)
    convs = threads(world.a.account, 30, start=1)
    for conversation in convs[:30]:
        conversation_add_tag(conversation_id=conversation.pk, name="vip")
        conversation_add_tag(conversation_id=conversation.pk, name=f"t{conversation.pk}")
        if url != "/inbox/?view=unassigned":
            conversation_assign(conversation_id=conversation.pk, assignee_id=world.a.agent.pk)
    ingest(world.a.account, [post(f"more-{i}", who=400 + i, minutes=700 + i, thread=f"{world.a.account.pk}-c{i}")
                             for i in range(1, 31)])

    client = console_for(world.a.agent)
    many = _count_queries(client, url)
    assert len(row_ids(client.get(url))) >= 30
    assert many == few
    with django_assert_max_num_queries(12):
        client.get(url)


def test_the_inbox_needs_a_login() -> None:
    response = Client(HTTP_HOST="localhost").get("/inbox/rows/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")


def test_an_agent_in_no_team_sees_an_empty_inbox(world: World, console_for: Callable[[User], Client]) -> None:
    response = console_for(User.objects.create_user("lonely")).get("/inbox/")
    assert row_ids(response) == []
    assert b'data-testid="inbox-empty"' in response.content


def test_authors_without_a_display_name_show_their_handle(world: World, console_for: Callable[[User], Client]) -> None:
    ingest(world.a.account, [post("anon", author=author(321, display_name=""), minutes=40)])
    html = console_for(world.a.agent).get("/inbox/").content.decode()
    assert "user321" in html
