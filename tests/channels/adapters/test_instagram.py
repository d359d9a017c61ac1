"""Instagram webhook and Graph parser on real recorded bodies (restfb/instagram, python-facebook/instagram_graph)."""

import copy
import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import DeliveryStatus, Direction, EventKind, InboundEvent, PayloadError
from channels.adapters.instagram import InstagramAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
WEBHOOKS = "restfb/instagram"
GRAPH = "python-facebook/instagram_graph"
UTC = dt.UTC
IKROSKUN = "17841406338772941"  # the Instagram account of the python-facebook captures (mentioned_comment.json `id`)
SEEN_ACCOUNT = "17841452691600098"  # the account of messaging-seen.json
CUSTOMER = "5614879045272581"


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def body(path: str) -> dict:
    return json.loads(recorded(path))


def parse(path: str | dict, account: str = IKROSKUN) -> list[InboundEvent]:
    events = InstagramAdapter(external_id=account).parse(recorded(path) if isinstance(path, str) else path)
    assert all(e.problems() == [] and e.platform == "instagram" for e in events)
    return events


# -- webhooks ------------------------------------------------------------------------------------------------------

def test_comment_reply_webhook() -> None:
    [event] = parse(f"{WEBHOOKS}/wh-comments-2021.json")

    assert (event.external_id, event.kind) == ("123456789", EventKind.REPLY)
    author = event.author
    assert (author.platform, author.external_id, author.scope) == ("instagram", "1234536447", IKROSKUN)
    assert (author.handle, author.profile_url) == ("testuser", "https://www.instagram.com/testuser/")
    assert (event.thread_key, event.reply_to_id) == ("76543987", "987654321")
    assert event.text == "This is an example."
    assert event.occurred_at == dt.datetime(2018, 2, 23, 15, 21, 47, tzinfo=UTC)  # entry.time: the value has none
    assert event.direction == Direction.INBOUND
    assert event.raw["media"] == {"id": "76543987", "media_product_type": "FEED"}


def test_test_delivery_entry_id_zero_takes_the_configured_account_as_scope() -> None:
    [configured] = parse(f"{WEBHOOKS}/wh-comments-2021.json", account="17841400000000001")
    [bare] = InstagramAdapter().parse(recorded(f"{WEBHOOKS}/wh-comments-2021.json"))

    assert configured.author.scope == "17841400000000001"
    assert bare.author.scope == "0"


def test_top_level_comment_and_our_own_comment() -> None:
    payload = body(f"{WEBHOOKS}/wh-comments-2021.json")
    value = payload["entry"][0]["changes"][0]["value"]
    del value["parent_id"]  # derived: a top-level comment on the media
    payload["entry"][0]["id"] = IKROSKUN
    ours = copy.deepcopy(payload)
    ours["entry"][0]["changes"][0]["value"]["from"] = {"id": IKROSKUN, "username": "ikroskun"}  # derived: by us

    [comment] = parse(payload)
    [own] = parse(ours)

    assert (comment.kind, comment.thread_key, comment.reply_to_id, comment.direction) == (
        EventKind.COMMENT, "76543987", "76543987", Direction.INBOUND)
    assert (own.direction, own.author.external_id) == (Direction.OUTBOUND, IKROSKUN)


def test_old_comment_delivery_with_only_id_and_text() -> None:
    payload = body(f"{WEBHOOKS}/wh-comments-2021.json")
    payload["entry"][0]["changes"][0]["value"] = {"id": "17865799348089039", "text": "Great!"}  # derived: old shape

    [event] = parse(payload)

    assert (event.kind, event.thread_key, event.reply_to_id, event.author) == (
        EventKind.COMMENT, "17865799348089039", "", None)


def test_live_comment_is_a_comment() -> None:
    payload = body(f"{WEBHOOKS}/wh-comments-2021.json")
    payload["entry"][0]["changes"][0]["field"] = "live_comments"  # derived: same value shape on a live video

    [event] = parse(payload)

    assert (event.kind, event.external_id) == (EventKind.REPLY, "123456789")


def test_mention_webhook_names_only_the_comment_and_media() -> None:
    [event] = parse(f"{WEBHOOKS}/wh-mentions.json")

    assert (event.external_id, event.kind, event.thread_key, event.reply_to_id) == (
        "17887498072083520", EventKind.MENTION, "17887498072083520", "")
    assert (event.author, event.text, event.direction) == (None, "", Direction.INBOUND)
    assert event.occurred_at == dt.datetime(2018, 2, 23, 15, 21, 50, tzinfo=UTC)


def test_caption_mention_has_only_a_media_id() -> None:
    payload = body(f"{WEBHOOKS}/wh-mentions.json")
    payload["entry"][0]["changes"][0]["value"] = {"media_id": "17920238422030506"}  # derived: @mention in a caption

    [event] = parse(payload)

    assert (event.external_id, event.thread_key, event.kind) == ("17920238422030506", "17920238422030506",
                                                                 EventKind.MENTION)


