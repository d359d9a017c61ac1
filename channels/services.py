"""Writes of the channels app: syncing a polled account and draining stored webhook deliveries.

No network call ever runs inside a transaction: a sync claims a short lease on the account row, fetches a
page, then stores the page and advances the cursor in one short transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections import defaultdict

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from contacts.gdpr import erasure_lock
from contacts.models import SocialIdentity
from conversations.models import Conversation, Interaction
from socialcrm.debounce import enqueue_once_per_window
from socialcrm.errors import Conflict, NotFound, ServiceError
from socialcrm.events import emit

from .adapters import adapter_class
from .adapters.base import (
    AdapterError,
    Author,
    BaseAdapter,
    OutboundMessage,
    OutcomeUnknown,
    PayloadError,
    PermanentError,
    RateLimited,
    SendResult,
    TransientError,
)
from .ingest import ingest
from .models import ChannelAccount, WebhookDelivery

logger = logging.getLogger(__name__)

# Pages one sync run fetches at most before it lets other accounts have the worker.
MAX_PAGES_PER_SYNC = 50
# Attempts before a webhook delivery that keeps failing is marked failed (and waits for a replay).
MAX_DELIVERY_ATTEMPTS = 5
DELIVERY_BATCH = 500


class StaleCursor(Exception):
    """The account's cursor moved while this run was fetching: another run owns it now."""


def adapter_for(account: ChannelAccount) -> BaseAdapter:
    return adapter_class(account.platform)(
        external_id=account.external_id, credentials=account.credentials or {}, config=account.config or {},
        webhook_secret=account.webhook_secret or {},
    )


def account_claim_lease(*, account_id: int, now: dt.datetime | None = None) -> str | None:
    """Take the account's sync lease if it is free, enabled and not paused; the lease token, or None."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimed = (
        ChannelAccount.objects.filter(pk=account_id, enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        .update(lease_until=now + dt.timedelta(seconds=settings.CHANNEL_SYNC_LEASE), lease_token=token)
    )
    return token if claimed else None


def account_release_lease(*, account_id: int, token: str, error: str = "", paused_until: dt.datetime | None = None,
                          health: str | None = None) -> None:
    """Give the lease back and record the run's outcome; schedule the next poll."""
    now = timezone.now()
    account = ChannelAccount.objects.filter(pk=account_id, lease_token=token)
    values: dict = {
        "lease_until": None, "lease_token": "", "next_sync_at": now + dt.timedelta(seconds=1) * F("sync_interval")
    }
    if error:
        values.update(last_error=error[:2000], last_error_at=now, health=health or ChannelAccount.Health.DEGRADED)
    else:
        values.update(last_synced_at=now, health=ChannelAccount.Health.OK)
    if paused_until is not None:
        values.update(paused_until=paused_until, next_sync_at=paused_until)
    account.update(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class SyncOutcome:
    account_id: int
    pages: int = 0
    events: int = 0
    inserted: int = 0
    rejected: int = 0
    skipped: str = ""
    error: str = ""


def account_sync(*, account_id: int) -> SyncOutcome:
    """Poll one account until it has nothing more (or MAX_PAGES_PER_SYNC), storing each page as it comes.

    The cursor advances only in the transaction that stored its page, and only if it still equals the one
    this run started from. A rate limit pauses the account until the platform's reset time (stored in the
    database, not a broker countdown); transient errors propagate so the task retries with backoff; a
    permanent error marks the account failing with its reason.
    """
    token = account_claim_lease(account_id=account_id)
    if token is None:
        return SyncOutcome(account_id, skipped="lease held, disabled, paused or gone")
    account = ChannelAccount.objects.get(pk=account_id)
    adapter = adapter_for(account)
    if not adapter.pollable:
        account_release_lease(account_id=account_id, token=token)
        return SyncOutcome(account_id, skipped=f"{account.platform} is not polled")
    pages = events = inserted = rejected = 0
    cursor = dict(account.sync_cursor or {})
    try:
        for _ in range(MAX_PAGES_PER_SYNC):
            page = adapter.fetch(cursor)  # network: outside any transaction
            with transaction.atomic(durable=True):
                result = ingest(account, page.events)
                moved = ChannelAccount.objects.filter(pk=account_id, lease_token=token, sync_cursor=cursor).update(
                    sync_cursor=page.cursor
                )
                if not moved:
                    raise StaleCursor(f"cursor of account {account_id} moved during the sync")
            cursor = page.cursor
            pages, events = pages + 1, events + len(page.events)
            inserted, rejected = inserted + result.inserted, rejected + len(result.rejected)
            if not page.has_more:
                break
    except RateLimited as exc:
        account_release_lease(account_id=account_id, token=token, error=f"rate limited: {exc}",
                              paused_until=exc.reset_at)
        return SyncOutcome(account_id, pages, events, inserted, rejected, error=str(exc))
    except TransientError as exc:
        account_release_lease(account_id=account_id, token=token, error=f"temporary failure: {exc}")
        raise
    except (PermanentError, PayloadError, StaleCursor) as exc:
        account_release_lease(account_id=account_id, token=token, error=str(exc), health=ChannelAccount.Health.FAILING)
        return SyncOutcome(account_id, pages, events, inserted, rejected, error=str(exc))
    except BaseException:
        account_release_lease(account_id=account_id, token=token, error="unexpected error during sync",
                              health=ChannelAccount.Health.FAILING)
        raise
    account_release_lease(account_id=account_id, token=token)
    return SyncOutcome(account_id, pages, events, inserted, rejected)


def accounts_due_for_sync(*, now: dt.datetime | None = None) -> list[int]:
    """Claim the next poll of every due, enabled, unpaused account (one statement); their ids."""
    now = now or timezone.now()
    pollable = [p for p in ChannelAccount.Platform.values if _pollable(p)]
    due = (
        ChannelAccount.objects.filter(enabled=True, platform__in=pollable)
        .filter(Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now))
        .filter(Q(paused_until__isnull=True) | Q(paused_until__lte=now))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    )
    ids = list(due.values_list("pk", flat=True))
    # Push next_sync_at ahead now, so the next beat tick does not enqueue the same account again.
    ChannelAccount.objects.filter(pk__in=ids).update(
        next_sync_at=now + dt.timedelta(seconds=1) * F("sync_interval")
    )
    return ids


