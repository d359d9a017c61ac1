"""Fixtures of the console tests: the API tests' two teams (each an agent seeing one channel account), a CRM staff
member who sees everything, and Django test clients logged in as them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.api.conftest import World, world  # noqa: F401 (re-exported fixture)


@pytest.fixture
def staff(db) -> User:
    """A member of the "CRM staff" group: sees every channel account; may merge and answer GDPR requests."""
    user = User.objects.create_user("crm-staff", first_name="Clara", last_name="Staff")
    user.groups.add(Group.objects.get(name="CRM staff"))
    return user


@pytest.fixture
def console_for(db) -> Callable[[User], Client]:
    """console_for(user) -> a test client logged in as `user` (by session, as in the browser)."""

    def make(user: User) -> Client:
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        return client

    return make
