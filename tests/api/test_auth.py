"""API tokens: stored hashed, shown once, scoped, refused when expired, revoked or their user is inactive."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate

from access.models import ApiToken
from access.services import api_token_create, api_token_revoke
from contacts.api import selectors
from socialcrm.api.views import ApiGenericViewSet
from tests.api.conftest import assert_error, ids

pytestmark = pytest.mark.django_db


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_the_database_holds_only_a_hash_and_a_public_prefix_of_a_token(world):
    stored, token = api_token_create(user=world.a.agent, name="billing", scopes=["read"])

    row = ApiToken.objects.filter(pk=stored.pk).values().get()
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    secret = token.split("_", 2)[2]
    assert not any(secret in str(value) for value in row.values())
    assert token.startswith(f"scrm_{row['prefix']}_")
    assert len(secret) >= 40  # 32 random bytes


def test_a_stored_hash_does_not_authenticate(world):
    stored, _ = api_token_create(user=world.a.agent, name="billing", scopes=["read"])

    response = bearer(f"scrm_{stored.prefix}_{stored.token_hash}").get("/api/v1/customers/")

    assert_error(response, 401, "token_invalid")


def test_create_api_token_command_prints_the_token_once_and_it_works(world):
    out, err = io.StringIO(), io.StringIO()

    call_command("create_api_token", "agent-alpha", "--scopes", "read,write", "--expires-in-days", "30",
                 "--name", "ticketing", stdout=out, stderr=err)

    token = out.getvalue().strip()
    stored = ApiToken.objects.get(name="ticketing")
    assert stored.scopes == ["read", "write"]
    assert stored.user == world.a.agent
    assert dt.timedelta(days=29) < stored.expires_at - timezone.now() <= dt.timedelta(days=30)
    assert token not in err.getvalue()
    assert ids(bearer(token).get("/api/v1/customers/")) == [world.a.customer.pk]


@pytest.mark.parametrize(("args", "message"), [
    (["nobody", "--scopes", "read"], "No user"),
    (["agent-alpha", "--scopes", "read,root"], "Unknown scope"),
    (["agent-alpha", "--scopes", ","], "at least one scope"),
    (["agent-alpha", "--scopes", "read", "--expires-in-days", "0"], "positive"),
])
def test_create_api_token_command_refuses_bad_arguments(world, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiToken.objects.exists()


def test_no_credentials_is_a_401_with_a_bearer_challenge(world, anonymous):
    response = anonymous.get("/api/v1/customers/")

    assert_error(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer a b", "Bearer scrm_nope", "Bearer scrm_000000000000_wrong", "Bearer ümlaut",
    "Bearer " + "x" * 500,
])
def test_a_malformed_or_unknown_token_is_a_401(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/v1/customers/")

    assert response.status_code == 401
    assert_error(response, 401)


def test_an_expired_token_is_refused(world, token_for):
    token = token_for(world.a.agent, ["read"], expires_at=timezone.now() + dt.timedelta(seconds=1))
    ApiToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert_error(bearer(token).get("/api/v1/customers/"), 401, "token_expired")


def test_a_revoked_token_is_refused(world):
    stored, token = api_token_create(user=world.a.agent, name="t", scopes=["read"])
    assert bearer(token).get("/api/v1/customers/").status_code == 200

    api_token_revoke(token=stored)

    assert_error(bearer(token).get("/api/v1/customers/"), 401, "token_revoked")


def test_the_token_of_an_inactive_user_is_refused(world, token_for):
    token = token_for(world.a.agent, ["read"])
    User.objects.filter(pk=world.a.agent.pk).update(is_active=False)

    assert_error(bearer(token).get("/api/v1/customers/"), 401, "user_inactive")


def test_using_a_token_records_when_it_was_last_used(world):
    stored, token = api_token_create(user=world.a.agent, name="t", scopes=["read"])
    assert stored.last_used_at is None

    bearer(token).get("/api/v1/customers/")

    stored.refresh_from_db()
    assert stored.last_used_at is not None


@pytest.mark.parametrize(("scopes", "method", "url", "needed"), [
    (["write"], "get", "/api/v1/customers/", "read"),
    (["read"], "patch", "/api/v1/customers/{customer}/", "write"),
    (["read", "write"], "patch", "/api/v1/channel-accounts/{account}/", "admin"),
    (["read", "write"], "post", "/api/v1/webhook-deliveries/{delivery}/replay/", "admin"),
    (["admin"], "post", "/api/v1/conversations/{conversation}/notes/", "write"),
])
def test_a_token_without_the_needed_scope_is_a_403_naming_it(world, client_for, scopes, method, url, needed):
    url = url.format(customer=world.a.customer.pk, account=world.a.account.pk, delivery=world.a.delivery.pk,
                     conversation=world.a.conversation.pk)

    response = getattr(client_for(world.a.agent, scopes), method)(url, {"name": "x", "text": "x"})

    body = assert_error(response, 403, "scope_missing")
    assert needed in body["detail"]


def test_a_console_session_reads_and_writes_but_does_not_administer(world):
    client = APIClient()
    client.force_login(world.a.agent)

    assert ids(client.get("/api/v1/conversations/")) == [world.a.conversation.pk]
    response = client.post(f"/api/v1/conversations/{world.a.conversation.pk}/notes/", {"text": "Rückruf"})
    assert response.status_code == 201
    assert_error(client.patch(f"/api/v1/channel-accounts/{world.a.account.pk}/", {"name": "x"}), 403,
                 "scope_missing")


def test_the_admin_shows_a_new_token_once_and_never_its_hash(world):
    admin = User.objects.create_superuser("root", email="", password=None)
    client = APIClient()
    client.force_login(admin)

    response = client.post("/admin/access/apitoken/add/", {
        "name": "bi-export", "user": world.a.agent.pk, "scopes": ["read"], "expires_at_0": "", "expires_at_1": "",
    }, format="multipart")

    assert response.status_code == 200, response.content
    stored = ApiToken.objects.get(name="bi-export")
    page = response.content.decode()
    token = next(word for word in page.replace('"', " ").split() if word.startswith(f"scrm_{stored.prefix}_"))
    assert hashlib.sha256(token.encode()).hexdigest() == stored.token_hash
    assert "no-store" in response.headers["Cache-Control"]
    change = client.get(f"/admin/access/apitoken/{stored.pk}/change/").content.decode()
    assert token not in change
    assert stored.token_hash not in change
    assert ids(bearer(token).get("/api/v1/customers/")) == [world.a.customer.pk]


def test_the_admin_revokes_tokens(world):
    admin = User.objects.create_superuser("root", email="", password=None)
    stored, token = api_token_create(user=world.a.agent, name="t", scopes=["read"])
    client = APIClient()
    client.force_login(admin)

    client.post("/admin/access/apitoken/", {"action": "revoke", "_selected_action": [stored.pk]}, format="multipart")

    assert_error(bearer(token).get("/api/v1/customers/"), 401, "token_revoked")


def test_an_action_can_require_its_own_scope(world, token_for):
    """How merge and GDPR actions will ask for their scopes: `@action(required_scope="merge")`."""

    class Probe(ApiGenericViewSet):
        @action(detail=False, methods=["post"], required_scope="merge")
        def merge(self, request: Request) -> Response:
            return Response({"merged": True})

    view = Probe.as_view({"post": "merge"}, required_scope="merge")
    _, write_only = api_token_create(user=world.admin, name="w", scopes=["read", "write"])
    _, merger = api_token_create(user=world.admin, name="m", scopes=["merge"])
    answers = []
    for token in (write_only, merger):
        request = APIRequestFactory().post("/probe/", {}, format="json")
        force_authenticate(request, user=world.admin, token=ApiToken.objects.get(prefix=token.split("_")[1]))
        answers.append(view(request).status_code)

    assert answers == [403, 200]


def test_with_no_identity_scope_registered_a_restricted_user_sees_no_customer(world, client_for, monkeypatch):
    client = client_for(world.a.agent)
    client.get("/api/v1/customers/")  # the API's URLconf (and with it the registration) is loaded
    monkeypatch.setattr(selectors, "_identity_scopes", [])

    assert ids(client.get("/api/v1/customers/")) == []
    assert ids(client_for(world.admin).get("/api/v1/customers/")) != []
