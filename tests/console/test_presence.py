"""Collision detection: the heartbeat of an open conversation page records the agent in the cache (Redis), and the
banner names the OTHER agents viewing or typing there, never oneself; an agent who left drops out within the time
to live, or at once when the page says goodbye."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from access.models import Team
from console import presence
from console.presence import TTL, presence_leave, presence_others, presence_touch
from tests.api.conftest import World

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _no_presence_left(world: World) -> Iterator[None]:
    keys = [f"console:presence:{side.conversation.pk}" for side in (world.a, world.b)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


@pytest.fixture
def colleague(world: World) -> User:
    user = User.objects.create_user("clara", first_name="Clara", last_name="Kollegin")
    Team.objects.get(name="Team alpha").members.add(user)
    return user


def beat(client: Client, world: World, **data: str):
    return client.post(f"/conversations/{world.a.conversation.pk}/presence/", data, **HTMX)


def test_others_are_listed_typing_first_and_oneself_never(world: World) -> None:
    conversation_id = world.a.conversation.pk
    assert presence_touch(conversation_id=conversation_id, user_id=1, name="Anna", typing=False, now=NOW) == []

    seen_by_clara = presence_touch(conversation_id=conversation_id, user_id=2, name="Clara", typing=True, now=NOW + 1)
    assert [(v.name, v.typing) for v in seen_by_clara] == [("Anna", False)]
    presence_touch(conversation_id=conversation_id, user_id=3, name="Bernd", typing=False, now=NOW + 2)

    assert [(v.name, v.typing) for v in presence_others(conversation_id=conversation_id, user_id=1, now=NOW + 3)] == [
        ("Clara", True), ("Bernd", False)]
    assert [v.user_id for v in presence_others(conversation_id=conversation_id, user_id=2, now=NOW + 3)] == [1, 3]


def test_an_agent_drops_out_after_the_time_to_live_or_on_leaving(world: World) -> None:
    conversation_id = world.a.conversation.pk
    presence_touch(conversation_id=conversation_id, user_id=1, name="Anna", typing=True, now=NOW)
    presence_touch(conversation_id=conversation_id, user_id=2, name="Clara", typing=False, now=NOW + 10)

    # Anna's typing flag is stale after a few seconds, her whole entry after the time to live
    assert [v.typing for v in presence_others(conversation_id=conversation_id, user_id=2, now=NOW + 9)] == [False]
    assert presence_others(conversation_id=conversation_id, user_id=2, now=NOW + TTL + 1) == []
    # Clara's heartbeat leaves Anna's expired entry behind
    presence_touch(conversation_id=conversation_id, user_id=2, name="Clara", typing=False, now=NOW + TTL + 2)
    assert set(cache.get(f"console:presence:{conversation_id}")) == {"2"}

    presence_leave(conversation_id=conversation_id, user_id=2, now=NOW + TTL + 3)
    assert cache.get(f"console:presence:{conversation_id}") is None


def test_the_key_itself_expires_in_redis(world: World) -> None:
    presence_touch(conversation_id=world.a.conversation.pk, user_id=1, name="Anna", typing=False)
    ttl = cache._cache.get_client().ttl(cache.make_and_validate_key(f"console:presence:{world.a.conversation.pk}"))
    assert 0 < ttl <= TTL


def test_the_banner_shows_other_agents_viewing_and_typing(
    world: World, colleague: User, console_for: Callable[[User], Client],
) -> None:
    agent, clara = console_for(world.a.agent), console_for(colleague)

    alone = beat(agent, world)
    assert alone.status_code == 200
    assert b"is viewing" not in alone.content  # never oneself

    with_agent = beat(clara, world, typing="0")
    assert b"agent-alpha is viewing" in with_agent.content

    typing = beat(clara, world, typing="1")
    assert typing.status_code == 200
    seen_by_agent = beat(agent, world)
    assert "Clara Kollegin is typing…" in seen_by_agent.content.decode()
    assert b"agent-alpha" not in seen_by_agent.content
    assert b'data-testid="presence-typing"' in seen_by_agent.content

    # the page's banner region is a polite live region fed by a 5-second heartbeat
    page = agent.get(f"/conversations/{world.a.conversation.pk}/").content.decode()
    assert re.search(r'id="presence" class="presence" data-testid="presence" aria-live="polite"', page)
    assert "Clara Kollegin is typing…" in page


def test_an_unchanged_banner_answers_204(world: World, colleague: User, console_for: Callable[[User], Client]) -> None:
    agent, clara = console_for(world.a.agent), console_for(colleague)
    beat(clara, world)
    first = beat(agent, world).content.decode()
    version = re.search(r'id="presence-p" name="p" value="([0-9a-f]+)"', first).group(1)

    assert beat(agent, world, p=version).status_code == 204
    beat(clara, world, typing="1")
    assert beat(agent, world, p=version).status_code == 200


def test_an_agent_who_left_is_gone_from_the_banner(
    world: World, colleague: User, console_for: Callable[[User], Client], monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, clara = console_for(world.a.agent), console_for(colleague)
    beat(clara, world)
    assert b"Clara Kollegin is viewing" in beat(agent, world).content

    assert beat(clara, world, leave="1").status_code == 204
    assert b"Clara" not in beat(agent, world).content

    # a browser that died sends no goodbye: the entry ages out
    beat(clara, world)

    class Later:
        @staticmethod
        def time() -> float:
            import time

            return time.time() + TTL + 1

    monkeypatch.setattr(presence, "time", Later)
    assert b"Clara" not in beat(agent, world).content


def test_presence_is_scoped_to_the_agents_teams(world: World, console_for: Callable[[User], Client]) -> None:
    response = console_for(world.b.agent).post(f"/conversations/{world.a.conversation.pk}/presence/", {"typing": "1"})
    assert response.status_code == 404
    assert cache.get(f"console:presence:{world.a.conversation.pk}") is None


def test_hostile_agent_names_are_escaped(world: World, colleague: User, console_for: Callable[[User], Client]) -> None:
    colleague.first_name, colleague.last_name = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"
    colleague.save()
    beat(console_for(colleague), world)
    content = beat(console_for(world.a.agent), world).content
    assert b"<script>" not in content
    assert b"<img" not in content
    assert b"&lt;script&gt;" in content


def test_a_cache_outage_hides_the_banner_but_not_the_page(
    world: World, console_for: Callable[[User], Client], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(presence.cache, "get", down)
    monkeypatch.setattr(presence.cache, "set", down)
    client = console_for(world.a.agent)
    assert client.get(f"/conversations/{world.a.conversation.pk}/").status_code == 200
    assert beat(client, world, typing="1").status_code == 200
