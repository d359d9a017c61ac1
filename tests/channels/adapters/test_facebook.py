"""Facebook Page webhook parser on real recorded bodies (restfb/facebook_page_feed, restfb/messenger)."""

import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import DeliveryStatus, Direction, EventKind, InboundEvent, PayloadError
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


@pytest.mark.parametrize(("name", "reasons"), [
    ("feed-comment-hide.json", ["feed comment verb 'hide' (moderation or unknown) changes no message"]),
    ("feed-like-add-25.json", ["feed item 'like' is not a message"]),
    ("feed-reaction-add-comment.json", ["feed item 'reaction' is not a message"]),
    ("feed-two-entries-25.json", ["field 'parking' is not a conversation",
                                  "field 'payment_options' is not a conversation"]),
])
def test_moderation_reactions_and_other_fields_are_skipped_with_a_reason(name: str, reasons: list[str]) -> None:
    adapter = FacebookAdapter()

    assert adapter.parse(recorded(f"{FEED}/{name}")) == []
    assert [why for _, why in adapter.skipped] == reasons


def test_unhide_is_skipped_too() -> None:
    body = json.loads(recorded(f"{FEED}/feed-comment-hide.json"))
    body["entry"][0]["changes"][0]["value"]["verb"] = "unhide"  # derived: the reverse moderation action
    adapter = FacebookAdapter()

    assert adapter.parse(body) == []
    assert adapter.skipped == [("entry[0].changes[0]", "feed comment verb 'unhide' (moderation or unknown) "
                                                       "changes no message")]


def test_page_review_is_a_post_by_the_reviewer() -> None:
    event = parse_one(f"{FEED}/ratings-rating-add-25.json")

    assert (event.external_id, event.kind, event.thread_key, event.reply_to_id) == (
        "904801129604590", EventKind.POST, "904801129604590", "")
    assert (event.author.external_id, event.author.scope, event.author.display_name) == (
        "705955836155788", PAGE, "Tester")
    assert event.text == "Ja ziemlich coole Sache"
    assert event.occurred_at == dt.datetime(2015, 11, 29, 11, 3, 22, tzinfo=UTC)  # no created_time: entry.time
    assert event.direction == Direction.INBOUND


def test_comment_on_a_review_joins_the_review_thread() -> None:
    review = parse_one(f"{FEED}/ratings-rating-add-25.json")
    event = parse_one(f"{FEED}/ratings-comment-add-25.json")

    assert (event.external_id, event.kind) == ("904801129604590_904802532937783", EventKind.COMMENT)
    assert event.thread_key == review.external_id == "904801129604590"
    assert event.reply_to_id == "904801129604590"
    assert (event.author.external_id, event.author.scope, event.author.display_name) == (
        "705955836155788", PAGE, "Tester")
    assert event.text == ""
    assert event.occurred_at == dt.datetime(2015, 11, 29, 11, 9, 46, tzinfo=UTC)


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


def test_delivery_receipt_is_a_status_of_our_message() -> None:
    event = parse_one(f"{MESSENGER}/messaging-delivery-basic.json")

    assert (event.kind, event.status) == (EventKind.STATUS, DeliveryStatus.DELIVERED)
    assert event.external_id == "mid.1458668856218:ed81099e15d3f4f233"
    assert (event.thread_key, event.author, event.text, event.reply_to_id) == ("psid:987654321432", None, "", "")
    assert event.direction == Direction.OUTBOUND
    assert event.occurred_at == dt.datetime(2016, 3, 22, 17, 47, 36, 253000, tzinfo=UTC)  # the watermark


def test_delivery_of_several_messages_gives_one_status_each() -> None:
    body = json.loads(recorded(f"{MESSENGER}/messaging-delivery-basic.json"))
    body["entry"][0]["messaging"][0]["delivery"]["mids"].append("m_second")  # derived: a second message id

    events = FacebookAdapter().parse(body)

    assert [(e.external_id, e.status) for e in events] == [
        ("mid.1458668856218:ed81099e15d3f4f233", DeliveryStatus.DELIVERED), ("m_second", DeliveryStatus.DELIVERED)]


