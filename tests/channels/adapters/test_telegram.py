"""Telegram Bot API parser on real recorded Updates (channels/recorded/nutgram)."""

import datetime as dt
import json
import pathlib

import pytest

from channels.adapters import telegram
from channels.adapters.base import Direction, EventKind, InboundEvent, PayloadError
from channels.adapters.telegram import TelegramAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded" / "nutgram" / "telegram_bot_api"
UTC = dt.UTC


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def update(name: str) -> dict:
    return json.loads(recorded(name))


def parse_one(name: str) -> InboundEvent:
    events = TelegramAdapter().parse(recorded(name))
    assert len(events) == 1
    assert events[0].problems() == []
    return events[0]


DM, POST, EDIT = EventKind.DIRECT_MESSAGE, EventKind.POST, EventKind.EDIT
MARIO = ("456", "Bros", "Mario")
MARIO_BROS = ("12345", "MarioBros", "Mario Bros")
AT_2023 = dt.datetime(2023, 5, 25, 3, 17, 44, tzinfo=UTC)  # the 456:123 captures
AT_2022 = dt.datetime(2022, 11, 16, 21, 26, 38, tzinfo=UTC)  # the 12345:123456 captures

# Every recorded Update and what each of its events must be:
# (kind, external id, (author id, handle, display name), thread key, reply-to, text, time).
EXPECTED: dict[str, list[tuple]] = {
    "text.json": [(DM, "12345678:123456", ("12345678", "MarioLovesPeach", "Mario Bros"), "chat:12345678", "",
                   "aaaaaaaaaa", dt.datetime(2021, 9, 16, 19, 1, 44, tzinfo=UTC))],
    "message.json": [(DM, "456:123", MARIO, "chat:456", "", "Ciao", AT_2023)],
    "command.json": [(DM, "10081232:428640", ("10081232", "Lukasss93", "Luca Patera"), "chat:10081232", "",
                      "/test", dt.datetime(2021, 9, 20, 22, 28, 48, tzinfo=UTC))],
    "entities.json": [(DM, "321654:123", ("321654", "johndoe", "John Doe"), "chat:321654", "",
                       "test bold underline \U0001f606\U0001f44d look here",
                       dt.datetime(2023, 1, 5, 22, 6, 18, tzinfo=UTC))],
    "message_forward_origin.json": [(DM, "456:123", MARIO, "chat:456", "", "Ciao", AT_2023)],
    "business_message.json": [(DM, "456:123", MARIO, "chat:456", "", "Ciao", AT_2023)],
    "channel_post.json": [(POST, "456:123", MARIO, "chat:456", "", "Ciao", AT_2023)],
    "edited_message.json": [(EDIT, "999999999:23762", ("999999999", "super", "Mario"), "chat:999999999",
                             "999999999:23758", "Editing this message",
                             dt.datetime(2020, 3, 23, 17, 40, 45, tzinfo=UTC))],
    "photo.json": [(DM, "11111111:456901", ("11111111", "Bros", "Mario"), "chat:11111111", "", "asdasdasdasdasdasd",
                    dt.datetime(2021, 2, 28, 23, 35, 5, tzinfo=UTC))],
    "document.json": [(DM, "456:123", MARIO, "chat:456", "", "", AT_2023)],
    "voice.json": [(DM, "12345:123456", MARIO_BROS, "chat:12345", "", "", AT_2022)],
    "sticker.json": [(DM, "12345:123456", MARIO_BROS, "chat:12345", "", "", AT_2022)],
    "contact.json": [(DM, "12345:123456", MARIO_BROS, "chat:12345", "", "", AT_2022)],
    "location.json": [(DM, "12345:123456", MARIO_BROS, "chat:12345", "", "", AT_2022)],
    "callback_query.json": [],
    "my_chat_member.json": [],
    "pinned_message.json": [],
}


