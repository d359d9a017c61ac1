"""Facebook Graph API bodies (polled pages, objects, `?ids=` maps) on real recorded responses (python-facebook/)."""

import datetime as dt
import json
import pathlib

import pytest

from channels.adapters.base import Direction, EventKind, PayloadError
from channels.adapters.facebook import FacebookAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
GRAPH = "python-facebook/facebook_graph"
UTC = dt.UTC
MYLIFE = "2121008874780932"  # the test page of the conversation and message captures


def recorded(path: str) -> bytes:
    return (RECORDED / path).read_bytes()


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


def test_page_feed_posts() -> None:
    events = FacebookAdapter(external_id="4").parse(recorded(f"{GRAPH}/page_feed_fields_page1.json"))

    assert len(events) == 5
    assert all(e.problems() == [] for e in events)
    first = events[0]
    assert (first.external_id, first.kind, first.thread_key, first.reply_to_id) == (
        "4_10113477241177441", EventKind.POST, "4_10113477241177441", "")
    assert first.author is None  # `from` was not requested
    assert first.text == "Happy July 4th! 🇺🇸"
    assert first.occurred_at == dt.datetime(2021, 7, 4, 19, 50, 58, tzinfo=UTC)
    assert first.direction == Direction.INBOUND
    assert [e.external_id for e in events[1:]] == [
        "4_10113449068715281", "4_10113400535556121", "4_10113332572050531", "4_10113319652002411"]


def test_feed_post_with_its_comments_edge() -> None:
    comment = json.loads(recorded(f"{GRAPH}/comment_full_fields.json"))
    # The feed poll asks for `comments{...}` inside each post; its shape is a recorded comment under a post.
    post = {"id": f"{MYLIFE}_2954961744718970", "message": "Our new car", "created_time": "2021-07-23T08:00:00+0000",
            "from": {"id": MYLIFE, "name": "MyLife"}, "comments": {"data": [comment]}}

    events = FacebookAdapter(external_id=MYLIFE).parse({"data": [post]})

    assert [(e.external_id, e.kind, e.direction) for e in events] == [
        (f"{MYLIFE}_2954961744718970", EventKind.POST, Direction.OUTBOUND),
        ("2954961744718970_2966313500250461", EventKind.COMMENT, Direction.INBOUND)]
    post_event, comment_event = events
    assert post_event.author.external_id == MYLIFE
    assert "comments" not in post_event.raw
    assert comment_event.thread_key == comment_event.reply_to_id == f"{MYLIFE}_2954961744718970"
    assert (comment_event.author.external_id, comment_event.author.display_name) == ("2711636948859886", "Kun Liu")


def test_messenger_message_from_the_graph_inbox() -> None:
    [event] = FacebookAdapter(external_id=MYLIFE).parse(recorded(f"{GRAPH}/message_with_image_attachment.json"))

    assert event.problems() == []
    assert event.external_id.startswith("m_ToF35NI1OImBjyUIgplSaBMylUFmkYY4bHogy9C1otLISU6SGhccB5NK")
    assert event.kind == EventKind.DIRECT_MESSAGE
    author = event.author
    assert (author.platform, author.external_id, author.scope, author.display_name) == (
        "facebook", "2711636948859886", MYLIFE, "Kun Liu")
    assert author.raw == {"name": "Kun Liu", "id": "2711636948859886"}  # the pseudo e-mail is dropped
    assert (event.thread_key, event.reply_to_id, event.text) == ("psid:2711636948859886", "", "")
    assert event.occurred_at == dt.datetime(2021, 7, 23, 9, 50, 48, tzinfo=UTC)
    assert event.direction == Direction.INBOUND
    [attachment] = event.attachments
    assert (attachment["type"], attachment["mime_type"], attachment["name"]) == (
        "image", "image/jpeg", "image-651143212510248")
    assert attachment["url"].startswith("https://scontent-gmp1-1.xx.fbcdn.net/v/t1.15752-9/216389199_")


def test_page_message_in_the_graph_inbox_is_outbound() -> None:
    message = json.loads(recorded(f"{GRAPH}/message_with_image_attachment.json"))
    message["from"], message["to"]["data"] = message["to"]["data"][0], [message["from"]]  # derived: the page answers

    [event] = FacebookAdapter(external_id=MYLIFE).parse(message)

    assert (event.direction, event.author, event.thread_key) == (Direction.OUTBOUND, None, "psid:2711636948859886")


def test_conversation_with_messages_edge() -> None:
    conversation = json.loads(recorded(f"{GRAPH}/conversation_full_fields.json"))
    # The conversations poll asks for `messages{...}` inside each thread: a recorded message under a recorded thread.
    conversation["messages"] = {"data": [json.loads(recorded(f"{GRAPH}/message_with_image_attachment.json"))]}

    [event] = FacebookAdapter(external_id=MYLIFE).parse({"data": [conversation]})

    assert (event.kind, event.thread_key, event.author.external_id) == (
        EventKind.DIRECT_MESSAGE, "psid:2711636948859886", "2711636948859886")


@pytest.mark.parametrize(("name", "skipped"), [
    ("conversation_full_fields.json", [("object", "t_587956915396498")]),
    ("page_conversations.json", [("['t_587956915396498']", "t_587956915396498"),
                                 ("['t_233782918546745']", "t_233782918546745")]),
])
def test_conversation_summaries_without_messages_are_skipped(name: str, skipped: list[tuple[str, str]]) -> None:
    adapter = FacebookAdapter(external_id=MYLIFE)

    assert adapter.parse(recorded(f"{GRAPH}/{name}")) == []
    assert adapter.skipped == [(where, f"conversation {thread} summary carries no messages")
                               for where, thread in skipped]


@pytest.mark.parametrize(("payload", "message"), [
    ({"data": {"id": "1"}}, "`data` must be a list"),
    ({"data": ["x"]}, r"data\[0\] is not an object"),
    ({"id": "m_1", "created_time": "2021-07-23T09:50:48+0000", "from": {"id": "1"}, "to": {"data": [{"id": "1"}]}},
     "names no customer"),
    ({"id": "m_1", "from": {"id": "5"}}, "has no created_time"),
    ({"id": "1_2", "created_time": "2021-07-23T09:50:48+0000", "comments": {"data": "x"}},
     r"comments\.data must be a list"),
    ({"id": "9_2", "message": 5, "created_time": "2021-07-23T09:50:48+0000"}, r"message is not a string"),
])
def test_malformed_graph_bodies_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        FacebookAdapter(external_id="1").parse(payload)
