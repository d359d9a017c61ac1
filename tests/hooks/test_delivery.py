"""Outbound webhooks end to end against a receiver on 127.0.0.1: fan-out after commit, signature, retries,
replay, auto-disable and the SSRF guard."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import pytest
from django.db import transaction
from django.utils import timezone

from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.merge import customer_merge
from contacts.models import Customer
from hooks import services
from hooks.models import OutboundEvent, WebhookSubscription
from socialcrm import netguard
from socialcrm.errors import ServiceError
from socialcrm.events import emit
from tests.channels.factories import post

SECRET = "s3cret-s3cret-s3cret"
pytestmark = pytest.mark.django_db


def _subscribe(url: str, *types: str) -> WebhookSubscription:
    return services.subscription_create(name="billing", url=url, event_types=types or ["customer.merged"],
                                        secret=SECRET)


def _emit(capture, event_type: str = "customer.merged", payload: dict | None = None) -> list[OutboundEvent]:
    with capture(execute=True):
        emit(event_type, payload or {"target_id": 1, "source_id": 2})
    return list(OutboundEvent.objects.order_by("pk"))


def _later() -> dt.datetime:
    return timezone.now() + dt.timedelta(days=1)


def test_signature_verifies_and_body_has_the_event(receiver, enqueued, django_capture_on_commit_callbacks) -> None:
    sub = _subscribe(receiver.url)
    [row] = _emit(django_capture_on_commit_callbacks)
    assert enqueued == [row.pk]

    outcome = services.delivery_send(delivery_id=row.pk)

    assert outcome.state == "delivered"
    [req] = receiver.requests
    ts = req.headers["x-socialcrm-timestamp"]
    expected = hmac.new(SECRET.encode(), f"{ts}.".encode() + req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-socialcrm-signature"] == f"t={ts},v1={expected}"
    assert req.headers["x-socialcrm-event"] == "customer.merged"
    assert req.headers["x-socialcrm-delivery"] == str(row.pk)
    body = json.loads(req.body)
    assert body["id"] == str(row.event_id)
    assert body["type"] == "customer.merged"
    assert body["data"] == {"target_id": 1, "source_id": 2}
    row.refresh_from_db()
    assert (row.state, row.attempts, row.status_codes, row.delivered_at is not None) == ("delivered", 1, [200], True)
    assert sub.pk == row.subscription_id


def test_only_matching_active_subscriptions_get_the_event(receiver, enqueued,
                                                          django_capture_on_commit_callbacks) -> None:
    wanted = _subscribe(receiver.url, "customer.merged", "customer.erased")
    _subscribe(receiver.url, "customer.erased")
    off = _subscribe(receiver.url, "customer.merged")
    services.subscription_update(subscription_id=off.pk, changes={"active": False})

    rows = _emit(django_capture_on_commit_callbacks)

    assert [r.subscription_id for r in rows] == [wanted.pk]


def test_a_500_is_retried_with_backoff_and_then_delivered(receiver, enqueued,
                                                          django_capture_on_commit_callbacks) -> None:
    receiver.statuses = [500]
    _subscribe(receiver.url)
    [row] = _emit(django_capture_on_commit_callbacks)

    first = services.delivery_send(delivery_id=row.pk)
    assert (first.state, first.status_code) == ("pending", 500)
    assert first.retry_in is not None
    assert first.retry_in >= services.BACKOFF_BASE * 0.75
    row.refresh_from_db()
    assert row.next_attempt_at > timezone.now()
    assert services.delivery_send(delivery_id=row.pk).skipped == "not due"  # a duplicate task waits its turn
    assert services.deliveries_due() == []

    now = row.next_attempt_at + dt.timedelta(seconds=1)
    assert services.deliveries_due(now=now) == [row.pk]
    second = services.delivery_send(delivery_id=row.pk, now=now)

    assert (second.state, second.status_code) == ("delivered", 200)
    row.refresh_from_db()
    assert (row.attempts, row.status_codes, row.last_status_code) == (2, [500, 200], 200)
    assert [json.loads(r.body)["id"] for r in receiver.requests] == [str(row.event_id)] * 2
    assert WebhookSubscription.objects.get().failure_count == 0


def test_a_timeout_is_retried(receiver, enqueued, django_capture_on_commit_callbacks, monkeypatch) -> None:
    import httpx

    monkeypatch.setattr(services, "TIMEOUT", httpx.Timeout(0.2))
    _subscribe("http://127.0.0.1:9/closed")  # discard port: nothing listens
    [row] = _emit(django_capture_on_commit_callbacks)

    outcome = services.delivery_send(delivery_id=row.pk)

    assert (outcome.state, outcome.status_code) == ("pending", None)
    assert outcome.error
    row.refresh_from_db()
    assert row.status_codes == [0]


def test_replay_resends_a_delivered_event(receiver, enqueued, django_capture_on_commit_callbacks) -> None:
    _subscribe(receiver.url)
    [row] = _emit(django_capture_on_commit_callbacks)
    services.delivery_send(delivery_id=row.pk)

    with django_capture_on_commit_callbacks(execute=True):
        replayed = services.delivery_replay(delivery_id=row.pk)
    assert replayed.state == "pending"
    assert enqueued == [row.pk, row.pk]
    assert services.delivery_send(delivery_id=row.pk).state == "delivered"

    assert len(receiver.requests) == 2
    assert json.loads(receiver.requests[0].body) == json.loads(receiver.requests[1].body)
    row.refresh_from_db()
    assert row.status_codes == [200, 200]


def test_repeated_failures_disable_the_subscription(receiver, enqueued, django_capture_on_commit_callbacks,
                                                    monkeypatch) -> None:
    monkeypatch.setattr(services, "MAX_CONSECUTIVE_FAILURES", 3)
    receiver.statuses = [503] * 10
    sub = _subscribe(receiver.url)
    _emit(django_capture_on_commit_callbacks)
    first, second = _emit(django_capture_on_commit_callbacks)

    services.delivery_send(delivery_id=first.pk)
    services.delivery_send(delivery_id=second.pk)
    later = _later()
    outcome = services.delivery_send(delivery_id=first.pk, now=later)

    assert outcome.state == "failed"
    sub.refresh_from_db()
    assert not sub.active
    assert "3 failed attempts" in sub.disabled_reason
    assert "503" in sub.disabled_reason
    assert services.delivery_send(delivery_id=second.pk, now=later).skipped == "subscription disabled"
    assert _emit(django_capture_on_commit_callbacks)[2:] == []  # no new rows for a disabled subscription
    with pytest.raises(ServiceError) as exc:
        services.delivery_replay(delivery_id=first.pk)
    assert exc.value.code == "subscription_disabled"

    services.subscription_update(subscription_id=sub.pk, changes={"active": True})
    sub.refresh_from_db()
    assert (sub.active, sub.failure_count, sub.disabled_reason) == (True, 0, "")


def test_send_time_check_refuses_a_host_that_now_resolves_to_a_private_address(
    enqueued, django_capture_on_commit_callbacks, monkeypatch, settings
) -> None:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = False
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["93.184.216.34"])
    _subscribe("https://hooks.example.com/in")
    [row] = _emit(django_capture_on_commit_callbacks)
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["10.0.0.5"])
    sent = []
    monkeypatch.setattr(services.httpx.Client, "post", lambda *a, **k: sent.append(a))

    outcome = services.delivery_send(delivery_id=row.pk)

    assert (outcome.state, outcome.status_code) == ("pending", None)
    assert "target refused" in outcome.error
    assert sent == []


def test_a_host_that_rebinds_to_a_private_address_between_check_and_connect_gets_no_connection(
    receiver, enqueued, django_capture_on_commit_callbacks, monkeypatch, settings
) -> None:
    # DNS rebinding: the first lookup (the send-time check) answers a public address, the next one (the
    # connection's) the receiver's loopback address. The connection checks what it connects to: nothing arrives.
    port = receiver.url.split(":")[2].split("/")[0]
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = False
    # Lookups: the subscription's check, the send-time check, then the connection's.
    answers = iter([["93.184.216.34"], ["93.184.216.34"], ["127.0.0.1"]])
    monkeypatch.setattr(netguard, "resolve", lambda host, port: next(answers))
    _subscribe(f"http://rebind.example:{port}/hook")
    [row] = _emit(django_capture_on_commit_callbacks)

    outcome = services.delivery_send(delivery_id=row.pk)

    assert (outcome.state, outcome.status_code) == ("pending", None)
    assert "refused" in outcome.error
    assert "rebind.example" in outcome.error
    assert receiver.requests == []
    assert next(answers, None) is None  # every lookup happened


def test_the_guarded_client_connects_to_the_address_it_checked(receiver, monkeypatch) -> None:
    # A name the guard resolves to the receiver's address reaches it (allowed here: the receiver is on loopback).
    port = receiver.url.split(":")[2].split("/")[0]
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["127.0.0.1"])

    with netguard.guarded_client(allow_private=True, timeout=5) as client:
        response = client.post(f"http://receiver.example:{port}/hook", content=b"{}")

    assert response.status_code == 200
    assert receiver.requests[0].headers["host"] == f"receiver.example:{port}"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost/", "http://10.1.2.3/", "http://192.168.0.1/", "http://172.16.0.1/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/", "http://[fe80::1]/", "http://[fc00::1]/", "http://0.0.0.0/", "http://224.0.0.1/",
    "http://100.64.0.1/", "http://240.0.0.1/",
])
def test_private_loopback_and_link_local_targets_are_refused(url: str, settings) -> None:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(ServiceError) as exc:
        services.url_check(url)
    assert (exc.value.field, exc.value.code) == ("url", "url_refused")


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/", "file:///etc/passwd", "http://user:pw@93.184.216.34/",
                                 "http:///nohost", "gopher://93.184.216.34/"])
def test_other_schemes_and_credentials_are_refused(url: str, settings) -> None:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = True
    with pytest.raises(ServiceError) as exc:
        services.url_check(url)
    assert exc.value.field == "url"


def test_a_public_address_passes(settings) -> None:
    settings.HOOKS_ALLOW_PRIVATE_TARGETS = False
    assert services.url_check("https://93.184.216.34:8443/hook") == ["93.184.216.34"]


def test_a_merge_reaches_the_subscription_after_commit(receiver, enqueued, django_capture_on_commit_callbacks,
                                                       django_user_model) -> None:
    _subscribe(receiver.url, "customer.merged")
    target, source = Customer.objects.create(display_name="A"), Customer.objects.create(display_name="B")
    actor = django_user_model.objects.create_user("anna")

    with django_capture_on_commit_callbacks(execute=True):
        event = customer_merge(target=target, source=source, actor=actor)
        assert not OutboundEvent.objects.exists()  # nothing before commit

    [row] = OutboundEvent.objects.all()
    assert row.payload == {"target_id": target.pk, "source_id": source.pk, "audit_event_id": event.pk}
    assert services.delivery_send(delivery_id=row.pk).state == "delivered"
    assert json.loads(receiver.requests[0].body)["data"]["audit_event_id"] == event.pk


def test_a_rolled_back_merge_emits_nothing(receiver, enqueued, django_capture_on_commit_callbacks,
                                           django_user_model) -> None:
    _subscribe(receiver.url, "customer.merged")
    target, source = Customer.objects.create(display_name="A"), Customer.objects.create(display_name="B")
    actor = django_user_model.objects.create_user("anna")

    def merge_then_fail() -> None:
        with transaction.atomic():
            customer_merge(target=target, source=source, actor=actor)
            raise RuntimeError("roll back")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        merge_then_fail()

    assert not OutboundEvent.objects.exists()
    assert enqueued == []


def test_an_ingest_batch_emits_one_event_with_its_ids(receiver, enqueued,
                                                      django_capture_on_commit_callbacks) -> None:
    _subscribe(receiver.url, "interaction.created")
    account = ChannelAccount.objects.create(platform="x", name="@brand", external_id="brand-1")

    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [post("p1", who=1), post("p2", who=2), post("p3", who=1)])
    with django_capture_on_commit_callbacks(execute=True):
        ingest(account, [post("p1", who=1)])  # a duplicate: nothing new, no event

    [row] = OutboundEvent.objects.all()
    assert row.event_type == "interaction.created"
    assert row.payload == {"channel_account_id": account.pk, "external_ids": ["p1", "p2", "p3"]}