def test_the_table_covers_every_recorded_update() -> None:
    assert {p.name for p in RECORDED.glob("*.json")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recorded_update_parses_to_the_expected_events(name: str) -> None:
    adapter = TelegramAdapter()

    events = adapter.parse(recorded(name))

    assert [(e.kind, e.external_id, (e.author.external_id, e.author.handle, e.author.display_name), e.thread_key,
             e.reply_to_id, e.text, e.occurred_at) for e in events] == EXPECTED[name]
    for event in events:
        assert event.problems() == []
        assert (event.platform, event.author.platform, event.author.scope, event.direction) == (
            "telegram", "telegram", "", Direction.INBOUND)
    if not events:
        assert len(adapter.skipped) == 1  # nothing disappears without a recorded reason


def test_command_and_entities_keep_the_text_as_sent() -> None:
    """Entities (UTF-16 offsets) and bot commands are formatting over the text; the text itself is unchanged."""
    assert parse_one("command.json").text == "/test"
    assert parse_one("entities.json").raw["entities"][2] == {"offset": 25, "length": 9, "type": "text_link",
                                                              "url": "http://google.it/"}


def test_forwarded_message_is_authored_by_the_forwarder() -> None:
    event = parse_one("message_forward_origin.json")

    assert (event.author.external_id, event.occurred_at) == ("456", dt.datetime(2023, 5, 25, 3, 17, 44, tzinfo=UTC))
    assert event.raw["forward_origin"]["sender_user"]["id"] == 429000


def test_skipped_updates_say_why() -> None:
    adapter = TelegramAdapter()

    for name in ("callback_query.json", "my_chat_member.json", "pinned_message.json"):
        adapter.parse(recorded(name))

    assert adapter.skipped == [("update", "update of kind callback_query is not a message"),
                               ("update", "update of kind my_chat_member is not a message"),
                               ("update.message", "service message (pinned_message)")]


def test_private_text_message_is_a_dm() -> None:
    event = parse_one("text.json")

    assert event.platform == "telegram"
    assert event.external_id == "12345678:123456"
    assert event.kind == EventKind.DIRECT_MESSAGE
    assert (event.author.platform, event.author.external_id, event.author.scope) == ("telegram", "12345678", "")
    assert (event.author.handle, event.author.display_name) == ("MarioLovesPeach", "Mario Bros")
    assert event.thread_key == "chat:12345678"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2021, 9, 16, 19, 1, 44, tzinfo=UTC)
    assert event.text == "aaaaaaaaaa"
    assert event.direction == Direction.INBOUND


def test_user_without_last_name() -> None:
    event = parse_one("message.json")

    assert (event.external_id, event.author.handle, event.author.display_name, event.text) == (
        "456:123", "Bros", "Mario", "Ciao")


def test_channel_post_is_a_post_by_the_channel() -> None:
    event = parse_one("channel_post.json")

    assert (event.external_id, event.kind, event.thread_key) == ("456:123", EventKind.POST, "chat:456")
    assert (event.author.external_id, event.author.handle, event.author.display_name) == ("456", "Bros", "Mario")
    assert event.occurred_at == dt.datetime(2023, 5, 25, 3, 17, 44, tzinfo=UTC)


def test_business_message_in_a_private_chat_is_a_dm() -> None:
    event = parse_one("business_message.json")

    assert (event.external_id, event.kind, event.text) == ("456:123", EventKind.DIRECT_MESSAGE, "Ciao")


def test_edited_message_is_an_edit_of_the_same_id_at_edit_date() -> None:
    event = parse_one("edited_message.json")

    assert event.external_id == "999999999:23762"
    assert event.kind == EventKind.EDIT
    assert event.occurred_at == dt.datetime(2020, 3, 23, 17, 40, 45, tzinfo=UTC)
    assert event.text == "Editing this message"
    assert event.reply_to_id == "999999999:23758"
    assert event.thread_key == "chat:999999999"
    assert (event.author.external_id, event.author.handle, event.author.display_name) == ("999999999", "super", "Mario")


def test_photo_keeps_the_largest_size_and_the_caption() -> None:
    event = parse_one("photo.json")

    assert event.text == "asdasdasdasdasdasd"
    # 720x960 is the largest image even though the 600x800 file is bigger in bytes and comes last.
    assert event.attachments == ({"type": "photo", "file_id": "SAAS", "file_unique_id": "SAAS",
                                  "width": 720, "height": 960},)


@pytest.mark.parametrize(("name", "attachment"), [
    ("document.json", {"type": "document", "file_id": "a1b2c34d5e6f7g8h9i", "file_unique_id": "a1b2c34d5e6f7g8h9i0j",
                       "file_name": "document.pdf", "mime_type": "application/pdf"}),
    ("voice.json", {"type": "voice", "file_id": "dfghjjghdjhgd", "file_unique_id": "ghjhjg", "mime_type": "audio/ogg"}),
    ("sticker.json", {"type": "sticker", "file_id": "yhufjikjhgjkghjffghgf", "file_unique_id": "fghgfhfgthf",
                      "emoji": "🤣"}),
    ("contact.json", {"type": "contact", "phone_number": "911", "first_name": "911",
                      "vcard": "BEGIN:VCARD\nVERSION:3.0\nFN:911\nTEL;VOICE:911\nEND:VCARD"}),
    ("location.json", {"type": "location", "latitude": 41.899977, "longitude": 12.501028}),
])
def test_attachments_are_summarised(name: str, attachment: dict) -> None:
    event = parse_one(name)

    assert event.attachments == (attachment,)
    assert event.text == ""
    assert event.kind == EventKind.DIRECT_MESSAGE