def _pollable(platform: str) -> bool:
    try:
        return adapter_class(platform).pollable
    except KeyError:
        return False


# Deliveries stored within this many seconds of each other share one drain task.
DRAIN_WINDOW = 1.0
DRAIN_KEY = "socialcrm:channels:drain-due"

# One INSERT, committed on its own (autocommit) or with the caller's transaction. Sent as a prepared statement
# with server-side parameters: the body travels as binary bytea, and PostgreSQL plans the statement once per
# connection instead of parsing a hex literal of the whole body every time.
_INSERT_DELIVERY = """
INSERT INTO channels_webhookdelivery (channel_account_id, received_at, headers, body, state, attempts, last_error)
VALUES (%s, %s, %s::jsonb, %b, 'pending', 0, '') RETURNING id
"""


def delivery_store(*, account_id: int, body: bytes, headers: dict[str, str]) -> int:
    """Store a verified webhook body exactly as received, then ask for a drain after commit; its id.

    This is the hot path of webhook intake (bench/webhooks.py): one statement, no transaction of its own, and
    no health-check round trip before it. A persistent connection that died since its last use (a database
    restart) fails the statement before anything is stored; outside a transaction the statement is then sent
    once more on a new connection. Should the first one have been committed after all, the delivery is stored
    twice, which ingest absorbs: its interactions are unique per external id.
    """
    params = (account_id, timezone.now(), json.dumps(headers), body)
    try:
        delivery_id = _delivery_insert(params)
    except (InterfaceError, OperationalError):
        if connection.in_atomic_block:
            raise
        logger.warning("webhook delivery insert failed on a stale connection; retrying on a new one")
        connection.close()
        delivery_id = _delivery_insert(params)
    if connection.in_atomic_block:
        transaction.on_commit(_schedule_drain)
    else:  # autocommit: the row is committed already
        _schedule_drain()
    return delivery_id


def _delivery_insert(params: tuple[object, ...]) -> int:
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(_INSERT_DELIVERY, params, prepare=True)
        (delivery_id,) = cursor.fetchone()  # INSERT ... RETURNING: always its row
    return delivery_id


def _schedule_drain() -> None:
    """One `process_deliveries` run per window of deliveries instead of one task per webhook."""
    from .tasks import process_deliveries  # the task module imports this one

    enqueue_once_per_window(process_deliveries, key=DRAIN_KEY, window=DRAIN_WINDOW)


@dataclasses.dataclass(frozen=True, slots=True)
class DrainOutcome:
    processed: int = 0
    failed: int = 0
    retried: int = 0