@pytest.mark.parametrize(("name", "reason"), [
    ("messaging-read-basic.json", "read receipt names no message ids (watermark only)"),
    ("messaging-postback-basic.json", "postback event is not a message"),
    ("messaging-reaction-1.json", "reaction event is not a message"),
    ("messaging-referral-basic.json", "referral event is not a message"),
])
def test_read_watermarks_postbacks_reactions_and_referrals_are_skipped(name: str, reason: str) -> None:
    adapter = FacebookAdapter()

    assert adapter.parse(recorded(f"{MESSENGER}/{name}")) == []
    assert adapter.skipped == [("entry[0].messaging[0]", reason)]


def test_delivery_without_mids_is_skipped() -> None:
    body = json.loads(recorded(f"{MESSENGER}/messaging-delivery-basic.json"))
    del body["entry"][0]["messaging"][0]["delivery"]["mids"]  # derived: a watermark-only delivery
    adapter = FacebookAdapter()

    assert adapter.parse(body) == []
    assert adapter.skipped == [("entry[0].messaging[0]", "delivery receipt names no message ids (watermark only)")]


M1, M2 = "mid.1457764197618:41d102a3e1ae206a38", "mid.1458696618141:b4ef9d19ec21086067"
USER = "987654321432"
K = EventKind
# Every recorded webhook with events: (file, kind, external id, author id, thread key, reply-to, text, direction).
EVERY_EVENT = [
    (f"{FEED}/feed-comment-add-211.json", K.COMMENT, "901097836652708_903438993085259", PAGE,
     "1234567890321_901097836652708", "1234567890321_901097836652708", "and the next one", Direction.OUTBOUND),
    (f"{FEED}/feed-comment-add-25.json", K.COMMENT, "901097836652708_903438993085259", PAGE,
     "1234567890321_901097836652708", "1234567890321_901097836652708", "and the next one", Direction.OUTBOUND),
    (f"{FEED}/feed-comment-add-with-photo.json", K.COMMENT, "901097836652708_903438993085259", PAGE,
     "1234567890321_901097836652708", "1234567890321_901097836652708", "and the next one", Direction.OUTBOUND),
    (f"{FEED}/feed-comment-edited-25.json", K.EDIT, "900728623356296_900744590021366", PAGE,
     "1234567890321_900728623356296", "1234567890321_900728623356296", "Let's see the Webhooks in action :D",
     Direction.OUTBOUND),
    (f"{FEED}/feed-comment-remove-25.json", K.DELETE, "905578656204626_905579239537901", PAGE,
     "1234567890321_905578656204626", "1234567890321_905578656204626", "", Direction.OUTBOUND),
    (f"{FEED}/feed-post-add-25.json", K.POST, "1234567890321_7293787835232", "8423678347823",
     "1234567890321_7293787835232", "", "Let's check this", Direction.INBOUND),
    (f"{FEED}/feed-status-add-25.json", K.POST, "1234567890321_930145403745849", PAGE,
     "1234567890321_930145403745849", "", "This is just a short test message", Direction.OUTBOUND),
    (f"{FEED}/mention-comment-add.json", K.MENTION, "7363534231324_3754798971271444", None,
     "1234567890321_7363534231324", "1234567890321_7363534231324", "Just a test message", Direction.INBOUND),
    (f"{FEED}/ratings-comment-add-25.json", K.COMMENT, "904801129604590_904802532937783", "705955836155788",
     "904801129604590", "904801129604590", "", Direction.INBOUND),
    (f"{FEED}/ratings-rating-add-25.json", K.POST, "904801129604590", "705955836155788", "904801129604590", "",
     "Ja ziemlich coole Sache", Direction.INBOUND),
    (f"{MESSENGER}/messaging-delivery-basic.json", K.STATUS, "mid.1458668856218:ed81099e15d3f4f233", None,
     f"psid:{USER}", "", "", Direction.OUTBOUND),
    (f"{MESSENGER}/messaging-message-basic-echo.json", K.DIRECT_MESSAGE, M1, None, f"psid:{USER}", "",
     "hello, world!", Direction.OUTBOUND),
    (f"{MESSENGER}/messaging-message-basic.json", K.DIRECT_MESSAGE, M1, USER, f"psid:{USER}", "", "hello, world!",
     Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-edits.json", K.EDIT, M1, USER, f"psid:{USER}", "", "hello, world!",
     Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-isdeleted.json", K.DELETE, "message_id", USER, f"psid:{USER}", "", "",
     Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-media-attachment.json", K.DIRECT_MESSAGE, M2, USER, f"psid:{USER}", "", "",
     Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-quickreply.json", K.DIRECT_MESSAGE, M2, USER, f"psid:{USER}", "",
     "quick reply text", Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-reply-1.json", K.DIRECT_MESSAGE, M1, USER, f"psid:{USER}",
     "very_long_id_representing_the_original_message", "hello, world!", Direction.INBOUND),
    (f"{MESSENGER}/messaging-message-sticker.json", K.DIRECT_MESSAGE, "mid.12345654332:226a70a704", USER,
     f"psid:{USER}", "", "", Direction.INBOUND),
    (f"{MESSENGER}/standby-message-basic-echo.json", K.DIRECT_MESSAGE, M1, None, f"psid:{USER}", "", "hello, world!",
     Direction.OUTBOUND),
]
SKIPPED_ONLY = [f"{FEED}/{n}" for n in ("feed-comment-hide.json", "feed-like-add-25.json",
                                         "feed-reaction-add-comment.json", "feed-two-entries-25.json")] + [
    f"{MESSENGER}/{n}" for n in ("messaging-postback-basic.json", "messaging-reaction-1.json",
                                 "messaging-read-basic.json", "messaging-referral-basic.json")]


