"""Mastodon parser on real recorded responses (channels/recorded/mastodon-py)."""

import copy
import datetime as dt
import json
import pathlib
from typing import Any

import pytest

from channels.adapters import mastodon
from channels.adapters.base import Direction, EventKind, PayloadError
from channels.adapters.mastodon import MastodonAdapter, html_to_text

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded" / "mastodon-py"
UTC = dt.UTC
SOCIAL = MastodonAdapter(config={"instance": "mastodon.social"})
LOCAL = MastodonAdapter(config={"instance": "localhost:3000"})  # the server the local_instance files come from
ADMIN = "117020565693913441"  # verify_credentials in status_reply_and_delete: the recording client's account


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def exchange(name: str, index: int) -> Any:
    return json.loads(recorded(f"local_instance/{name}.exchanges.json"))["exchanges"][index]["response_body"]


def test_context_threads_every_status_under_the_first_ancestor() -> None:
    events = SOCIAL.parse(recorded("mastodon_social/status_context.json"))

    assert len(events) == 2
    root, reply = events
    assert root.platform == "mastodon"
    assert root.external_id == "110446983178245440"
    assert root.kind == EventKind.MENTION
    assert (root.author.platform, root.author.external_id, root.author.scope) == ("mastodon", "43", "mastodon.social")
    assert (root.author.handle, root.author.display_name) == ("halcy@mastodon.social", "autumnal halcy")
    assert root.author.profile_url == "https://mastodon.social/@halcy"
    assert root.thread_key == "110446983178245440"
    assert root.reply_to_id == ""
    assert root.occurred_at == dt.datetime(2023, 5, 28, 15, 20, 18, 907000, tzinfo=UTC)
    assert root.text == "first status"
    assert root.direction == Direction.INBOUND

    assert reply.external_id == "110446984249325790"
    assert reply.kind == EventKind.REPLY
    assert reply.thread_key == "110446983178245440"  # the real root, not the parent
    assert reply.reply_to_id == "110446983926957470"
    assert reply.text == "final status"
    assert reply.occurred_at == dt.datetime(2023, 5, 28, 15, 20, 35, 248000, tzinfo=UTC)
    assert all(e.problems() == [] for e in events)


def test_lone_reply_is_keyed_by_its_parent() -> None:
    status = json.loads(recorded("mastodon_social/status_context.json"))["descendants"][0]

    [event] = SOCIAL.parse(status)

    assert (event.thread_key, event.reply_to_id) == ("110446983926957470", "110446983926957470")


def test_remote_edited_status_gives_create_and_edit() -> None:
    events = SOCIAL.parse(recorded("mastodon_social/status_remote_edited_gifv_custom_emoji.json"))

    assert [e.kind for e in events] == [EventKind.MENTION, EventKind.EDIT]
    create, edit = events
    assert create.external_id == edit.external_id == "110446223051565765"
    assert (create.author.external_id, create.author.scope) == ("23972", "mastodon.social")
    assert create.author.handle == "halcy@icosahedron.website"
    assert create.author.display_name == "halcy\u200b :icosahedron:"  # zero-width space and custom emoji kept
    assert create.occurred_at == dt.datetime(2023, 5, 28, 12, 6, 50, tzinfo=UTC)
    assert edit.occurred_at == dt.datetime(2023, 5, 28, 12, 9, 44, tzinfo=UTC)
    assert create.text == edit.text == (
        "@halcy you're a doo-doo head\n\nedit: editing this to have the maximum amount of fields filled "
        ":trans_heart: #ThisIsAHashtag")
    assert create.attachments == ({
        "type": "gifv", "id": "110446234379794171",
        "url": "https://files.mastodon.social/cache/media_attachments/files/110/446/234/379/794/171/original/"
               "e6bdbd614788c2d1.mp4",
        "preview_url": "https://files.mastodon.social/cache/media_attachments/files/110/446/234/379/794/171/small/"
                       "e6bdbd614788c2d1.png",
        "remote_url": "https://icosahedron.website/system/media_attachments/files/110/446/231/362/377/421/original/"
                      "7011ca5f75a12487.mp4",
        "description": "a furry cube breakdancing",
    },)
    assert edit.thread_key == "110446223051565765"


