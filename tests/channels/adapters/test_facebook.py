"""Facebook Page webhook and Graph comment parser on real recorded bodies (restfb/, python-facebook/)."""

import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import Direction, EventKind, InboundEvent, PayloadError
from channels.adapters.facebook import FacebookAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
UTC = dt.UTC
FEED = "restfb/facebook_page_feed"
MESSENGER = "restfb/messenger"
PAGE = "1234567890321"  # the anonymised test page of the feed captures
MESSENGER_PAGE = "12345654332"


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def parse_one(path: str, adapter: FacebookAdapter | None = None) -> InboundEvent:
    events = (adapter or FacebookAdapter()).parse(recorded(path))
    assert len(events) == 1
    assert events[0].problems() == []
    return events[0]


def test_comment_add_v211_shape() -> None:
    event = parse_one(f"{FEED}/feed-comment-add-211.json")

    assert event.platform == "facebook"
    assert event.external_id == "901097836652708_903438993085259"
    assert event.kind == EventKind.COMMENT
    assert (event.author.platform, event.author.external_id, event.author.scope) == ("facebook", PAGE, PAGE)
    assert (event.author.handle, event.author.display_name) == ("", "Tester")
    assert event.thread_key == "1234567890321_901097836652708"
    assert event.reply_to_id == "1234567890321_901097836652708"
    assert event.occurred_at == dt.datetime(2015, 12, 3, 9, 30, 3, tzinfo=UTC)
    assert event.text == "and the next one"
    # The anonymised capture uses the page id for the commenter, so this is the page's own comment.
    assert event.direction == Direction.OUTBOUND


def test_comment_add_v25_legacy_sender_fields_give_the_same_event() -> None:
    new = parse_one(f"{FEED}/feed-comment-add-211.json")
    old = parse_one(f"{FEED}/feed-comment-add-25.json")

    fields = ("external_id", "kind", "occurred_at", "text", "thread_key", "reply_to_id", "direction")
    assert [getattr(old, f) for f in fields] == [getattr(new, f) for f in fields]
    assert (old.author.external_id, old.author.scope, old.author.display_name) == (PAGE, PAGE, "Tester")


def test_comment_with_photo_attachment() -> None:
    event = parse_one(f"{FEED}/feed-comment-add-with-photo.json")

    assert event.attachments == ({"type": "photo", "url": (
        "https://scontent-fra3-1.xx.fbcdn.net/v/t31.0-8/16715996_472849323104563_2289972788116415727_o.jpg"
        "?oh=7e0959913ff772d51e17b6d2bdebf44f&oe=593B77BB")},)


def test_reply_to_a_comment() -> None:
    body = json.loads(recorded(f"{FEED}/feed-comment-add-211.json"))
    value = body["entry"][0]["changes"][0]["value"]
    value["parent_id"] = "901097836652708_903438993085258"  # derived: a comment on the same post as parent
    value["from"] = {"id": "8423678347823", "name": "John Doe"}

    [event] = FacebookAdapter().parse(body)

    assert (event.kind, event.reply_to_id, event.thread_key) == (
        EventKind.REPLY, "901097836652708_903438993085258", "1234567890321_901097836652708")
    assert event.direction == Direction.INBOUND


def test_visitor_post() -> None:
    event = parse_one(f"{FEED}/feed-post-add-25.json")

    assert event.external_id == "1234567890321_7293787835232"
    assert event.kind == EventKind.POST
    author = event.author
    assert (author.external_id, author.scope, author.display_name) == ("8423678347823", PAGE, "John Doe")
    assert event.thread_key == "1234567890321_7293787835232"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2016, 2, 5, 21, 17, tzinfo=UTC)  # no created_time: entry.time
    assert event.text == "Let's check this"
    assert event.direction == Direction.INBOUND


def test_page_status_is_an_outbound_post() -> None:
    event = parse_one(f"{FEED}/feed-status-add-25.json")

    assert (event.external_id, event.kind, event.direction) == ("1234567890321_930145403745849", EventKind.POST,
                                                                Direction.OUTBOUND)
    assert event.text == "This is just a short test message"
    assert event.occurred_at == dt.datetime(2015, 11, 27, 14, 3, 58, tzinfo=UTC)


