"""Logging in through the console's login form, in the browser: a wrong password is refused with a message and
no session; the right one opens a session and lands in the inbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from playwright.sync_api import expect

from .conftest import PASSWORD

if TYPE_CHECKING:
    from access.models import Team

    from .conftest import Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def sessions_of(user: User) -> int:
    return sum(1 for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(user.pk))


@pytest.mark.usefixtures("fast_passwords")
def test_an_agent_logs_in_with_the_form_and_lands_in_the_inbox(console: Console, team: Team) -> None:
    user = User.objects.create_user("anna", first_name="Anna", last_name="Becker", password=PASSWORD)
    user.groups.add(Group.objects.get(name="Agents"))
    team.members.add(user)
    page = console.page

    console.log_in_with_form("anna", "not her password", next_path="/inbox/")

    expect(page.get_by_role("alert")).to_be_visible()
    expect(page).to_have_url(console.url("/login/"))
    assert sessions_of(user) == 0

    console.log_in_with_form("anna", PASSWORD)

    expect(page).to_have_url(console.url("/inbox/"))
    expect(page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Channel health")
    expect(page.locator(".account .user")).to_have_text("Anna Becker")
    assert sessions_of(user) == 1
    assert User.objects.get(pk=user.pk).last_login is not None
