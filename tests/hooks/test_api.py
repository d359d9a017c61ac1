"""The webhook API: CRUD with a write-only secret, the SSRF guard as a 400 naming `url`, deliveries, replay."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from access.services import api_token_create
from hooks import services
from hooks.models import OutboundEvent, WebhookSubscription

pytestmark = pytest.mark.django_db
BASE = "/api/v1/webhook-subscriptions/"


def _client(user, scopes: list[str]) -> APIClient:
    _, token = api_token_create(user=user, name="t", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def admin(django_user_model):
    user = django_user_model.objects.create_user("ops")
    user.user_permissions.add(Permission.objects.get(codename="view_all_channels"))
    return user


@pytest.fixture
def api(admin) -> APIClient:
    return _client(admin, ["admin"])


def _create(api: APIClient, url: str, **extra: object):
    return api.post(BASE, {"name": "billing", "url": url, "event_types": ["customer.merged"],
                           "secret": "0123456789abcdef0123", **extra}, format="json")


def test_crud_never_returns_the_secret(api, receiver) -> None:
    created = _create(api, receiver.url)
    assert created.status_code == 201, created.content
    body = created.json()
    assert "secret" not in body
    assert body["active"] is True
    pk = body["id"]
    assert WebhookSubscription.objects.get(pk=pk).secret == {"key": "0123456789abcdef0123"}

    listed = api.get(BASE)
    assert [r["id"] for r in listed.json()["results"]] == [pk]
    assert "0123456789abcdef0123" not in listed.content.decode()
    changed = api.patch(f"{BASE}{pk}/", {"event_types": ["customer.erased", "interaction.created"]}, format="json")
    assert changed.json()["event_types"] == ["customer.erased", "interaction.created"]
    assert api.delete(f"{BASE}{pk}/").status_code == 204
    assert api.get(f"{BASE}{pk}/").status_code == 404


def test_a_private_address_is_refused_with_a_400_naming_url(api, settings) -> None:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = False
    for url in ["http://127.0.0.1:8000/hook", "http://169.254.169.254/", "http://[::1]/", "ftp://93.184.216.34/"]:
        response = _create(api, url)
        assert response.status_code == 400, response.content
        assert response.json()["fields"]["url"], response.json()
    assert not WebhookSubscription.objects.exists()


def test_scope_admin_and_an_unrestricted_user_are_required(admin, django_user_model, receiver) -> None:
    assert _client(admin, ["read", "write"]).get(BASE).status_code == 403
    restricted = django_user_model.objects.create_user("agent")
    response = _create(_client(restricted, ["admin"]), receiver.url)
    assert response.status_code == 403
    assert response.json()["code"] == "restricted_user"


def test_deliveries_list_and_replay(api, receiver, enqueued, django_capture_on_commit_callbacks) -> None:
    pk = _create(api, receiver.url).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        [row] = services.on_event("customer.merged", {"target_id": 1, "source_id": 2})
    services.delivery_send(delivery_id=row.pk)

    listed = api.get(f"{BASE}{pk}/deliveries/")
    assert listed.status_code == 200
    [entry] = listed.json()["results"]
    assert (entry["id"], entry["state"], entry["status_codes"]) == (row.pk, "delivered", [200])

    with django_capture_on_commit_callbacks(execute=True):
        replayed = api.post(f"{BASE}{pk}/deliveries/{row.pk}/replay/")
    assert replayed.status_code == 202, replayed.content
    assert replayed.json()["state"] == "pending"
    assert enqueued[-1] == row.pk
    services.delivery_send(delivery_id=row.pk)
    assert OutboundEvent.objects.get().status_codes == [200, 200]
    assert len(receiver.requests) == 2
    assert api.post(f"{BASE}{pk + 1}/deliveries/{row.pk}/replay/").status_code == 404