def test_comment_edited() -> None:
    event = parse_one(f"{FEED}/feed-comment-edited-25.json")

    assert event.external_id == "900728623356296_900744590021366"
    assert event.kind == EventKind.EDIT
    assert event.text == "Let's see the Webhooks in action :D"
    assert event.thread_key == "1234567890321_900728623356296"
    assert event.occurred_at == dt.datetime(2015, 11, 26, 16, 35, 37, tzinfo=UTC)
    assert (event.author.external_id, event.author.display_name) == (PAGE, "Tester")


def test_comment_removed() -> None:
    event = parse_one(f"{FEED}/feed-comment-remove-25.json")

    assert event.external_id == "905578656204626_905579239537901"
    assert event.kind == EventKind.DELETE
    assert event.text == ""
    assert event.thread_key == "1234567890321_905578656204626"
    assert event.occurred_at == dt.datetime(2016, 1, 6, 19, 6, 22, tzinfo=UTC)  # entry.time: no created_time
    assert (event.author.external_id, event.author.display_name) == (PAGE, "John Doe")


def test_page_mention_has_no_author() -> None:
    event = parse_one(f"{FEED}/mention-comment-add.json")

    assert event.external_id == "7363534231324_3754798971271444"
    assert event.kind == EventKind.MENTION
    assert event.author is None
    assert event.thread_key == "1234567890321_7363534231324"
    assert event.text == "Just a test message"
    assert event.occurred_at == dt.datetime(2021, 2, 26, 12, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("name", [
    "feed-comment-hide.json", "feed-like-add-25.json", "feed-reaction-add-comment.json", "feed-two-entries-25.json",
    "ratings-rating-add-25.json",
])
def test_moderation_reactions_and_other_fields_are_skipped(name: str) -> None:
    assert FacebookAdapter().parse(recorded(f"{FEED}/{name}")) == []


def test_messenger_text_message() -> None:
    event = parse_one(f"{MESSENGER}/messaging-message-basic.json")

    assert event.external_id == "mid.1457764197618:41d102a3e1ae206a38"
    assert event.kind == EventKind.DIRECT_MESSAGE
    assert (event.author.platform, event.author.external_id, event.author.scope) == (
        "facebook", "987654321432", MESSENGER_PAGE)
    assert (event.author.handle, event.author.display_name) == ("", "")
    assert event.thread_key == "psid:987654321432"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2016, 3, 12, 6, 29, 57, 627000, tzinfo=UTC)
    assert event.text == "hello, world!"
    assert event.direction == Direction.INBOUND


@pytest.mark.parametrize("name", ["messaging-message-basic-echo.json", "standby-message-basic-echo.json"])
def test_messenger_echo_is_outbound_without_author(name: str) -> None:
    event = parse_one(f"{MESSENGER}/{name}")

    assert (event.kind, event.direction, event.author) == (EventKind.DIRECT_MESSAGE, Direction.OUTBOUND, None)
    assert event.thread_key == "psid:987654321432"
    assert event.external_id == "mid.1457764197618:41d102a3e1ae206a38"


def test_messenger_edit() -> None:
    event = parse_one(f"{MESSENGER}/messaging-message-edits.json")

    assert (event.external_id, event.kind, event.text) == (
        "mid.1457764197618:41d102a3e1ae206a38", EventKind.EDIT, "hello, world!")
    assert event.thread_key == "psid:987654321432"
    assert event.occurred_at == dt.datetime(2016, 3, 12, 6, 29, 57, 627000, tzinfo=UTC)


def test_messenger_unsend_is_a_delete() -> None:
    event = parse_one(f"{MESSENGER}/messaging-message-isdeleted.json")

    assert (event.external_id, event.kind, event.text, event.thread_key) == (
        "message_id", EventKind.DELETE, "", "psid:987654321432")


def test_messenger_attachment_only_message() -> None:
    event = parse_one(f"{MESSENGER}/messaging-message-media-attachment.json")

    assert (event.external_id, event.text) == ("mid.1458696618141:b4ef9d19ec21086067", "")
    assert event.attachments == ({"type": "image", "url": "IMAGE_URL"},)


def test_messenger_sticker_with_string_ids() -> None:
    event = parse_one(f"{MESSENGER}/messaging-message-sticker.json")

    assert event.attachments == ({"type": "image", "url": "https://scontent.xx.fbcdn.net/sticker.png",
                                  "sticker_id": "56789012345678"},)
    assert event.author.scope == MESSENGER_PAGE


