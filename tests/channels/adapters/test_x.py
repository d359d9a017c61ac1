"""X API v2 parser on real recorded responses (channels/recorded/python-twitter, channels/recorded/tweepy)."""

import copy
import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import Direction, EventKind, PayloadError
from channels.adapters.x import XAdapter, snowflake_time

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
UTC = dt.UTC


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


def exchange(path: str, index: int) -> dict:
    return json.loads(recorded(path))["exchanges"][index]["response_body"]


REPLY_THREAD = "python-twitter/x_api_v2/search_recent_reply_thread_with_includes.json"
MENTIONS = "python-twitter/x_api_v2/users_mentions_with_created_at.json"


def test_reply_with_author_expansion_and_media() -> None:
    events = XAdapter().parse(recorded(REPLY_THREAD))

    assert len(events) == 4
    event = events[0]
    assert event.platform == "x"
    assert event.external_id == "1276035977375477760"
    assert event.kind == EventKind.REPLY
    assert (event.author.platform, event.author.external_id, event.author.scope) == ("x", "63046977", "")
    assert (event.author.handle, event.author.display_name) == ("happycamper", "Emily Waligoske 🏕")
    assert event.thread_key == "1273733248749690880"  # the root, reached through includes.tweets
    assert event.reply_to_id == "1275653067283759104"
    assert event.occurred_at == dt.datetime(2020, 6, 25, 6, 14, 19, tzinfo=UTC)
    assert event.text == ("@snowman Ooo, thanks error message, public_metircs are not the metrics you’re looking for "
                          "https://t.co/14TzLYBBXi")
    assert event.direction == Direction.INBOUND
    assert event.attachments == ({"media_key": "16_1276035971193044992", "type": ""},)
    assert event.problems() == []


def test_whole_reply_thread_shares_the_root_thread_key() -> None:
    events = XAdapter().parse(recorded(REPLY_THREAD))

    assert {e.thread_key for e in events} == {"1273733248749690880"}
    assert [e.reply_to_id for e in events] == [
        "1275653067283759104", "1273733248749690880", "1275653067283759104", "1274086728471461889"]
    assert events[3].author.handle == "snowman"


def test_polled_mention_without_author_expansion_has_no_author() -> None:
    events = XAdapter().parse(recorded(MENTIONS))

    assert len(events) == 5
    event = events[0]
    assert event.external_id == "1364398068313903104"
    assert event.kind == EventKind.MENTION
    assert event.author is None
    assert event.thread_key == "1364398068313903104"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2021, 2, 24, 2, 13, 43, tzinfo=UTC)
    assert event.text == ("@Twitter should consider supporting #VoiceMessaging support for @TweetDeck too\n\n"
                          "@TwitterSupport \n@TwitterDev")
    assert event.direction == Direction.INBOUND
    assert all(e.problems() == [] for e in events)


def test_mention_with_author_expansion() -> None:
    events = XAdapter().parse(recorded("python-twitter/x_api_v2/tweets_lookup_with_author_expansion.json"))

    event = events[1]
    assert (event.external_id, event.kind) == ("1278347468690915330", EventKind.MENTION)
    author = event.author
    assert (author.external_id, author.handle, author.display_name) == ("783214", "Twitter", "Twitter")
    assert event.author.profile_url == "https://x.com/Twitter"
    assert event.text == "Good news and bad news: \n\n2020 is half over"
    assert event.occurred_at == dt.datetime(2020, 7, 1, 15, 19, 21, tzinfo=UTC)


def test_missing_created_at_falls_back_to_the_snowflake_time() -> None:
    events = XAdapter().parse(recorded("tweepy/x_api_v2/users_mentions.json"))

    assert events[0].external_id == "1578516295611748353"
    assert events[0].occurred_at == dt.datetime(2022, 10, 7, 22, 43, 6, 945000, tzinfo=UTC)
    assert events[0].author is None
    # The snowflake agrees with created_at wherever both exist (created_at is cut to whole seconds).
    for tweet in json.loads(recorded(MENTIONS))["data"]:
        expected = dt.datetime.fromisoformat(tweet["created_at"])
        assert snowflake_time(tweet["id"]).replace(microsecond=0) == expected


def test_edited_tweet_gives_create_and_edit_on_the_original_id() -> None:
    events = XAdapter().parse(recorded("tweepy/x_api_v2/home_timeline_reverse_chronological.json"))

    edited = [e for e in events if e.external_id == "1577158996984987648"]
    assert [e.kind for e in edited] == [EventKind.MENTION, EventKind.EDIT]
    create, edit = edited
    assert create.occurred_at == dt.datetime(2022, 10, 4, 4, 49, 41, 735000, tzinfo=UTC)
    assert edit.occurred_at == dt.datetime(2022, 10, 4, 5, 2, 36, 117000, tzinfo=UTC)
    assert edit.text == create.text == "I hope I’m not mistaken. Fixed it. https://t.co/6o0rdokH3t"
    assert edit.thread_key == "1577158996984987648"
    assert not [e for e in events if e.external_id in ("1577159100026490881", "1577162244978139137")]
    assert len(events) == 99  # 98 tweets, one of them edited


def test_single_tweet_object_joined_with_real_includes() -> None:
    # X's documentation pair: the Tweet model and the includes model it expands (media key and parent match).
    body = {"data": json.loads(recorded("python-twitter/x_api_v2/tweet_object_full_fields.json")),
            "includes": json.loads(recorded("python-twitter/x_api_v2/includes_object_all_kinds.json"))}

    [event] = XAdapter().parse(body)

    assert (event.external_id, event.kind) == ("1212092628029698048", EventKind.REPLY)
    assert (event.author.handle, event.author.display_name) == ("TwitterDev", "Twitter Dev")
    assert event.reply_to_id == "1212092627178287104"
    assert event.thread_key == "1212092626247110657"  # parent found in includes.tweets, grandparent missing
    assert event.attachments == ({"media_key": "16_1211797899316740096", "type": "animated_gif"},)