def test_read_receipt_is_a_status_of_our_message() -> None:
    [event] = parse(f"{WEBHOOKS}/messaging-seen.json", account=SEEN_ACCOUNT)

    assert (event.kind, event.status, event.external_id) == (EventKind.STATUS, DeliveryStatus.READ, "MESSAGE-ID")
    assert (event.thread_key, event.author, event.direction) == (f"igsid:{CUSTOMER}", None, Direction.OUTBOUND)
    assert event.occurred_at == dt.datetime(2022, 11, 9, 19, 32, 13, 735000, tzinfo=UTC)


def direct_message(**message: object) -> dict:
    """messaging-seen.json with its read receipt replaced by a message (derived: the same envelope, sender and ids)."""
    payload = body(f"{WEBHOOKS}/messaging-seen.json")
    item = payload["entry"][0]["messaging"][0]
    del item["read"]
    item["message"] = {"mid": "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx", **message}
    return payload


def test_direct_message() -> None:
    [event] = parse(direct_message(text="Is this in stock?"), account=SEEN_ACCOUNT)

    assert (event.external_id, event.kind) == ("aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx", EventKind.DIRECT_MESSAGE)
    assert (event.author.platform, event.author.external_id, event.author.scope, event.author.handle) == (
        "instagram", CUSTOMER, SEEN_ACCOUNT, "")
    assert (event.thread_key, event.reply_to_id, event.text) == (f"igsid:{CUSTOMER}", "", "Is this in stock?")
    assert event.occurred_at == dt.datetime(2022, 11, 9, 19, 32, 13, 735000, tzinfo=UTC)
    assert event.direction == Direction.INBOUND


def test_echo_of_our_direct_message_is_outbound() -> None:
    payload = direct_message(text="It is!", is_echo=True)
    item = payload["entry"][0]["messaging"][0]
    item["sender"], item["recipient"] = item["recipient"], item["sender"]  # derived: an echo goes account -> user

    [event] = parse(payload, account=SEEN_ACCOUNT)

    assert (event.direction, event.author, event.thread_key) == (Direction.OUTBOUND, None, f"igsid:{CUSTOMER}")


def test_unsent_direct_message_is_a_delete() -> None:
    [event] = parse(direct_message(is_deleted=True), account=SEEN_ACCOUNT)

    assert (event.kind, event.text, event.thread_key) == (EventKind.DELETE, "", f"igsid:{CUSTOMER}")


def test_story_reply_keeps_the_story() -> None:
    story = {"url": "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1", "id": "17900000000000001"}
    [event] = parse(direct_message(text="Love it", reply_to={"story": story}), account=SEEN_ACCOUNT)

    assert event.reply_to_id == "17900000000000001"
    assert event.attachments == ({"type": "story_reply", "id": "17900000000000001", "url": story["url"]},)


def test_reaction_and_other_fields_are_skipped() -> None:
    payload = body(f"{WEBHOOKS}/messaging-seen.json")
    item = payload["entry"][0]["messaging"][0]
    item["reaction"] = item.pop("read")  # derived: a reaction event in the same envelope
    payload["entry"][0]["changes"] = [{"field": "story_insights", "value": {"media_id": "1", "reach": 3}}]
    adapter = InstagramAdapter(external_id=SEEN_ACCOUNT)

    assert adapter.parse(payload) == []
    assert adapter.skipped == [("entry[0].changes[0]", "field 'story_insights' is not a conversation"),
                               ("entry[0].messaging[0]", "reaction event is not a message")]


# -- Graph bodies --------------------------------------------------------------------------------------------------

def test_own_comment_with_nested_reply() -> None:
    comment, reply = parse(f"{GRAPH}/comment_with_replies.json")

    assert (comment.external_id, comment.kind) == ("17892250648466172", EventKind.COMMENT)
    assert (comment.author.external_id, comment.author.scope, comment.author.handle) == (
        IKROSKUN, IKROSKUN, "ikroskun")
    assert (comment.thread_key, comment.reply_to_id) == ("17846368219941692", "17846368219941692")
    assert comment.text == "@ikroskun  Hey, guys"
    assert comment.occurred_at == dt.datetime(2020, 2, 24, 9, 15, 16, tzinfo=UTC)
    assert comment.direction == Direction.OUTBOUND  # `user` is only given for the account's own comments
    assert "replies" not in comment.raw
    assert (reply.external_id, reply.kind, reply.author) == ("17845747489952795", EventKind.REPLY, None)
    assert (reply.thread_key, reply.reply_to_id, reply.text) == ("17846368219941692", "17892250648466172",
                                                                 "@ikroskun Nice")
    assert reply.occurred_at == dt.datetime(2020, 2, 24, 9, 18, 8, tzinfo=UTC)
    assert reply.direction == Direction.INBOUND


