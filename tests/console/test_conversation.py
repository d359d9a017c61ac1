"""The conversation page (`/conversations/<id>/`): header, thread, customer card, composer, and the actions an agent
takes there (assign, status, tags, note, reply, retry). Scoped to the agent's teams (404 outside), bad input a 4xx
with a message, hostile text escaped, and a fixed number of queries whatever the length of the thread."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import Team
from channels.adapters.base import Author, EventKind, InboundEvent
from channels.adapters.mail import EmailAdapter
from channels.adapters.whatsapp import WhatsAppAdapter
from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.models import SocialIdentity
from conversations.api.services import conversation_add_note, conversation_add_tag
from conversations.models import CannedResponse, Conversation, ConversationNote, ConversationTag, Interaction
from tests.api.conftest import World
from tests.channels.factories import delete, edit, post, reply_from_us

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)><svg onload=alert(2)>'
RECORDED = pathlib.Path(__file__).resolve().parents[2] / "channels" / "recorded"
HTMX = {"HTTP_HX_REQUEST": "true"}


def url(conversation: Conversation, action: str = "") -> str:
    return f"/conversations/{conversation.pk}/{action}"


def message_ids(response) -> list[int]:
    assert response.status_code == 200, response.content[:3000]
    return [int(i) for i in re.findall(rb'data-testid="message" data-interaction-id="(\d+)"', response.content)]


def assert_inert(content: bytes) -> None:
    """No hostile markup survived unescaped, and no script link was made."""
    assert b"<script>" not in content
    assert b"<img src=x" not in content
    assert b"<svg" not in content
    assert b'href="javascript:' not in content.lower()


def test_the_page_shows_header_thread_card_and_composer(world: World, console_for: Callable[[User], Client]) -> None:
    side = world.a
    ingest(side.account, [
        reply_from_us("ours-1", thread="alpha-1", minutes=3, text="Wir schauen nach ^AB"),
        post("alpha-2", who=1, thread="alpha-1", minutes=5, text="Danke!"),
    ])
    conversation_add_tag(conversation_id=side.conversation.pk, name="router")
    conversation_add_note(conversation_id=side.conversation.pk, author=side.agent, text="Kunde ruft morgen an")
    client = console_for(side.agent)

    response = client.get(url(side.conversation))

    html = response.content.decode()
    messages = list(Interaction.objects.filter(conversation=side.conversation).order_by("occurred_at", "id"))
    assert message_ids(response) == [m.pk for m in messages]  # oldest to newest
    assert 'data-direction="out"' in html
    assert 'data-direction="in"' in html
    assert 'data-testid="conversation-platform">X<' in html
    assert 'data-testid="conversation-status" data-status="open"' in html
    assert '<li class="badge tag" data-testid="tag">router' in html
    assert 'data-testid="note"' in html
    assert "Kunde ruft morgen an" in html
    assert html.count('data-testid="visibility"') == 3
    assert "private" in html
    # the customer card
    assert 'data-testid="customer-card"' in html
    assert f'href="/customers/{side.customer.pk}/" data-testid="customer-link">Kunde alpha<' in html
    assert 'data-testid="customer-number">K-alpha<' in html
    assert 'data-testid="identity"' in html
    # the composer and the actions with their hooks
    for hook in ("reply-text", "reply-send", "assign", "assign-me", "status-open", "status-pending",
                 "status-resolved", "tag-input", "tag-add", "note-text", "note-add", "presence"):
        assert f'data-testid="{hook}"' in html, hook
    assert 'name="text" id="reply-text"' in html
    assert 'data-reply-limit="280"' in html  # X's limit, from the X adapter
    assert 'id="reply-signature" value="^AG"' in html  # the agent's initials ("agent-alpha") as the signature
    assert f'hx-get="/conversations/{side.conversation.pk}/thread/" hx-trigger="every 3s"' in html
    assert 'hx-trigger="load, every 5s"' in html
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert " style=" not in html
    assert "<script>" not in html


def test_open_conversations_elsewhere_are_listed_only_when_visible(
    world: World, staff: User, console_for: Callable[[User], Client],
) -> None:
    # the customer of team a also writes on team b's account, and in a second thread on team a's account
    ingest(world.b.account, [post("a-on-b", who=1, minutes=20, text="auch hier")])
    ingest(world.a.account, [post("a-second", who=1, minutes=21, text="neues Thema")])
    on_b = Conversation.objects.get(thread_key="a-on-b")
    second = Conversation.objects.get(thread_key="a-second")

    agent_page = console_for(world.a.agent).get(url(world.a.conversation)).content.decode()
    staff_page = console_for(staff).get(url(world.a.conversation)).content.decode()

    assert f'href="/conversations/{second.pk}/"' in agent_page
    assert f'href="/conversations/{on_b.pk}/"' not in agent_page
    assert f'href="/conversations/{on_b.pk}/"' in staff_page
    assert f'href="/conversations/{second.pk}/"' in staff_page


def test_team_b_gets_404_for_the_page_and_every_action(world: World, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.b.agent)
    target = world.a.conversation
    reply = Interaction.objects.create(
        channel_account=world.a.account, conversation=target, identity=world.a.identity, direction="out",
        kind="reply", external_id="queued:x", text="t", occurred_at=timezone.now(), received_at=timezone.now(),
        delivery_state="failed", idempotency_key="5d0b4ad6-9b3a-4a53-9c1c-6d4c6c1f0a11",
    )
    before = (Conversation.objects.values().get(pk=target.pk), ConversationNote.objects.count(),
              ConversationTag.objects.count(), Interaction.objects.count())

    assert client.get(url(target)).status_code == 404
    assert client.get(url(target, "thread/")).status_code == 404
    for action, data in [
        ("presence/", {"typing": "1"}), ("assign/", {"assignee": "me"}), ("status/", {"status": "resolved"}),
        ("tags/", {"tag": "x"}), ("tags/remove/", {"tag": "x"}), ("notes/", {"text": "x"}),
        ("replies/", {"text": "x"}), (f"replies/{reply.pk}/retry/", {}),
    ]:
        assert client.post(url(target, action), data).status_code == 404, action
        assert client.post(url(target, action), data, **HTMX).status_code == 404, action
    # a reply of team a's conversation cannot be retried through team b's own conversation either
    assert client.post(url(world.b.conversation, f"replies/{reply.pk}/retry/")).status_code == 404
    assert client.get("/conversations/999999/").status_code == 404

    after = (Conversation.objects.values().get(pk=target.pk), ConversationNote.objects.count(),
             ConversationTag.objects.count(), Interaction.objects.count())
    assert after == before


def test_assign_take_and_unassign(world: World, console_for: Callable[[User], Client]) -> None:
    side = world.a
    colleague = User.objects.create_user("colleague", first_name="Clara", last_name="Kollegin")
    Team.objects.get(name="Team alpha").members.add(colleague)
    client = console_for(side.agent)

    page = client.get(url(side.conversation)).content.decode()
    assert f'<option value="{colleague.pk}">Clara Kollegin</option>' in page
    assert f'<option value="{world.b.agent.pk}"' not in page  # only people who see this account

    response = client.post(url(side.conversation, "assign/"), {"assignee": "me"}, **HTMX)
    assert response.status_code == 200
    assert b'id="conversation-meta"' in response.content
    assert b"<html" not in response.content
    assert Conversation.objects.get(pk=side.conversation.pk).assignee_id == side.agent.pk

    response = client.post(url(side.conversation, "assign/"), {"assignee": str(colleague.pk)})  # no JavaScript
    assert response.status_code == 302
    assert response.headers["Location"] == url(side.conversation)
    assert Conversation.objects.get(pk=side.conversation.pk).assignee_id == colleague.pk
    assert 'data-testid="conversation-assignee">Clara Kollegin<' in client.get(url(side.conversation)).content.decode()

    client.post(url(side.conversation, "assign/"), {"assignee": ""}, **HTMX)
    assert Conversation.objects.get(pk=side.conversation.pk).assignee_id is None


@pytest.mark.parametrize(("value", "status", "message"), [
    ("abc", 400, b"Choose a person from the list"),
    ("999999", 400, b"no active user with this id"),
    ("other-team", 400, b"cannot see the conversation"),
])
def test_assigning_to_someone_unknown_is_refused(world: World, console_for: Callable[[User], Client],
                                                 value: str, status: int, message: bytes) -> None:
    value = str(world.b.agent.pk) if value == "other-team" else value
    client = console_for(world.a.agent)
    for extra in ({}, HTMX):
        response = client.post(url(world.a.conversation, "assign/"), {"assignee": value}, **extra)
        assert response.status_code == status
        assert message in response.content
        assert b'data-testid="action-error"' in response.content
    assert Conversation.objects.get(pk=world.a.conversation.pk).assignee_id is None


def test_status_buttons_change_the_status(world: World, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.a.agent)
    for status in ("pending", "resolved", "open"):
        response = client.post(url(world.a.conversation, "status/"), {"status": status}, **HTMX)
        assert response.status_code == 200
        assert f'data-status="{status}"'.encode() in response.content
        assert Conversation.objects.get(pk=world.a.conversation.pk).status == status
    assert Conversation.objects.get(pk=world.a.conversation.pk).resolved_at is None

    bad = client.post(url(world.a.conversation, "status/"), {"status": "closed"}, **HTMX)
    assert bad.status_code == 400
    assert b"Choose open, pending or resolved" in bad.content


def test_tags_are_added_and_removed(world: World, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.a.agent)
    conversation = world.a.conversation

    assert client.post(url(conversation, "tags/"), {"tag": " outage "}, **HTMX).status_code == 200
    assert list(ConversationTag.objects.filter(conversation=conversation).values_list("name", flat=True)) == ["outage"]
    removed = client.post(url(conversation, "tags/remove/"), {"tag": "outage"}, **HTMX)
    assert removed.status_code == 200
    assert b'data-testid="tag"' not in removed.content
    assert not ConversationTag.objects.filter(conversation=conversation).exists()

    too_long = client.post(url(conversation, "tags/"), {"tag": "x" * 65}, **HTMX)
    assert too_long.status_code == 400
    assert b"at most 64 characters" in too_long.content
    empty = client.post(url(conversation, "tags/"), {"tag": "  "})
    assert empty.status_code == 400
    assert b"Enter a tag name" in empty.content
    assert not ConversationTag.objects.filter(conversation=conversation).exists()


def test_a_private_note_is_stored_and_shown_in_the_thread(world: World, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.a.agent)
    response = client.post(url(world.a.conversation, "notes/"), {"text": "Rückruf vereinbart"}, **HTMX)

    assert response.status_code == 200
    note = ConversationNote.objects.get(conversation=world.a.conversation)
    assert (note.text, note.author_id) == ("Rückruf vereinbart", world.a.agent.pk)
    body = response.content.decode()
    assert 'id="note-form"' in body
    assert 'id="thread-region" hx-swap-oob="innerHTML"' in body
    assert f'data-note-id="{note.pk}"' in body
    assert "Internal note" in body

    empty = client.post(url(world.a.conversation, "notes/"), {"text": "   "}, **HTMX)
    assert empty.status_code == 400
    assert b"Write the note first" in empty.content
    too_long = client.post(url(world.a.conversation, "notes/"), {"text": "x" * 10_001})
    assert too_long.status_code == 400
    assert b"at most 10000 characters" in too_long.content
    assert ConversationNote.objects.count() == 1


def test_a_reply_is_queued_signed_and_shown_then_its_state_follows(
    world: World, console_for: Callable[[User], Client], django_capture_on_commit_callbacks,
) -> None:
    side = world.a
    side.agent.first_name, side.agent.last_name = "Anna", "Berg"
    side.agent.save()
    client = console_for(side.agent)

    response = client.post(url(side.conversation, "replies/"),
                           {"text": "Wir kümmern uns darum.", "sign": "1", "signature": "^AB"}, **HTMX)

    assert response.status_code == 200, response.content
    reply = Interaction.objects.get(conversation=side.conversation, direction="out")
    assert (reply.text, reply.delivery_state, reply.kind, reply.sent_by_id) == (
        "Wir kümmern uns darum. ^AB", "queued", "reply", side.agent.pk)
    body = response.content.decode()
    assert 'data-testid="reply-queued"' in body
    assert f'data-interaction-id="{reply.pk}"' in body
    assert 'data-state="queued"' in body
    assert '<textarea name="text" id="reply-text" data-testid="reply-text" aria-describedby="reply-counter">'\
           '</textarea>' in body  # the composer is emptied

    # the thread, polled, shows "sent" once the outbound worker has sent it
    page = client.get(url(side.conversation)).content.decode()
    version = re.search(r'id="thread-v" name="v" value="([0-9a-f]+)"', page).group(1)
    assert client.get(url(side.conversation, "thread/"), {"v": version}).status_code == 204
    Interaction.objects.filter(pk=reply.pk).update(delivery_state="sent", external_id="tweet-99")
    polled = client.get(url(side.conversation, "thread/"), {"v": version})
    assert polled.status_code == 200
    assert b'data-state="sent"' in polled.content

    # unsigned, and without JavaScript
    response = client.post(url(side.conversation, "replies/"), {"text": "Ohne Gruß", "signature": "^AB"})
    assert response.status_code == 302
    assert Interaction.objects.filter(text="Ohne Gruß", delivery_state="queued").exists()


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"text": "   ", "sign": "1", "signature": "^AB"}, 400, b"Write a reply first"),
    ({"text": "x" * 277, "sign": "1", "signature": "^AB"}, 400, b"at most 280 characters; this one has 281"),
    ({"text": "Hallo", "sign": "1", "signature": "x" * 41}, 400, b"signature has at most 40"),
])
def test_bad_replies_are_refused_with_a_message(world: World, console_for: Callable[[User], Client],
                                                data: dict, status: int, message: bytes) -> None:
    client = console_for(world.a.agent)
    for extra in ({}, HTMX):
        response = client.post(url(world.a.conversation, "replies/"), data, **extra)
        assert response.status_code == status
        assert message in response.content
        assert b'data-testid="reply-error"' in response.content
        assert data["text"].encode() in response.content  # the agent's text is kept
    assert not Interaction.objects.filter(direction="out").exists()


def _whatsapp(world: World, *, hours_ago: float) -> Conversation:
    account = ChannelAccount.objects.create(platform="whatsapp", name="wa", external_id="10634295353625",
                                            credentials={"access_token": "t"})
    Team.objects.get(name="Team alpha").channel_accounts.add(account)
    events = WhatsAppAdapter(external_id="10634295353625").parse(
        (RECORDED / "restfb/whatsapp/webhook-incoming-message-text.json").read_bytes())
    when = timezone.now() - dt.timedelta(hours=hours_ago)
    events = [InboundEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "occurred_at": when}) for e in events]
    ingest(account, events)
    return Conversation.objects.get(channel_account=account)


def test_whatsapps_24_hour_window_is_shown_and_a_late_reply_refused(
    world: World, console_for: Callable[[User], Client],
) -> None:
    client = console_for(world.a.agent)
    closed = _whatsapp(world, hours_ago=30)

    page = client.get(url(closed)).content.decode()
    assert 'data-testid="reply-window" data-open="false"' in page
    assert "must use a template" in page
    assert 'data-reply-limit="4096"' in page
    response = client.post(url(closed, "replies/"), {"text": "Hallo", "sign": "1", "signature": "^AB"}, **HTMX)
    assert response.status_code == 409
    assert b"24 hours" in response.content
    assert b'data-testid="reply-error"' in response.content
    assert not Interaction.objects.filter(conversation=closed, direction="out").exists()


def test_an_open_whatsapp_window_says_until_when(world: World, console_for: Callable[[User], Client]) -> None:
    conversation = _whatsapp(world, hours_ago=1)
    page = console_for(world.a.agent).get(url(conversation)).content.decode()
    assert 'data-testid="reply-window" data-open="true"' in page
    assert "window open until" in page
    assert "Private reply" in page


def test_a_failed_reply_shows_its_error_and_can_be_sent_again(
    world: World, console_for: Callable[[User], Client],
) -> None:
    client = console_for(world.a.agent)
    client.post(url(world.a.conversation, "replies/"), {"text": "Hallo"}, **HTMX)
    reply = Interaction.objects.get(direction="out")
    Interaction.objects.filter(pk=reply.pk).update(delivery_state="failed", send_error="403 <b>forbidden</b>")

    page = client.get(url(world.a.conversation)).content.decode()
    assert 'data-state="failed"' in page
    assert "403 &lt;b&gt;forbidden&lt;/b&gt;" in page
    assert 'data-testid="reply-retry"' in page

    response = client.post(url(world.a.conversation, f"replies/{reply.pk}/retry/"), **HTMX)
    assert response.status_code == 200
    assert b'data-state="queued"' in response.content
    assert Interaction.objects.get(pk=reply.pk).delivery_state == "queued"

    again = client.post(url(world.a.conversation, f"replies/{reply.pk}/retry/"), **HTMX)
    assert again.status_code == 409
    assert b"Only a failed reply" in again.content


def test_canned_responses_are_offered_with_their_variables_filled(
    world: World, console_for: Callable[[User], Client],
) -> None:
    world.a.agent.first_name, world.a.agent.last_name = "Anna", "Berg"
    world.a.agent.save()
    canned = CannedResponse.objects.create(
        title="Störung", shortcut="stoer",
        text="Hallo {first_name} ({handle}), Kundennummer {customer_number}. {unknown} "
             "Gruß {agent_name} ^{agent_initials}",
    )
    client = console_for(world.a.agent)

    page = client.get(url(world.a.conversation)).content.decode()
    assert 'data-testid="canned"' in page
    assert (f'<option value="{canned.pk}" data-text="Hallo Kunde (@user1), Kundennummer K-alpha. {{unknown}} '
            'Gruß Anna Berg ^AB">Störung (/stoer)</option>') in page

    without_js = client.get(url(world.a.conversation), {"canned": canned.pk}).content.decode()
    assert ">Hallo Kunde (@user1), Kundennummer K-alpha." in without_js
    unknown = client.get(url(world.a.conversation), {"canned": "999999"}).content.decode()
    assert "No such canned response." in unknown


def test_edits_deletes_and_attachments_are_marked(world: World, console_for: Callable[[User], Client]) -> None:
    ingest(world.a.account, [
        post("att-1", who=1, thread="alpha-1", minutes=4, text="Foto",
             attachments=({"type": "photo", "url": "https://pbs.example/a.jpg", "name": "router.jpg"},
                          {"type": "document", "file_name": "vertrag.pdf", "url": "data:text/html,x"})),
        post("del-1", who=1, thread="alpha-1", minutes=5, text="Ups"),
        edit("alpha-1", minutes=6, text="Hallo (bearbeitet)"),
        delete("del-1", minutes=7),
    ])
    html = console_for(world.a.agent).get(url(world.a.conversation)).content.decode()

    assert 'data-testid="edited"' in html
    assert "Hallo (bearbeitet)" in html
    assert 'data-testid="deleted"' in html
    assert "This message was deleted on the platform." in html
    link = '<a href="https://pbs.example/a.jpg" rel="noopener noreferrer nofollow" target="_blank">router.jpg</a>'
    assert link in html
    assert '<li data-testid="attachment">vertrag.pdf</li>' in html  # no link for a data: URL


def test_hostile_text_is_escaped_everywhere_on_the_page(world: World, console_for: Callable[[User], Client]) -> None:
    hostile_author = Author(platform="x", external_id="u1", handle=HOSTILE, display_name=HOSTILE,
                            profile_url="javascript:alert(1)", avatar_url="https://tracker.example/pixel.png")
    ingest(world.a.account, [post(
        "evil-1", author=hostile_author, thread="alpha-1", minutes=8, text=HOSTILE, kind=EventKind.REPLY,
        attachments=({"type": "document", "file_name": HOSTILE, "url": "javascript:alert(1)"},
                     {"type": "photo", "name": HOSTILE, "url": " javascript:alert(1)"},
                     {"type": "photo", "name": "svg", "url": "java\tscript:alert(1)"}),
    )])
    customer = world.a.customer
    customer.display_name, customer.notes, customer.tags = HOSTILE, HOSTILE, [HOSTILE]
    customer.save()
    conversation_add_tag(conversation_id=world.a.conversation.pk, name="<script>t</script>")
    conversation_add_note(conversation_id=world.a.conversation.pk, author=world.a.agent, text=HOSTILE)
    CannedResponse.objects.create(title=HOSTILE, text="Hallo {customer_name} " + HOSTILE)
    client = console_for(world.a.agent)

    page = client.get(url(world.a.conversation))
    assert page.status_code == 200
    assert_inert(page.content)
    assert page.content.count(b"&lt;script&gt;") >= 8
    assert b"tracker.example" not in page.content  # the avatar only through the console's proxy
    assert f'src="/avatars/{world.a.identity.pk}/"'.encode() in page.content
    assert_inert(client.get(url(world.a.conversation, "thread/")).content)
    assert_inert(client.post(url(world.a.conversation, "tags/"), {"tag": "<b>x</b>"}, **HTMX).content)
    refused = client.post(url(world.a.conversation, "replies/"), {"text": HOSTILE * 5}, **HTMX)
    assert refused.status_code == 400
    assert_inert(refused.content)


def test_earlier_messages_come_a_window_at_a_time(world: World, console_for: Callable[[User], Client]) -> None:
    ingest(world.a.account, [post(f"m{i}", who=1, thread="alpha-1", minutes=10 + i, text=f"Nachricht {i}")
                             for i in range(110)])
    client = console_for(world.a.agent)
    page = client.get(url(world.a.conversation))
    ids = message_ids(page)
    assert len(ids) == 100
    everything = list(Interaction.objects.filter(conversation=world.a.conversation)
                      .order_by("occurred_at", "id").values_list("pk", flat=True))
    assert ids == everything[-100:]
    earlier = re.search(rb'href="([^"]+)" data-testid="thread-earlier"', page.content).group(1).decode()
    older = client.get(earlier.replace("&amp;", "&"))
    assert message_ids(older) == everything[:-100]
    assert b'data-testid="thread-newest"' in older.content
    assert b"every 3s" not in older.content  # an earlier window does not poll

    impossible = client.get(url(world.a.conversation),
                            {"before": "eyJ0IjoiMjAyNi0xMy00NVQwMDowMDowMCswMDowMCIsImkiOjF9"})  # month 13
    assert impossible.status_code == 400
    bad = client.get(url(world.a.conversation), {"before": "nonsense"})
    assert bad.status_code == 400
    assert b"no longer valid" in bad.content


def _queries(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


def test_the_page_and_the_thread_run_a_fixed_number_of_queries(
    world: World, console_for: Callable[[User], Client], django_assert_max_num_queries,
) -> None:
    side = world.a
    conversation_add_tag(conversation_id=side.conversation.pk, name="one")
    conversation_add_note(conversation_id=side.conversation.pk, author=side.agent, text="eins")
    ingest(side.account, [post("other-thread", who=1, minutes=2)])
    CannedResponse.objects.create(title="A", text="Hallo {first_name}")
    client = console_for(side.agent)
    few_page = _queries(client, url(side.conversation))
    few_thread = _queries(client, url(side.conversation, "thread/"))

    ingest(side.account, [post(f"n{i}", who=1 + i % 3, thread="alpha-1", minutes=10 + i,
                               attachments=({"type": "photo", "url": "https://x.example/p.jpg"},))
                          for i in range(30)]
           + [post(f"other-{i}", who=1, minutes=50 + i) for i in range(30)])
    for i in range(30):
        conversation_add_tag(conversation_id=side.conversation.pk, name=f"tag-{i}")
        conversation_add_note(conversation_id=side.conversation.pk, author=side.agent, text=f"note {i}")
        CannedResponse.objects.create(title=f"R{i}", text="Hallo {first_name}")
        colleague = User.objects.create_user(f"colleague-{i}")
        Team.objects.get(name="Team alpha").members.add(colleague)
    for i in range(3):
        client.post(url(side.conversation, "replies/"), {"text": f"Antwort {i}"}, **HTMX)

    client = console_for(side.agent)
    assert _queries(client, url(side.conversation)) == few_page
    assert _queries(client, url(side.conversation, "thread/")) == few_thread
    with django_assert_max_num_queries(16):
        client.get(url(side.conversation))
    with django_assert_max_num_queries(10):
        client.get(url(side.conversation, "thread/"))
    assert len(message_ids(client.get(url(side.conversation)))) == 34


def test_presence_heartbeats_write_nothing_to_the_database(world: World, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.a.agent)
    with CaptureQueriesContext(connection) as queries:
        assert client.post(url(world.a.conversation, "presence/"), {"typing": "1"}, **HTMX).status_code == 200
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []


def test_the_conversation_page_needs_a_login(world: World) -> None:
    response = Client(HTTP_HOST="localhost").get(url(world.a.conversation))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")
    assert Client(HTTP_HOST="localhost").post(url(world.a.conversation, "replies/"), {"text": "x"}).status_code == 302
    assert not Interaction.objects.filter(direction="out").exists()


def test_actions_need_a_post_and_a_csrf_token(world: World) -> None:
    client = Client(HTTP_HOST="localhost", enforce_csrf_checks=True)
    client.force_login(world.a.agent)
    assert client.get(url(world.a.conversation, "status/")).status_code == 405
    assert client.post(url(world.a.conversation, "status/"), {"status": "resolved"}).status_code == 403
    assert Conversation.objects.get(pk=world.a.conversation.pk).status == "open"


def test_a_forged_e_mail_sender_is_kept_apart_and_marked_in_the_thread(
    world: World, console_for: Callable[[User], Client],
) -> None:
    # The recorded message's receiving server (mx.google.com) verified it; the copy it says DMARC failed for is
    # a forgery of the same From. Both land in one thread (the same "RE:" subject from the same address).
    account = ChannelAccount.objects.create(platform="email", name="mail", external_id="support@example.com",
                                            config={"trusted_authserv_ids": ["mx.google.com"]})
    Team.objects.get(name="Team alpha").channel_accounts.add(account)
    adapter = EmailAdapter(external_id=account.external_id, config=account.config)
    real = (RECORDED / "django-mailbox/email_rfc822/message_with_utf8_char.eml").read_bytes()
    verdict = b"dkim=pass header.i=@yahoo.com"
    forged = real.replace(verdict, verdict + b"; dmarc=fail header.from=yahoo.com").replace(
        b"Message-ID: <", b"Message-ID: <forged.", 1)
    [genuine] = adapter.parse(real)
    [fake] = adapter.parse(forged)
    ingest(account, [genuine, fake])

    identities = {i.scope: i for i in SocialIdentity.objects.filter(platform="email", external_id="user2@yahoo.com")}
    assert set(identities) == {"", "unverified"}
    assert identities[""].customer_id != identities["unverified"].customer_id
    conversation = Conversation.objects.get(channel_account=account)
    assert conversation.identity_id == identities[""].pk
    page = console_for(world.a.agent).get(url(conversation)).content.decode()
    assert len(message_ids_of(page)) == 2
    assert page.count('data-testid="sender-unverified"') == 1
    fake_row = Interaction.objects.get(identity=identities["unverified"])
    marked = page.split(f'data-interaction-id="{fake_row.pk}"', 1)[1].split("</li>", 1)[0]
    assert 'data-testid="sender-unverified"' in marked


def message_ids_of(page: str) -> list[str]:
    return re.findall(r'data-testid="message" data-interaction-id="(\d+)"', page)