def deliveries_process(*, limit: int = DELIVERY_BATCH) -> DrainOutcome:
    """Parse and ingest pending webhook deliveries, oldest first, in one transaction per drained batch.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so workers running this at once never take the same
    delivery. A delivery whose body cannot be parsed counts an attempt and keeps its reason; after
    MAX_DELIVERY_ATTEMPTS it is marked failed and waits for a replay. The rest of the batch is stored.
    """
    processed = failed = retried = 0
    now = timezone.now()
    with transaction.atomic(durable=True):
        # Before the deliveries are claimed: an erasure deletes deliveries, and ingest below waits for erasures.
        erasure_lock(shared=True)
        pending = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=WebhookDelivery.State.PENDING)
            .order_by("received_at", "id")[:limit]
        )
        by_account: dict[int, list[WebhookDelivery]] = defaultdict(list)
        for delivery in pending:
            by_account[delivery.channel_account_id].append(delivery)
        accounts = ChannelAccount.objects.in_bulk(list(by_account))
        done_ids: list[int] = []
        for account_id, deliveries in by_account.items():
            account = accounts.get(account_id)
            if account is None:  # stored in the instant its account was deleted (the table has no constraint)
                failed += WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
                    state=WebhookDelivery.State.FAILED, last_error=f"Channel account {account_id} was deleted.")
                continue
            adapter = adapter_for(account)
            events = []
            for delivery in deliveries:
                try:
                    events.extend(adapter.parse(bytes(delivery.body)))
                except (AdapterError, ValueError) as exc:
                    delivery.attempts += 1
                    delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                    if delivery.attempts >= MAX_DELIVERY_ATTEMPTS:
                        delivery.state = WebhookDelivery.State.FAILED
                        failed += 1
                    else:
                        retried += 1
                    delivery.save(update_fields=["attempts", "last_error", "state"])
                    continue
                done_ids.append(delivery.pk)
            result = ingest(account, events)
            if result.rejected:
                logger.warning("deliveries of account %s: %d events rejected", account.pk, len(result.rejected))
        processed = WebhookDelivery.objects.filter(pk__in=done_ids).update(
            state=WebhookDelivery.State.PROCESSED, processed_at=now, last_error=""
        )
    return DrainOutcome(processed=processed, failed=failed, retried=retried)


# A send that has been "sending" this long was cut off (a worker died mid-request): its outcome is unknown.
SEND_STALE_AFTER = dt.timedelta(minutes=5)


def reply_queue(*, conversation: Conversation, text: str, actor=None, private: bool | None = None,
                now: dt.datetime | None = None) -> Interaction:
    """Queue an agent's reply in a conversation; it is sent by the `outbound` queue after commit.

    The reply answers the conversation's newest inbound interaction, privately when that was a direct
    message (unless `private` says otherwise). Refused with a clear error when the text is empty or too
    long for the platform, the channel is disabled or cannot send, or the platform's private-reply window
    (WhatsApp, Messenger: 24 hours after the customer's last message) has closed.
    """
    now = now or timezone.now()
    text = (text or "").strip()
    if not text:
        raise ServiceError("A reply needs text.", code="reply_empty", field="text")
    account = conversation.channel_account
    if not account.enabled:
        raise Conflict("The channel account is disabled.", code="channel_disabled")
    try:
        adapter = adapter_for(account)
    except KeyError:
        raise Conflict(f"{account.platform} cannot send replies.", code="channel_cannot_send") from None
    limit = adapter.max_reply_length
    if limit is not None and len(text) > limit:
        raise ServiceError(f"A reply on {account.get_platform_display()} has at most {limit} characters; "
                           f"this one has {len(text)}.", code="reply_too_long", field="text")
    last_inbound = (
        Interaction.objects.filter(conversation=conversation, direction=Interaction.Direction.INBOUND,
                                   is_stub=False)
        .order_by("-occurred_at", "-id").only("external_id", "kind", "occurred_at").first()
    )
    if private is None:
        private = last_inbound is not None and last_inbound.kind == Interaction.Kind.DIRECT_MESSAGE
    window = adapter.private_reply_window
    window_closed = last_inbound is None or (window is not None and last_inbound.occurred_at + window < now)
    if private and window is not None and window_closed:
        raise Conflict(
            f"The customer last wrote more than {window.total_seconds() / 3600:g} hours ago; "
            f"{account.get_platform_display()} allows a free-form reply only within that window.",
            code="reply_window_closed",
        )
    key = uuid.uuid4()
    with transaction.atomic():
        reply = Interaction.objects.create(
            channel_account=account, conversation=conversation, identity_id=conversation.identity_id,
            direction=Interaction.Direction.OUTBOUND,
            kind=Interaction.Kind.DIRECT_MESSAGE if private else Interaction.Kind.REPLY,
            external_id=f"queued:{key}", text=text, occurred_at=now, received_at=now,
            reply_to_external_id=last_inbound.external_id if last_inbound else "",
            idempotency_key=key, delivery_state=Interaction.DeliveryState.QUEUED, sent_by=actor,
        )
        Conversation.objects.filter(pk=conversation.pk, first_response_at__isnull=True).update(first_response_at=now)
        Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=now, updated_at=now)
        transaction.on_commit(lambda: _enqueue_send(reply.pk))
    return reply