def test_get_updates_body_and_list_of_updates() -> None:
    body = {"ok": True, "result": [update("text.json"), update("callback_query.json"), update("photo.json")]}

    events = TelegramAdapter().parse(body)

    assert [e.external_id for e in events] == ["12345678:123456", "11111111:456901"]
    assert TelegramAdapter().parse(body["result"]) == events
    assert TelegramAdapter().parse({"ok": True, "result": []}) == []


@pytest.mark.parametrize("name", ["callback_query.json", "my_chat_member.json", "pinned_message.json"])
def test_unknown_update_kinds_and_service_messages_give_nothing(name: str) -> None:
    assert TelegramAdapter().parse(recorded(name)) == []


def _in_group(name: str, **extra) -> dict:
    """A real private-chat update moved into a supergroup (chat ids of groups are negative)."""
    body = update(name)
    message = body["message"]
    message["chat"] = {"id": -1001234567890, "title": "Support", "type": "supergroup", "is_forum": True}
    message.update(extra)
    return body


def test_group_message_is_a_post_and_a_group_reply_is_a_reply() -> None:
    [post] = TelegramAdapter().parse(_in_group("text.json"))
    reply_to = update("message.json")["message"] | {"chat": {"id": -1001234567890, "type": "supergroup"}}
    [reply] = TelegramAdapter().parse(_in_group("text.json", reply_to_message=reply_to))

    assert (post.kind, post.thread_key, post.reply_to_id) == (EventKind.POST, "chat:-1001234567890", "")
    assert post.external_id == "-1001234567890:123456"
    assert (reply.kind, reply.reply_to_id) == (EventKind.REPLY, "-1001234567890:123")


def test_forum_topic_message_is_threaded_by_topic_and_not_a_reply_to_the_topic_root() -> None:
    root = {"message_id": 7, "date": 1631818000, "chat": {"id": -1001234567890, "type": "supergroup"},
            "forum_topic_created": {"name": "Billing", "icon_color": 7322096}}
    body = _in_group("text.json", message_thread_id=7, is_topic_message=True, reply_to_message=root)

    [event] = TelegramAdapter().parse(body)

    assert (event.kind, event.thread_key, event.reply_to_id) == (
        EventKind.POST, "chat:-1001234567890:topic:7", "")


def test_sender_chat_authors_the_message() -> None:
    body = _in_group("text.json", sender_chat={"id": -1009876543210, "title": "Brand Channel", "type": "channel"})

    [event] = TelegramAdapter().parse(body)

    assert (event.author.external_id, event.author.display_name) == ("-1009876543210", "Brand Channel")


def test_messages_from_our_bot_are_outbound() -> None:
    [event] = TelegramAdapter(external_id="12345678").parse(recorded("text.json"))

    assert event.direction == Direction.OUTBOUND


def test_deleted_business_messages_are_deletes_at_receive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    received = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(telegram, "utc_now", lambda: received)
    chat = update("business_message.json")["business_message"]["chat"]
    body = {"update_id": 2, "deleted_business_messages": {"business_connection_id": "c1", "chat": chat,
                                                          "message_ids": [123, 124]}}

    events = TelegramAdapter().parse(body)

    assert [(e.external_id, e.kind, e.occurred_at, e.thread_key) for e in events] == [
        ("456:123", EventKind.DELETE, received, "chat:456"), ("456:124", EventKind.DELETE, received, "chat:456")]


def test_message_ids_are_only_unique_per_chat() -> None:
    ids = {TelegramAdapter().parse(recorded(name))[0].external_id for name in ("message.json", "text.json")}
    assert ids == {"456:123", "12345678:123456"}


@pytest.mark.parametrize(("payload", "message"), [
    ({"message": {"message_id": 1}}, "no update_id"),
    ({"ok": False, "error_code": 401, "description": "Unauthorized"}, "Unauthorized"),
    ({"ok": True, "result": {"update_id": 1}}, "must be a list"),
    ({"update_id": 1, "message": {"message_id": 1, "date": 1631818904}}, "has no chat"),
    ({"update_id": 1, "message": {"message_id": 1, "chat": {"id": 5, "type": "private"}}}, "has no date"),
    ({"update_id": 1, "edited_message": {"message_id": 1, "date": 1, "chat": {"id": 5, "type": "private"}}},
     "has no edit_date"),
    ({"update_id": 1, "message": {"message_id": "x", "date": 1, "chat": {"id": 5, "type": "private"}}},
     "message_id is missing or not an integer"),
    ({"update_id": 1, "message": "hello"}, "is not an object"),
    ([{"update_id": 1}, "x"], r"update\[1\] is not an object"),
    (b"{", "not valid JSON"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        TelegramAdapter().parse(payload)
