"""The avatar proxy: pictures reach the agent through the server, guarded against SSRF and hostile files."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.template import Context, Template
from django.test import Client

from console.avatars import MAX_BYTES, _cache_key, avatar_fetch
from console.templatetags.avatars import initials
from console.views.avatars import TRANSPARENT_GIF
from socialcrm.netguard import UrlRefused, public_url_check
from tests.api.conftest import World

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Cookie", "")))
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_host() -> Iterator[str]:
    """A picture server on 127.0.0.1 (a platform's CDN); its routes are set per test."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    _Handler.routes = {
        "/a.png": (200, {"Content-Type": "image/png"}, PNG),
        "/evil.svg": (200, {"Content-Type": "image/svg+xml"}, SVG),
        "/html.png": (200, {"Content-Type": "image/png"}, b"<html><script>alert(1)</script></html>"),
        "/huge.png": (200, {"Content-Type": "image/png"}, PNG + b"\x00" * MAX_BYTES),
        "/moved": (302, {"Location": "/a.png"}, b""),
        "/gone.png": (404, {}, b""),
    }
    _Handler.seen = []
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh_cache(image_host: str) -> Iterator[None]:
    paths = ["/a.png", "/evil.svg", "/html.png", "/huge.png", "/moved", "/gone.png"]
    for path in paths:
        cache.delete(_cache_key(image_host + path))
    yield
    for path in paths:
        cache.delete(_cache_key(image_host + path))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://localhost/", "ftp://example.org/a.png",
    "javascript:alert(1)", "http://user:pw@93.184.216.34/", "http:///nohost",
])
def test_the_guard_refuses_anything_but_public_http(url: str) -> None:
    with pytest.raises(UrlRefused):
        public_url_check(url)


def test_the_guard_passes_a_public_address() -> None:
    assert public_url_check("https://93.184.216.34/pic.jpg") == ["93.184.216.34"]


def test_a_private_address_is_refused_without_the_development_setting(image_host: str, fresh_cache: None,
                                                                      settings) -> None:
    settings.CONSOLE_AVATAR_ALLOW_PRIVATE = False
    assert avatar_fetch(image_host + "/a.png") is None
    assert _Handler.seen == []  # not even one request left the server


def test_pictures_are_fetched_once_and_cached(image_host: str, fresh_cache: None, settings) -> None:
    settings.CONSOLE_AVATAR_ALLOW_PRIVATE = True
    first = avatar_fetch(image_host + "/a.png")
    assert first is not None
    assert (first.content_type, first.body) == ("image/png", PNG)
    assert avatar_fetch(image_host + "/a.png") == first
    assert [path for path, _ in _Handler.seen] == ["/a.png"]
    redirected = avatar_fetch(image_host + "/moved")
    assert redirected is not None
    assert redirected.body == PNG


@pytest.mark.parametrize("path", ["/evil.svg", "/html.png", "/huge.png", "/gone.png"])
def test_unusable_files_are_never_passed_on(image_host: str, fresh_cache: None, settings, path: str) -> None:
    settings.CONSOLE_AVATAR_ALLOW_PRIVATE = True
    assert avatar_fetch(image_host + path) is None
    assert avatar_fetch(image_host + path) is None
    assert len(_Handler.seen) == 1  # the failure is cached too


def test_the_view_serves_identities_in_view_only(world: World, image_host: str, fresh_cache: None,
                                                 console_for: Callable[[User], Client], settings) -> None:
    settings.CONSOLE_AVATAR_ALLOW_PRIVATE = True
    world.a.identity.avatar_url = image_host + "/a.png"
    world.a.identity.save()
    response = console_for(world.a.agent).get(f"/avatars/{world.a.identity.pk}/")
    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert _Handler.seen[0][1] == ""  # no cookie of the agent reaches the platform
    assert console_for(world.b.agent).get(f"/avatars/{world.a.identity.pk}/").status_code == 404
    assert console_for(world.a.agent).get("/avatars/999999/").status_code == 404
    world.a.identity.avatar_url = image_host + "/gone.png"
    world.a.identity.save()
    blank = console_for(world.a.agent).get(f"/avatars/{world.a.identity.pk}/")  # the initials stay visible
    assert (blank.status_code, blank["Content-Type"]) == (200, "image/gif")
    assert blank.content == TRANSPARENT_GIF
    assert console_for(world.a.agent).get(f"/avatars/{world.b.identity.pk}/").status_code == 404
    assert Client(HTTP_HOST="localhost").get(f"/avatars/{world.a.identity.pk}/").status_code == 302


def test_the_tag_shows_initials_and_the_proxy_never_the_platform_url(world: World) -> None:
    identity = world.a.identity
    identity.display_name = '<script>alert(1)</script> Berg'
    identity.avatar_url = "https://pbs.example/evil.png?<x>"
    html = Template("{% load avatars %}{% avatar identity %}").render(Context({"identity": identity}))
    assert f'src="/avatars/{identity.pk}/"' in html
    assert "pbs.example" not in html
    assert "<script>" not in html
    assert initials("Anna Berg") == "AB"
    assert initials("@ab_cd") == "AC"
    assert initials("") == "?"