def _enqueue_send(interaction_id: int) -> None:
    from .tasks import send_outbound  # the task module imports this one

    send_outbound.delay(interaction_id)


def _outbound_message(reply: Interaction) -> OutboundMessage:
    identity = SocialIdentity.objects.filter(pk=reply.identity_id).first() if reply.identity_id else None
    recipient = None
    if identity is not None:
        recipient = Author(platform=identity.platform, external_id=identity.external_id, scope=identity.scope,
                           handle=identity.handle, display_name=identity.display_name)
    return OutboundMessage(
        idempotency_key=str(reply.idempotency_key), text=reply.text,
        thread_key=reply.conversation.thread_key if reply.conversation_id else "",
        reply_to_id=reply.reply_to_external_id, recipient=recipient,
        private=reply.kind == Interaction.Kind.DIRECT_MESSAGE,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class SendOutcome:
    interaction_id: int
    state: str
    external_id: str = ""
    error: str = ""


def reply_send(*, interaction_id: int, now: dt.datetime | None = None) -> SendOutcome:
    """Send one queued reply; safe to run any number of times for the same reply.

    The reply is claimed (queued -> sending) in its own short transaction, the platform is called outside
    any transaction, and the result is stored in another. A send cut off before an answer (a timeout, a
    worker killed mid-request) is never simply repeated: the adapter is asked whether the platform holds
    the reply (`find_sent`; Mastodon answers a repeated Idempotency-Key with the first post), and if it
    cannot tell the reply is left `unknown` for an agent to decide. Transient failures raise for the
    task's retry with backoff; a permanent refusal marks the reply failed with the platform's reason.
    """
    now = now or timezone.now()
    with transaction.atomic():
        reply = (
            Interaction.objects.select_for_update(of=("self",)).select_related("channel_account", "conversation")
            .filter(pk=interaction_id, direction=Interaction.Direction.OUTBOUND).first()
        )
        if reply is None or reply.idempotency_key is None:
            return SendOutcome(interaction_id, "gone")
        state = reply.delivery_state
        stale = reply.send_started_at is not None and reply.send_started_at + SEND_STALE_AFTER < now
        if state == Interaction.DeliveryState.QUEUED:
            ambiguous = False
        elif state == Interaction.DeliveryState.UNKNOWN or (state == Interaction.DeliveryState.SENDING and stale):
            ambiguous = True
        else:  # sending right now elsewhere, or already settled
            return SendOutcome(interaction_id, state, reply.external_id)
        reply.delivery_state = Interaction.DeliveryState.SENDING
        reply.send_attempts += 1
        reply.send_started_at = now
        reply.save(update_fields=["delivery_state", "send_attempts", "send_started_at"])
    account = reply.channel_account
    adapter = adapter_for(account)
    message = _outbound_message(reply)
    try:
        if ambiguous and adapter.find_sent_within is not None and reply.received_at + adapter.find_sent_within < now:
            raise OutcomeUnknown(f"{account.platform}: too long since the first attempt to look the reply up "
                                 "safely; an agent decides whether to send it again")
        if ambiguous:
            result = adapter.find_sent(message)
            if result is None:  # the platform shows it was never posted: now it is safe to send
                result = adapter.send(message)
        else:
            result = adapter.send(message)
    except OutcomeUnknown as exc:
        _reply_settle(reply.pk, state=Interaction.DeliveryState.UNKNOWN, error=str(exc))
        raise
    except RateLimited as exc:
        _reply_settle(reply.pk, state=Interaction.DeliveryState.QUEUED, error=str(exc))
        raise
    except TransientError as exc:
        _reply_settle(reply.pk, state=Interaction.DeliveryState.QUEUED, error=str(exc))
        raise
    except (PermanentError, AdapterError) as exc:
        _reply_settle(reply.pk, state=Interaction.DeliveryState.FAILED, error=str(exc))
        return SendOutcome(interaction_id, Interaction.DeliveryState.FAILED, error=str(exc))
    except BaseException:
        # Unknown failure after the request may have left: never resend blindly.
        _reply_settle(reply.pk, state=Interaction.DeliveryState.UNKNOWN, error="unexpected error while sending")
        raise
    reply_mark_sent(interaction_id=reply.pk, result=result)
    return SendOutcome(interaction_id, Interaction.DeliveryState.SENT, result.external_id)


def _reply_settle(interaction_id: int, *, state: str, error: str) -> None:
    settled = Interaction.objects.filter(pk=interaction_id, delivery_state=Interaction.DeliveryState.SENDING).update(
        delivery_state=state, send_error=error[:2000]
    )
    if settled and state in (Interaction.DeliveryState.FAILED, Interaction.DeliveryState.UNKNOWN):
        emit("interaction.updated", {"interaction_ids": [interaction_id], "delivery_state": state})


def reply_mark_sent(*, interaction_id: int, result: SendResult) -> None:
    """Store the platform's id for a sent reply, folding in its echo if the echo was ingested first.

    The platform may deliver the echo of our reply (Messenger `is_echo`, our own tweet in the mentions
    stream) before this runs; that row, which has no idempotency key, is merged into ours and removed, so
    the reply is stored once. A delivery report that came with the echo is kept.
    """
    with transaction.atomic():
        reply = Interaction.objects.select_for_update(of=("self",)).get(pk=interaction_id)
        echo = (
            Interaction.objects.select_for_update(of=("self",))
            .filter(channel_account_id=reply.channel_account_id, external_id=result.external_id)
            .exclude(pk=reply.pk).first()
        )
        state = Interaction.DeliveryState.SENT
        raw = dict(result.raw)
        if echo is not None:
            if echo.idempotency_key is not None:
                raise Conflict(f"platform id {result.external_id} already belongs to reply {echo.pk}",
                               code="duplicate_external_id")
            if echo.delivery_state in (Interaction.DeliveryState.DELIVERED, Interaction.DeliveryState.READ):
                state = echo.delivery_state
            raw = raw or dict(echo.raw)
            echo.delete()
        reply.external_id = result.external_id
        reply.delivery_state = state
        reply.send_error = ""
        reply.raw = raw
        reply.save(update_fields=["external_id", "delivery_state", "send_error", "raw"])
        emit("interaction.updated", {"channel_account_id": reply.channel_account_id, "interaction_ids": [reply.pk],
                                     "external_ids": [reply.external_id], "delivery_state": state})


def reply_retry(*, interaction_id: int) -> Interaction:
    """An agent's decision to send a failed (or unknown) reply again; queues it and enqueues the send."""
    with transaction.atomic():
        reply = Interaction.objects.select_for_update(of=("self",)).filter(
            pk=interaction_id, direction=Interaction.Direction.OUTBOUND, idempotency_key__isnull=False
        ).first()
        if reply is None:
            raise NotFound("No such reply.", code="not_found")
        if reply.delivery_state not in (Interaction.DeliveryState.FAILED, Interaction.DeliveryState.UNKNOWN):
            raise Conflict(f"Only a failed reply can be retried; this one is {reply.delivery_state}.",
                           code="reply_not_failed")
        reply.delivery_state = Interaction.DeliveryState.QUEUED
        reply.save(update_fields=["delivery_state"])
        transaction.on_commit(lambda: _enqueue_send(reply.pk))
    return reply


def replies_stuck(*, now: dt.datetime | None = None) -> list[int]:
    """Replies a lost task left queued, or a dead worker left sending: the sweeper re-drives them."""
    now = now or timezone.now()
    return list(
        Interaction.objects.filter(
            Q(delivery_state=Interaction.DeliveryState.QUEUED, received_at__lt=now - dt.timedelta(minutes=1))
            | Q(delivery_state=Interaction.DeliveryState.SENDING, send_started_at__lt=now - SEND_STALE_AFTER)
        ).values_list("pk", flat=True)[:500]
    )


def deliveries_replay(*, delivery_ids: list[int] | None = None, account_id: int | None = None,
                      include_processed: bool = False) -> int:
    """Put failed deliveries (or, with `include_processed`, processed ones too) back in the queue.

    Replaying is always safe: ingest is idempotent, so a delivery processed twice stores nothing twice.
    Returns how many were queued; a drain is enqueued after commit.
    """
    states = [WebhookDelivery.State.FAILED]
    if include_processed:
        states.append(WebhookDelivery.State.PROCESSED)
    queryset = WebhookDelivery.objects.filter(state__in=states)
    if delivery_ids is not None:
        queryset = queryset.filter(pk__in=delivery_ids)
    if account_id is not None:
        queryset = queryset.filter(channel_account_id=account_id)
    with transaction.atomic():
        count = queryset.update(state=WebhookDelivery.State.PENDING, attempts=0, last_error="", processed_at=None)
        if count:
            transaction.on_commit(_schedule_drain)
    return count