@pytest.mark.parametrize(("path", "kind", "external_id", "author_id", "thread_key", "reply_to", "text", "direction"),
                         EVERY_EVENT, ids=[row[0].rsplit("/", 1)[1] for row in EVERY_EVENT])
def test_every_recorded_webhook_event(path: str, kind: EventKind, external_id: str, author_id: str | None,
                                      thread_key: str, reply_to: str, text: str, direction: Direction) -> None:
    event = parse_one(path)

    assert (event.platform, event.kind, event.external_id) == ("facebook", kind, external_id)
    assert (event.author.external_id if event.author else None) == author_id
    assert event.author is None or event.author.handle == ""  # Facebook gives names, never handles
    assert (event.thread_key, event.reply_to_id, event.text, event.direction) == (thread_key, reply_to, text, direction)


def test_every_recorded_webhook_file_is_covered() -> None:
    files = {str(p.relative_to(RECORDED)) for folder in (FEED, MESSENGER) for p in (RECORDED / folder).glob("*.json")}

    assert files == {row[0] for row in EVERY_EVENT} | set(SKIPPED_ONLY)
    for path in SKIPPED_ONLY:
        adapter = FacebookAdapter()
        assert adapter.parse(recorded(path)) == []
        assert adapter.skipped


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
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "1"}, "recipient": {"id": "1"},
                                                             "message": {"mid": "m_1"}}]}]}, "names no user id"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "5"}, "message": "hi"}]}]},
     r"messaging\[0\]\.message is not an object"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "5"}, "timestamp": 1,
                                                             "message": {"mid": "m_1", "text": 7}}]}]},
     r"message\.text is not a string"),
    ({"object": "page", "entry": [{"id": "1", "messaging": [{"sender": {"id": "5"}, "delivery": {"mids": ["m_1"]}}]}]},
     "no timestamp, watermark or entry.time"),
    ({"object": "page", "entry": [{"id": "1", "changes": [{"field": "feed", "value": "comment"}]}]},
     r"changes\[0\]\.value is not an object"),
    ({"object": "page", "entry": [{"id": "1", "time": 1, "changes": [{"field": "ratings", "value": {
        "item": "rating", "verb": "add", "reviewer_id": 5}}]}]}, "open_graph_story_id"),
    ({"hello": "world"}, "not a Facebook Page webhook"),
    (["x"], "must be a JSON object"),
    (b"\xff", "not valid JSON"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        FacebookAdapter(external_id="1").parse(payload)