def test_media_comments_page_takes_the_media_from_its_paging_link() -> None:
    events = parse(f"{GRAPH}/media_comments_page1.json")

    assert [(e.external_id, e.kind, e.thread_key, e.reply_to_id, e.text) for e in events] == [
        ("17858154961981086", EventKind.COMMENT, "17846368219941692", "17846368219941692", "Beautiful!"),
        ("17874875428706419", EventKind.COMMENT, "17846368219941692", "17846368219941692", "Beautiful!")]
    assert all(e.author is None for e in events)  # only `username`-less fields were requested
    assert events[0].occurred_at == dt.datetime(2020, 6, 1, 10, 56, 52, tzinfo=UTC)


def test_comments_by_id_map() -> None:
    events = parse(f"{GRAPH}/comments_by_id.json")

    assert [(e.external_id, e.thread_key, e.text) for e in events] == [
        ("17892250648466172", "17892250648466172", "@ikroskun  Hey, guys"),
        ("17858154961981086", "17858154961981086", "Beautiful!")]
    assert [e.raw["username"] for e in events] == ["ikroskun", "lixiangguodu123"]
    assert all(e.author is None for e in events)  # a username without an id is not an identity


def test_mentioned_comment_lookup() -> None:
    [event] = parse(f"{GRAPH}/mentioned_comment.json", account="")

    assert (event.external_id, event.kind, event.thread_key, event.reply_to_id) == (
        "17967008497439572", EventKind.MENTION, "17967008497439572", "")
    assert (event.author, event.text) == (None, "@ikroskun good")
    assert event.occurred_at == dt.datetime(2021, 8, 19, 9, 14, 16, tzinfo=UTC)


def test_media_with_comments_edge() -> None:
    comment = body(f"{GRAPH}/comment_with_replies.json")
    del comment["media"]
    # Our poll asks for `comments{...}` inside each media; its shape is a recorded comment under a media.
    media = {"id": "17846368219941692", "timestamp": "2020-02-24T09:00:00+0000", "media_type": "IMAGE",
             "comments": {"data": [comment]}}
    quiet = {"id": "17846368219941693", "timestamp": "2020-02-23T09:00:00+0000", "media_type": "VIDEO"}
    adapter = InstagramAdapter(external_id=IKROSKUN)

    events = adapter.parse({"data": [media, quiet]})

    assert [(e.external_id, e.kind, e.thread_key) for e in events] == [
        ("17892250648466172", EventKind.COMMENT, "17846368219941692"),
        ("17845747489952795", EventKind.REPLY, "17846368219941692")]
    assert adapter.skipped == [("data[1]", "media 17846368219941693 carries no comments")]


def test_polled_bodies_need_the_account() -> None:
    with pytest.raises(PayloadError, match="does not name its Instagram account"):
        InstagramAdapter().parse(recorded(f"{GRAPH}/media_comments_page1.json"))


@pytest.mark.parametrize("path", sorted(
    str(p.relative_to(RECORDED)) for folder in (WEBHOOKS, GRAPH) for p in (RECORDED / folder).glob("*.json")))
def test_every_recorded_body_parses(path: str) -> None:
    assert parse(path)


@pytest.mark.parametrize(("payload", "message"), [
    ({"object": "page", "entry": []}, 'expected "instagram"'),
    ({"object": "instagram"}, "no `entry` list"),
    ({"object": "instagram", "entry": [7]}, r"entry\[0\] is not an object"),
    ({"object": "instagram", "entry": [{"time": 1}]}, r"entry\[0\]\.id is missing"),
    ({"object": "instagram", "entry": [{"id": "1", "changes": [{"field": "comments", "value": {"id": "5"}}]}]},
     "entry has no time"),
    ({"object": "instagram", "entry": [{"id": "1", "time": 1, "changes": [{"field": "comments", "value": []}]}]},
     r"value is not an object"),
    ({"object": "instagram", "entry": [{"id": "1", "time": 1, "changes": [{"field": "comments",
                                                                           "value": {"text": "hi"}}]}]}, r"\.id is"),
    ({"object": "instagram", "entry": [{"id": "1", "time": 1, "changes": [{"field": "mentions", "value": {}}]}]},
     "neither comment_id nor media_id"),
    ({"data": [{"id": "5", "text": "hi"}]}, "has no timestamp"),
    ({"data": [{"id": "5", "timestamp": "2020-02-24T09:15:16+0000", "text": 3}]}, "text is not a string"),
    ({"mentioned_comment": "x", "id": "1"}, "mentioned_comment is not an object"),
    ({"hello": "world"}, "not an Instagram webhook"),
    ([1], "must be a JSON object"),
    (b"{", "not valid JSON"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        InstagramAdapter(external_id=IKROSKUN).parse(payload)