def test_reingesting_an_edited_status_gives_identical_events() -> None:
    payload = exchange("status_edit", 3)

    first, second = LOCAL.parse(payload), LOCAL.parse(copy.deepcopy(payload))

    assert first == second
    assert [e.kind for e in first] == [EventKind.MENTION, EventKind.EDIT]
    assert first[1].occurred_at == dt.datetime(2026, 8, 1, 13, 54, 0, 695000, tzinfo=UTC)
    assert first[1].text == "the best editor? why, of course it is the KDE Advanced Text Editor, Kate"


def test_mention_notifications_list_and_single_notification() -> None:
    [event] = LOCAL.parse(exchange("notifications_mentions_only", 1))

    assert event.external_id == "117020577157693549"
    assert event.kind == EventKind.MENTION
    assert (event.author.external_id, event.author.scope) == (ADMIN, "localhost:3000")
    assert (event.author.handle, event.author.display_name) == ("admin@localhost:3000", "admin")  # empty display_name
    assert event.thread_key == "117020577157693549"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2026, 8, 1, 13, 51, 42, 823000, tzinfo=UTC)
    assert event.text == "@mastodonpy_test hello!"
    assert event.direction == Direction.INBOUND
    assert LOCAL.parse(exchange("notifications_mentions_only", 2)) == [event]


def test_notifications_without_status_or_of_other_types_are_skipped() -> None:
    [notification] = exchange("notifications_mentions_only", 1)
    without_status = {**notification, "status": None}
    favourite = {**notification, "type": "favourite"}

    assert LOCAL.parse([without_status, favourite]) == []


def test_reply() -> None:
    [event] = LOCAL.parse(exchange("status_reply_and_delete", 2))

    assert event.external_id == "117020583258292382"
    assert event.kind == EventKind.REPLY
    assert (event.thread_key, event.reply_to_id) == ("117020583245459824", "117020583245459824")
    assert event.text == "@mastodonpy_test_2 same!"


def test_our_own_statuses_are_outbound() -> None:
    ours = MastodonAdapter(external_id=ADMIN, config={"instance": "localhost:3000"})

    [reply] = ours.parse(exchange("status_reply_and_delete", 2))
    [post] = ours.parse(exchange("notifications_mentions_only", 0))

    assert (reply.kind, reply.direction) == (EventKind.REPLY, Direction.OUTBOUND)
    assert (post.kind, post.direction) == (EventKind.POST, Direction.OUTBOUND)


def test_delete_response_is_a_delete_at_receive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    received = dt.datetime(2026, 8, 1, 14, 0, tzinfo=UTC)
    monkeypatch.setattr(mastodon, "utc_now", lambda: received)

    [event] = LOCAL.parse(exchange("status_reply_and_delete", 3))

    assert (event.external_id, event.kind, event.occurred_at) == ("117020583258292382", EventKind.DELETE, received)
    assert event.text == ""
    assert event.thread_key == "117020583245459824"
    assert event.problems() == []


def test_direct_visibility_is_a_dm() -> None:
    status = {**exchange("status_reply_and_delete", 0), "visibility": "direct"}

    [event] = LOCAL.parse(status)

    assert (event.kind, event.thread_key) == (EventKind.DIRECT_MESSAGE, "117020583245459824")


def test_hostile_html_never_survives_as_markup() -> None:
    status = copy.deepcopy(exchange("notifications_mentions_only", 0))
    status["content"] = ('<p>Hallo <script>alert("x")</script><img src=x onerror=alert(1)>'
                         '<a href="javascript:alert(1)">Link</a></p><p>a<br>b &amp; c &lt;b&gt;fett&lt;/b&gt; '
                         '<style>p{}</style>I &lt;3 you<iframe src="https://evil.example"></iframe></p><b')

    [event] = LOCAL.parse(status)

    assert event.text == "Hallo Link\n\na\nb & c fett I <3 you"
    for fragment in ("<script", "<img", "onerror", "alert", "<b", "javascript", "<iframe", "<style", "p{}"):
        assert fragment not in event.text