def test_quote_of_ours_is_a_mention() -> None:
    body = json.loads(recorded(MENTIONS))
    body["data"] = body["data"][:1]
    body["data"][0]["referenced_tweets"] = [{"type": "quoted", "id": "1364377404156772352"}]

    [event] = XAdapter().parse(body)

    assert (event.kind, event.reply_to_id, event.thread_key) == (EventKind.MENTION, "", "1364398068313903104")
    assert event.attachments == ({"type": "quote", "tweet_id": "1364377404156772352",
                                  "url": "https://x.com/i/web/status/1364377404156772352"},)


def test_our_own_tweets_are_outbound() -> None:
    events = XAdapter(external_id="17200003").parse(recorded(REPLY_THREAD))

    assert [e.direction for e in events] == [Direction.INBOUND, Direction.OUTBOUND, Direction.INBOUND,
                                             Direction.OUTBOUND]
    top_level = XAdapter(external_id="783214").parse(
        recorded("python-twitter/x_api_v2/tweets_lookup_with_author_expansion.json"))[1]
    assert (top_level.kind, top_level.direction) == (EventKind.POST, Direction.OUTBOUND)


def test_dm_event() -> None:
    [event] = XAdapter().parse(recorded("python-twitter/x_api_v2/dm_events_by_conversation.json"))

    assert event.external_id == "1585321444547837956"
    assert event.kind == EventKind.DIRECT_MESSAGE
    assert (event.author.external_id, event.author.handle, event.author.display_name) == ("906948460078698496", "", "")
    assert event.thread_key == "dm:1585094756761149440"
    assert event.reply_to_id == ""
    assert event.occurred_at == dt.datetime(2022, 10, 26, 17, 24, 21, tzinfo=UTC)
    assert event.text == "Another photo https://t.co/J5KotyeIyd"
    assert event.direction == Direction.INBOUND
    assert event.problems() == []


def test_dm_author_enriched_from_includes_and_outbound_when_ours() -> None:
    body = json.loads(recorded("python-twitter/x_api_v2/dm_events_by_conversation.json"))
    body["includes"] = {"users": [{"id": "906948460078698496", "name": "Example Sender", "username": "example"}]}

    [event] = XAdapter(external_id="906948460078698496").parse(body)

    assert (event.author.handle, event.author.display_name) == ("example", "Example Sender")
    assert event.direction == Direction.OUTBOUND


def test_non_message_dm_events_are_skipped() -> None:
    body = json.loads(recorded("python-twitter/x_api_v2/dm_events_by_conversation.json"))
    body["data"][0]["event_type"] = "ParticipantsJoin"

    assert XAdapter().parse(body) == []


def test_dm_events_without_conversation_id_are_refused() -> None:
    body = exchange("tweepy/x_api_v2/dm_manage_and_lookup.exchanges.json", 4)

    with pytest.raises(PayloadError, match="dm_conversation_id"):
        XAdapter().parse(body)


@pytest.mark.parametrize(("path", "index"), [
    ("tweepy/x_api_v2/dm_manage_and_lookup.exchanges.json", 3),  # {"meta": {"result_count": 0}}
    ("tweepy/x_api_v2/create_and_delete_tweet.exchanges.json", 1),  # {"data": {"deleted": true}}
    ("tweepy/x_api_v2/hide_and_unhide_reply.exchanges.json", 0),  # {"data": {"hidden": true}}
])
def test_empty_pages_and_acks_of_our_writes_give_no_events(path: str, index: int) -> None:
    assert XAdapter().parse(exchange(path, index)) == []


def test_dm_send_ack_gives_no_events() -> None:
    assert XAdapter().parse(recorded("python-twitter/x_api_v2/dm_event_create_response.json")) == []


def test_reparse_is_identical() -> None:
    assert XAdapter().parse(recorded(REPLY_THREAD)) == XAdapter().parse(recorded(REPLY_THREAD))


def test_problem_document_raises_with_its_title() -> None:
    with pytest.raises(PayloadError, match="Invalid Request: One or more parameters"):
        XAdapter().parse(recorded("python-twitter/x_api_v2/error_problem_invalid_request.json"))


@pytest.mark.parametrize(("payload", "message"), [
    ({"meta": {"result_count": 5}}, "no `data`"),
    ({"data": ["1364398068313903104"]}, r"data\[0\] is not an object"),
    ({"data": "x"}, "must be a list or an object"),
    ({"data": [{"text": "no id"}]}, r"data\[0\]\.id is missing"),
    ({"data": [{"id": "1", "text": "x", "referenced_tweets": [{"id": "2"}]}]}, "malformed reference"),
    (b'"just text"', "must be a JSON object"),
    ([{"id": 1}], r"timeline\[0\] has no id_str"),  # a list is a v1.1 timeline: its tweets need id_str
    (b"{not json", "not valid JSON"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        XAdapter().parse(payload)


def test_snowflake_time_refuses_non_numeric_ids() -> None:
    with pytest.raises(PayloadError, match="not a numeric snowflake"):
        snowflake_time("abc")


def test_events_keep_the_raw_tweet() -> None:
    body = json.loads(recorded(MENTIONS))
    original = copy.deepcopy(body)

    events = XAdapter().parse(body)

    assert events[0].raw == original["data"][0]
    assert body == original
