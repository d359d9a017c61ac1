"""The console's frame: login and logout, the Content-Security-Policy, the agent's time zone, the groups and the
API scopes their permissions grant to a session."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from access.permissions import scopes_of
from access.services import GROUP_PERMISSIONS, groups_ensure
from console.middleware import POLICY, AgentTimeZoneMiddleware

pytestmark = pytest.mark.django_db


def test_login_form_logs_in_and_redirects_to_the_inbox() -> None:
    User.objects.create_user("agent-k", password="a long passphrase 7")
    client = Client(HTTP_HOST="localhost")
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="username"' in page.content
    assert b'name="password"' in page.content
    response = client.post("/login/", {"username": "agent-k", "password": "a long passphrase 7"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/inbox/"
    assert client.session.get("_auth_user_id")


def test_a_wrong_password_is_refused_with_a_message() -> None:
    User.objects.create_user("agent-k", password="a long passphrase 7")
    client = Client(HTTP_HOST="localhost")
    response = client.post("/login/", {"username": "agent-k", "password": "wrong"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert "_auth_user_id" not in client.session


def test_pages_need_a_login_and_logout_needs_a_post(console_for: Callable[[User], Client]) -> None:
    anonymous = Client(HTTP_HOST="localhost")
    assert anonymous.get("/").headers["Location"] == "/inbox/"
    assert anonymous.get("/inbox/").headers["Location"] == "/login/?next=/inbox/"
    client = console_for(User.objects.create_user("agent-l"))
    assert client.get("/logout/").status_code == 405  # a link or an image cannot log an agent out
    assert client.post("/logout/").headers["Location"] == "/login/"
    assert "_auth_user_id" not in client.session


def test_console_pages_carry_a_strict_content_security_policy() -> None:
    response = Client(HTTP_HOST="localhost").get("/login/")
    policy = response.headers["Content-Security-Policy"]
    assert policy == POLICY
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert "object-src 'none'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert b"<script>" not in response.content  # no inline script anywhere in the frame
    assert b" style=" not in response.content


def test_the_api_and_the_admin_keep_their_own_headers() -> None:
    assert "Content-Security-Policy" not in Client(HTTP_HOST="localhost").get("/api/v1/schema/").headers


def test_static_files_are_served_by_the_app() -> None:
    client = Client(HTTP_HOST="localhost")
    for path in ("/static/console/console.css", "/static/console/console.js", "/static/django_htmx/htmx-2.min.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        b"".join(response.streaming_content if response.streaming else [response.content])


@pytest.mark.parametrize(("cookie", "expected"), [
    ("America/New_York", "America/New_York"),
    ("America%2FNew_York", "America/New_York"),  # as console.js writes it
    ("Not/AZone", None),
    ("../../etc/passwd", None),
    ("x" * 500, None),
])
def test_the_agent_time_zone_comes_from_the_browser(rf, cookie: str, expected: str | None) -> None:
    seen: list[str] = []

    def view(request):
        seen.append(timezone.get_current_timezone_name())
        return

    request = rf.get("/inbox/")
    request.COOKIES["console_tz"] = cookie
    AgentTimeZoneMiddleware(view)(request)
    assert seen == [expected or timezone.get_default_timezone_name()]
    assert timezone.get_current_timezone_name() == timezone.get_default_timezone_name()  # deactivated after


def test_times_render_in_the_agent_zone() -> None:
    moment = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    with timezone.override("Asia/Tokyo"):
        assert timezone.localtime(moment).hour == 21


def test_groups_exist_with_their_permissions_and_are_restored() -> None:
    staff = Group.objects.get(name="CRM staff")
    assert set(staff.permissions.values_list("codename", flat=True)) == {
        "view_all_channels", "merge_customers", "handle_gdpr_requests"}
    admins = Group.objects.get(name="Admins")
    assert {f"{p.content_type.app_label}.{p.codename}" for p in admins.permissions.all()} == set(
        GROUP_PERMISSIONS["Admins"])
    staff.permissions.clear()
    groups_ensure()  # as after the next migrate
    assert staff.permissions.count() == 3


def test_a_migrate_that_left_auth_uncreated_skips_the_groups() -> None:
    # `migrate channels 0002` on an empty database: post_migrate runs with a state holding no auth models.
    from django.apps import apps
    from django.db.migrations.state import ProjectState

    last_app = [config for config in apps.get_app_configs() if config.models_module][-1]
    Group.objects.filter(name="Agents").delete()

    groups_ensure(sender=last_app, apps=ProjectState().apps)
    assert not Group.objects.filter(name="Agents").exists()
    groups_ensure(sender=last_app, apps=apps)
    assert Group.objects.filter(name="Agents").exists()


def test_session_scopes_follow_the_group() -> None:
    agent = User.objects.create_user("agent-m")

    class _Request:
        auth = None

        def __init__(self, user: User) -> None:
            self.user = user

    assert scopes_of(_Request(agent)) == {"read", "write"}
    clerk = User.objects.create_user("clerk")
    clerk.groups.add(Group.objects.get(name="CRM staff"))
    clerk = User.objects.get(pk=clerk.pk)  # a fresh permission cache
    assert scopes_of(_Request(clerk)) == {"read", "write", "merge", "gdpr"}
    root = User.objects.create_superuser("root")
    assert scopes_of(_Request(root)) == {"read", "write", "merge", "gdpr", "admin"}


def test_the_console_speaks_german_when_the_agent_does(world, console_for: Callable[[User], Client]) -> None:
    client = console_for(world.a.agent)
    german = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()
    assert '<html lang="de">' in german
    assert "Posteingang" in german
    english = client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Posteingang" not in english
    assert "Inbox" in english
    client.post("/i18n/setlang/", {"language": "de", "next": "/inbox/"})  # the switcher in the top bar
    assert "Posteingang" in client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