def test_messenger_reply_to_and_quick_reply() -> None:
    reply = parse_one(f"{MESSENGER}/messaging-message-reply-1.json")
    quick = parse_one(f"{MESSENGER}/messaging-message-quickreply.json")

    assert reply.reply_to_id == "very_long_id_representing_the_original_message"
    assert (quick.text, quick.author.scope) == ("quick reply text", PAGE)


@pytest.mark.parametrize("name", [
    "messaging-delivery-basic.json", "messaging-read-basic.json", "messaging-postback-basic.json",
    "messaging-reaction-1.json",
])
def test_messenger_receipts_postbacks_and_reactions_are_skipped(name: str) -> None:
    assert FacebookAdapter().parse(recorded(f"{MESSENGER}/{name}")) == []


def test_page_ids_beyond_2_pow_53_stay_exact() -> None:
    body = json.loads(recorded(f"{MESSENGER}/messaging-message-basic.json"))
    body["entry"][0]["id"] = 2**60 + 1
    body["entry"][0]["messaging"][0]["recipient"]["id"] = 2**60 + 1
    [event] = FacebookAdapter().parse(body)
    assert event.author.scope == "1152921504606846977"

    body["entry"][0]["id_str"] = "1152921504606846977"
    body["entry"][0]["id"] = 1.152921504606847e18  # what a float-decoding client would have left
    [event] = FacebookAdapter().parse(body)
    assert event.author.scope == "1152921504606846977"


def test_polled_comment_page_without_ids_or_authors() -> None:
    adapter = FacebookAdapter(external_id="19292868552")
    events = adapter.parse(recorded("python-facebook/facebook_graph/page_post_comments_page1.json"))

    assert len(events) == 10
    assert all(e.problems() == [] for e in events)
    first = events[0]
    assert first.external_id == "10158407654328553_10158407835073553"
    assert first.kind == EventKind.COMMENT
    assert first.author is None
    assert first.thread_key == "19292868552_10158407654328553"
    assert first.reply_to_id == "19292868552_10158407654328553"
    assert first.occurred_at == dt.datetime(2021, 8, 10, 18, 45, 3, tzinfo=UTC)
    assert first.text == "Boa noite peço ajuda  Como faço para usar a minha página como meu perfil?"
    assert first.direction == Direction.INBOUND
    reply = events[5]
    assert reply.external_id == "10158407654328553_10158409983033553"
    assert reply.kind == EventKind.REPLY
    assert reply.reply_to_id == "10158407654328553_10158407903973553"
    assert reply.thread_key == "19292868552_10158407654328553"


def test_polled_comment_with_all_fields() -> None:
    adapter = FacebookAdapter(external_id="2121008874780932")
    [event] = adapter.parse(recorded("python-facebook/facebook_graph/comment_full_fields.json"))

    assert (event.external_id, event.kind) == ("2954961744718970_2966313500250461", EventKind.COMMENT)
    assert (event.author.external_id, event.author.scope, event.author.display_name) == (
        "2711636948859886", "2121008874780932", "Kun Liu")
    assert event.thread_key == "2121008874780932_2954961744718970"
    assert event.occurred_at == dt.datetime(2021, 7, 23, 8, 35, 18, tzinfo=UTC)
    assert event.text == "My Nice Car "
    assert event.attachments[0]["type"] == "photo"
    assert event.attachments[0]["image_url"].startswith("https://scontent-gmp1-1.xx.fbcdn.net/")


def test_polled_page_needs_the_page_id() -> None:
    with pytest.raises(PayloadError, match="does not name its page"):
        FacebookAdapter().parse(recorded("python-facebook/facebook_graph/page_post_comments_page1.json"))


@pytest.mark.parametrize(("payload", "message"), [
    ({"object": "instagram", "entry": []}, 'expected "page"'),
    ({"object": "page"}, "no `entry` list"),
    ({"object": "page", "entry": ["1234567890321"]}, r"entry\[0\] is not an object"),
    ({"object": "page", "entry": [{"time": 1}]}, r"entry\[0\]\.id is missing"),
    ({"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {
        "item": "comment", "verb": "add", "post_id": "1_2", "created_time": 1449135003}}]}]}, "comment_id"),
    ({"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": {
        "item": "comment", "verb": "add", "post_id": "1_2", "comment_id": "2_3"}}]}]}, "neither"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": 5}, "message": {"text": "x"}}]}]},
     "mid"),
    ({"hello": "world"}, "not a Facebook Page webhook"),
    (["x"], "must be a JSON object"),
    (b"\xff", "not valid JSON"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        FacebookAdapter(external_id="1").parse(payload)