@pytest.mark.parametrize(("html", "text"), [
    ("<p>first status</p>", "first status"),
    ("<p>one</p><p>two<br>three<br />four</p>", "one\n\ntwo\nthree\nfour"),
    ("<p>you&#39;re &quot;quoted&quot; &amp; &gt; done</p>", "you're \"quoted\" & > done"),
    ('<p><span class="h-card" translate="no"><a href="http://localhost:3000/@x" class="u-url mention">@<span>x'
     '</span></a></span> hi</p>', "@x hi"),
    ('<a href="https://halcy.de/"><span class="invisible">https://</span><span class="">halcy.de/</span>'
     '<span class="invisible"></span></a>', "https://halcy.de/"),
])
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_source_body_gives_no_events() -> None:
    assert SOCIAL.parse(recorded("mastodon_social/status_source.json")) == []
    assert LOCAL.parse(exchange("status_edit", 5)) == []


@pytest.mark.parametrize(("payload", "message"), [
    (exchange("status_edit", 1), r"item\[0\] is neither a status"),  # GET /statuses/:id/history
    (exchange("status_reply_and_delete", 1), "neither a status"),  # an account (verify_credentials)
    ({"ancestors": "x"}, "must be lists"),
    ({"ancestors": [{"content": "<p>x</p>"}]}, r"ancestors\[0\] has no id"),
    ({"id": "1", "content": "<p>x</p>", "created_at": "2026-08-01T13:51:42.823Z"}, "account is missing"),
    ({"id": "1", "content": "<p>x</p>", "account": {"id": "2"}}, "has no created_at"),
    ({"id": "1", "content": 5, "account": {"id": "2"}, "created_at": "2026-08-01T13:51:42.823Z"}, "not a string"),
    ({"id": "1", "content": "<p>x</p>", "account": {"id": "2"}, "created_at": "yesterday"}, "not an ISO-8601"),
    ([5], r"item\[0\] is not an object"),
    ("null", "must be a JSON object or list"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        LOCAL.parse(payload)


def test_instance_is_required() -> None:
    with pytest.raises(PayloadError, match=r'config\["instance"\]'):
        MastodonAdapter().parse(recorded("mastodon_social/status_context.json"))
    assert MastodonAdapter(config={"instance": "https://Mastodon.Social/"}).instance == "mastodon.social"


STREAM_USER = "117020617404561855"  # mastodonpy_test: the account whose user stream streaming_user.sse.txt is


def stream_statuses() -> list[dict[str, Any]]:
    """The JSON `data:` objects of the recorded stream, in order (notifications and statuses)."""
    text = recorded("local_instance/streaming_user.sse.txt").decode()
    return [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: {")]


def test_remote_account_is_not_an_event_but_becomes_the_author_of_its_statuses() -> None:
    account = json.loads(recorded("mastodon_social/account_remote.json"))
    status = {**json.loads(recorded("mastodon_social/status_local_with_poll_edited.json")), "account": account}

    with pytest.raises(PayloadError, match="neither a status"):
        SOCIAL.parse(recorded("mastodon_social/account_remote.json"))
    [event, _edit] = SOCIAL.parse(status)

    assert (event.author.external_id, event.author.scope) == ("23972", "mastodon.social")
    assert event.author.handle == "halcy@icosahedron.website"
    assert event.author.display_name == "halcy\u200b :icosahedron:"
    assert event.author.profile_url == "https://icosahedron.website/@halcy"
    assert event.author.avatar_url.startswith("https://files.mastodon.social/cache/accounts/avatars/")


def test_local_status_with_poll_and_edit() -> None:
    events = SOCIAL.parse(recorded("mastodon_social/status_local_with_poll_edited.json"))

    assert [(e.kind, e.occurred_at) for e in events] == [
        (EventKind.MENTION, dt.datetime(2023, 5, 28, 11, 57, 0, 378000, tzinfo=UTC)),
        (EventKind.EDIT, dt.datetime(2023, 5, 28, 12, 21, 32, 698000, tzinfo=UTC)),
    ]
    create = events[0]
    assert create.external_id == create.thread_key == "110446183735368325"
    assert (create.author.external_id, create.author.handle) == ("43", "halcy@mastodon.social")
    assert create.reply_to_id == ""
    assert create.text == "test?"
    assert create.raw["poll"]["options"][1]["title"] == "edit polls"


def test_edit_history_revisions_have_no_id_and_are_refused() -> None:
    with pytest.raises(PayloadError, match=r"item\[0\] is neither a status"):
        SOCIAL.parse(recorded("mastodon_social/status_edit_history.json"))


def test_user_stream_as_seen_by_its_account(monkeypatch: pytest.MonkeyPatch) -> None:
    received = dt.datetime(2026, 8, 2, 5, 30, tzinfo=UTC)
    monkeypatch.setattr(mastodon, "utc_now", lambda: received)
    ours = MastodonAdapter(external_id=STREAM_USER, config={"instance": "localhost:3000"})

    events = ours.parse(recorded("local_instance/streaming_user.sse.txt"))

    assert [(e.kind, e.external_id, e.direction) for e in events] == [
        (EventKind.POST, "117024236332527350", Direction.OUTBOUND),  # event: update (our own post)
        (EventKind.MENTION, "117024236408130890", Direction.INBOUND),  # event: notification (admin mentions us)
        (EventKind.DIRECT_MESSAGE, "117024236559579118", Direction.OUTBOUND),  # event: update (our DM)
        (EventKind.DIRECT_MESSAGE, "117024236635443611", Direction.INBOUND),  # event: notification (the answer)
        (EventKind.POST, "117024236332527350", Direction.OUTBOUND),  # event: status.update -> create + edit
        (EventKind.EDIT, "117024236332527350", Direction.OUTBOUND),
        (EventKind.DELETE, "117024236332527350", Direction.INBOUND),  # event: delete (bare id)
    ]
    post, mention, dm, answer, _, edit, delete = events
    assert (post.text, post.thread_key, post.occurred_at) == (
        "only real cars respond.", "117024236332527350", dt.datetime(2026, 8, 2, 5, 22, 17, 399000, tzinfo=UTC))
    assert (mention.author.handle, mention.text) == ("admin@localhost:3000", "@mastodonpy_test beep beep I'm a jeep")
    assert mention.thread_key == "117024236408130890"
    assert (dm.text, dm.thread_key) == ("@mastodonpy_test_2 pssssst", "117024236559579118")
    assert (answer.author.handle, answer.text) == ("mastodonpy_test_2@localhost:3000", "@mastodonpy_test pssssst!")
    assert (answer.thread_key, answer.reply_to_id) == ("117024236559579118", "117024236559579118")
    assert (edit.text, edit.occurred_at) == ("only real animals respond.",
                                             dt.datetime(2026, 8, 2, 5, 22, 24, 192000, tzinfo=UTC))
    assert (delete.occurred_at, delete.thread_key, delete.author) == (received, "", None)
    assert all(e.problems() == [] for e in events)


def test_stream_keeps_only_statuses_that_concern_the_account_and_skips_other_events() -> None:
    someone_else = MastodonAdapter(external_id="1", config={"instance": "localhost:3000"})
    body = recorded("local_instance/streaming_user.sse.txt").decode()
    body += '\n\nevent: filters_changed\ndata: {}\n'  # a variant of the recording: an event we do not record

    events = someone_else.parse(body)

    assert [(e.kind, e.external_id) for e in events] == [
        (EventKind.MENTION, "117024236408130890"), (EventKind.DIRECT_MESSAGE, "117024236635443611"),
        (EventKind.DELETE, "117024236332527350"),
    ]
    assert [why for _, why in someone_else.skipped].count("neither by, mentioning nor answering this account") == 3
    assert someone_else.skipped[-1] == ("stream[6] 'filters_changed'", "not a status, a mention or a delete")


def test_stream_delete_without_an_id_is_refused() -> None:
    with pytest.raises(PayloadError, match="not a status id"):
        LOCAL.parse(b"event: delete\ndata: \n\n")
