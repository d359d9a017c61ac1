"""The demo channel replays every recorded page through the real parsers, without collisions."""

import collections

import pytest

from channels.adapters import adapter_class
from channels.adapters.base import CREATE_KINDS, EventKind, InboundEvent, PayloadError
from channels.adapters.demo import PAGES, RECORDED_DIR, DemoAdapter


def replay() -> tuple[list[InboundEvent], list[dict]]:
    adapter, cursor, events, cursors = DemoAdapter(), {"position": 0}, [], []
    while True:
        result = adapter.fetch(cursor)
        events.extend(result.events)
        cursors.append(result.cursor)
        cursor = result.cursor
        if not result.has_more:
            return events, cursors


def test_replay_walks_every_page_once() -> None:
    _, cursors = replay()

    assert cursors == [{"position": n} for n in range(1, len(PAGES) + 1)]
    assert DemoAdapter.pollable is True
    assert adapter_class("demo") is DemoAdapter


def test_every_replayed_event_is_valid_and_namespaced() -> None:
    events, _ = replay()

    assert events
    for event in events:
        assert event.problems() == [], event
        assert event.external_id.startswith(f"{event.platform}:")
        if event.thread_key:
            assert event.thread_key.startswith(f"{event.platform}:")
        if event.reply_to_id:
            assert event.reply_to_id.startswith(f"{event.platform}:")
        if event.author is not None:
            assert event.author.platform == event.platform  # real identities, not "demo" ones


def test_no_duplicate_ids_except_deliberate_edits_and_deletes() -> None:
    events, _ = replay()

    creates = collections.Counter(e.external_id for e in events if e.kind in CREATE_KINDS)
    assert [external_id for external_id, n in creates.items() if n > 1] == []
    changes = collections.Counter((e.external_id, e.kind) for e in events if e.kind not in CREATE_KINDS)
    assert [key for key, n in changes.items() if n > 1] == []


def test_replay_covers_every_platform_and_kind() -> None:
    events, _ = replay()

    assert {e.platform for e in events} == {"x", "facebook", "telegram", "mastodon"}
    assert {e.kind for e in events} == set(EventKind) - {EventKind.STATUS}
    # The Mastodon mention is created, then deleted, on the same (namespaced) id.
    assert [e.kind for e in events if e.external_id == "mastodon:117020577157693549"] == [
        EventKind.MENTION, EventKind.DELETE]


def test_fetch_past_the_end_returns_nothing() -> None:
    result = DemoAdapter().fetch({"position": len(PAGES)})

    assert (result.events, result.cursor, result.has_more) == ([], {"position": len(PAGES)}, False)
    assert DemoAdapter().fetch({}).cursor == {"position": 1}


@pytest.mark.parametrize("position", [-1, "1", 1.0, True, None])
def test_bad_cursor_is_refused(position: object) -> None:
    with pytest.raises(PayloadError, match="position"):
        DemoAdapter().fetch({"position": position})


def test_recorded_pages_exist_with_attribution() -> None:
    for page in PAGES:
        assert (RECORDED_DIR / page.path).is_file()
        source = RECORDED_DIR / page.path.split("/")[0]
        assert (source / "README.md").is_file()
        assert (source / "LICENSE.upstream.txt").is_file()
    assert (RECORDED_DIR / "README.md").is_file()


def test_parse_re_reads_a_stored_page_with_the_same_namespacing() -> None:
    page = PAGES[1]
    expected = DemoAdapter().fetch({"position": 1}).events

    assert DemoAdapter().parse({"platform": page.platform, "body": page.body()}) == expected
    with pytest.raises(PayloadError, match="demo payload"):
        DemoAdapter().parse({"platform": "demo", "body": {}})
