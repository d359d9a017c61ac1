"""Agents' replies: queued in the database, sent once by the outbound path, never posted twice.

The platforms are faked at the transport level (respx) and answer in their real format: Telegram's
`sendMessage` result is a Message object like the recorded ones, Mastodon's `POST /api/v1/statuses`
returns a Status (the recorded one, with a new id).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import pathlib

import httpx
import pytest
import respx
from django.utils import timezone

from channels.adapters.base import DeliveryStatus, Direction, EventKind, InboundEvent, OutcomeUnknown, TransientError
from channels.adapters.mastodon import MastodonAdapter
from channels.adapters.telegram import TelegramAdapter
from channels.adapters.whatsapp import WhatsAppAdapter
from channels.ingest import ingest
from channels.models import ChannelAccount
from channels.services import reply_queue, reply_retry, reply_send
from conversations.models import Conversation, Interaction
from socialcrm.errors import Conflict, ServiceError

RECORDED = pathlib.Path(__file__).resolve().parents[2] / "channels" / "recorded"
SEND_URL = "https://api.telegram.org/bot123:secret/sendMessage"


def _telegram_conversation() -> tuple[ChannelAccount, Conversation]:
    account = ChannelAccount.objects.create(platform="telegram", name="bot", external_id="bot",
                                            credentials={"bot_token": "123:secret"})
    events = TelegramAdapter().parse((RECORDED / "nutgram/telegram_bot_api/text.json").read_bytes())
    # The recorded message is from 2022; move it to now so the conversation is current.
    events = [InboundEvent(**{**{f: getattr(e, f) for f in e.__slots__}, "occurred_at": timezone.now()})
              for e in events]
    ingest(account, events)
    return account, Conversation.objects.get(channel_account=account)


def _telegram_answer(request: httpx.Request, message_id: int = 9001) -> httpx.Response:
    body = json.loads(request.content)
    message = json.loads((RECORDED / "nutgram/telegram_bot_api/text.json").read_bytes())["message"]
    message.update(message_id=message_id, text=body["text"], date=int(timezone.now().timestamp()))
    message["from"] = {"id": 123, "is_bot": True, "first_name": "Support", "username": "support_bot"}
    return httpx.Response(200, json={"ok": True, "result": message})


@pytest.mark.django_db
def test_a_reply_is_queued_with_an_idempotency_key_and_sent_after_commit(django_capture_on_commit_callbacks) -> None:
    account, conversation = _telegram_conversation()
    inbound = Interaction.objects.get(conversation=conversation)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        reply = reply_queue(conversation=conversation, text="Hallo! Wir schauen uns das an. ^AB")

    assert len(callbacks) == 1
    reply.refresh_from_db()
    assert (reply.direction, reply.kind, reply.delivery_state) == ("out", "dm", "queued")
    assert reply.external_id == f"queued:{reply.idempotency_key}"
    assert reply.reply_to_external_id == inbound.external_id
    assert reply.identity_id == conversation.identity_id
    conversation.refresh_from_db()
    assert conversation.first_response_at == reply.occurred_at

    with respx.mock:
        route = respx.post(SEND_URL).mock(side_effect=_telegram_answer)
        outcome = reply_send(interaction_id=reply.pk)
        again = reply_send(interaction_id=reply.pk)

    assert route.call_count == 1
    sent = json.loads(route.calls[0].request.content)
    assert (sent["chat_id"], sent["text"]) == (12345678, "Hallo! Wir schauen uns das an. ^AB")
    assert sent["reply_parameters"]["message_id"] == int(inbound.external_id.split(":")[1])
    reply.refresh_from_db()
    assert (outcome.state, reply.delivery_state, reply.external_id) == ("sent", "sent", "12345678:9001")
    assert again.state == "sent"


@pytest.mark.django_db
def test_a_send_that_timed_out_is_never_posted_again_blindly() -> None:
    account, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Sind Sie noch da?")

    with respx.mock:
        route = respx.post(SEND_URL).mock(side_effect=httpx.ReadTimeout("no answer"))
        with pytest.raises(OutcomeUnknown):
            reply_send(interaction_id=reply.pk)
        reply.refresh_from_db()
        assert reply.delivery_state == "unknown"
        # The task retries: Telegram cannot say whether the message was posted, so nothing is resent.
        with pytest.raises(OutcomeUnknown):
            reply_send(interaction_id=reply.pk)

    assert route.call_count == 1
    reply.refresh_from_db()
    assert reply.delivery_state == "unknown"
    assert "may have been posted" in reply.send_error or "cannot look up" in reply.send_error

    # An agent decides to send it anyway.
    reply_retry(interaction_id=reply.pk)
    with respx.mock:
        respx.post(SEND_URL).mock(side_effect=_telegram_answer)
        assert reply_send(interaction_id=reply.pk).state == "sent"


class FakeMastodon:
    """Mastodon's Idempotency-Key rule: a repeated key answers with the status the first request created."""

    def __init__(self) -> None:
        self.statuses: dict[str, dict] = {}
        self.timeout_next = False
        status = json.loads((RECORDED / "mastodon-py/mastodon_social/status_local_with_poll_edited.json").read_bytes())
        self.template = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key not in self.statuses:
            status = copy.deepcopy(self.template)
            status.update(id=str(115_000_000_000_000_000 + len(self.statuses)),
                          content=f"<p>{json.loads(request.content)['status']}</p>")
            self.statuses[key] = status
        if self.timeout_next:
            self.timeout_next = False
            raise httpx.ReadTimeout("posted, but the answer never came")
        return httpx.Response(200, json=self.statuses[key])


@pytest.mark.django_db
def test_mastodon_reply_retried_after_a_timeout_is_posted_once() -> None:
    account = ChannelAccount.objects.create(platform="mastodon", name="support", external_id="43",
                                            config={"instance": "mastodon.social"},
                                            credentials={"access_token": "token"})
    status = json.loads((RECORDED / "mastodon-py/mastodon_social/status_remote_edited_gifv_custom_emoji.json")
                        .read_bytes())
    ingest(account, MastodonAdapter(external_id="43", config={"instance": "mastodon.social"}).parse(status))
    conversation = Conversation.objects.get(channel_account=account)
    reply = reply_queue(conversation=conversation, text="Danke für den Hinweis!")
    server = FakeMastodon()
    server.timeout_next = True

    with respx.mock:
        route = respx.post("https://mastodon.social/api/v1/statuses").mock(side_effect=server)
        with pytest.raises(OutcomeUnknown):
            reply_send(interaction_id=reply.pk)
        outcome = reply_send(interaction_id=reply.pk)

    assert route.call_count == 2
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {str(reply.idempotency_key)}
    assert len(server.statuses) == 1
    reply.refresh_from_db()
    assert outcome.state == reply.delivery_state == "sent"
    assert reply.external_id == server.statuses[str(reply.idempotency_key)]["id"]
    assert Interaction.objects.filter(channel_account=account, direction="out").count() == 1


@pytest.mark.django_db
def test_the_platforms_echo_of_our_reply_is_stored_once_whichever_comes_first() -> None:
    account, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Echo?")
    echo = InboundEvent(platform="telegram", external_id="12345678:9001", kind=EventKind.DIRECT_MESSAGE,
                        occurred_at=timezone.now(), text="Echo?", thread_key=conversation.thread_key,
                        direction=Direction.OUTBOUND)
    ingest(account, [echo])  # the echo arrives before the send's answer was stored
    assert Interaction.objects.filter(channel_account=account, direction="out").count() == 2

    with respx.mock:
        respx.post(SEND_URL).mock(side_effect=_telegram_answer)
        reply_send(interaction_id=reply.pk)
    ingest(account, [echo])  # and once more after it

    outbound = Interaction.objects.get(channel_account=account, direction="out")
    assert (outbound.pk, outbound.external_id, outbound.delivery_state) == (reply.pk, "12345678:9001", "sent")


@pytest.mark.django_db
def test_delivery_reports_move_a_reply_forward_never_back() -> None:
    account, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Status?")
    with respx.mock:
        respx.post(SEND_URL).mock(side_effect=_telegram_answer)
        reply_send(interaction_id=reply.pk)

    def report(status: DeliveryStatus) -> InboundEvent:
        return InboundEvent(platform="telegram", external_id="12345678:9001", kind=EventKind.STATUS,
                            occurred_at=timezone.now(), status=status)

    assert ingest(account, [report(DeliveryStatus.READ), report(DeliveryStatus.DELIVERED)]).statuses_applied == 1
    ingest(account, [report(DeliveryStatus.SENT)])
    reply.refresh_from_db()
    assert reply.delivery_state == "read"
    assert Interaction.objects.filter(channel_account=account).count() == 2  # a report creates no row


@pytest.mark.django_db
def test_failures_are_kept_with_their_reason() -> None:
    account, conversation = _telegram_conversation()
    reply = reply_queue(conversation=conversation, text="Hallo")

    with respx.mock:
        respx.post(SEND_URL).mock(return_value=httpx.Response(502, text="Bad Gateway"))
        with pytest.raises(TransientError):
            reply_send(interaction_id=reply.pk)
    reply.refresh_from_db()
    assert (reply.delivery_state, reply.send_attempts) == ("queued", 1)
    assert "502" in reply.send_error

    with respx.mock:
        respx.post(SEND_URL).mock(return_value=httpx.Response(
            403, json={"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}))
        outcome = reply_send(interaction_id=reply.pk)
    reply.refresh_from_db()
    assert outcome.state == reply.delivery_state == "failed"
    assert "blocked by the user" in reply.send_error
    assert reply.send_attempts == 2


@pytest.mark.django_db
def test_bad_replies_are_refused_before_anything_is_queued() -> None:
    account, conversation = _telegram_conversation()

    with pytest.raises(ServiceError) as empty:
        reply_queue(conversation=conversation, text="   ")
    with pytest.raises(ServiceError) as long:
        reply_queue(conversation=conversation, text="x" * 4097)

    assert (empty.value.code, empty.value.field) == ("reply_empty", "text")
    assert (long.value.code, long.value.field) == ("reply_too_long", "text")
    assert not Interaction.objects.filter(direction="out").exists()


@pytest.mark.django_db
def test_whatsapp_private_replies_only_within_24_hours_of_the_customers_last_message() -> None:
    account = ChannelAccount.objects.create(platform="whatsapp", name="wa", external_id="10634295353625",
                                            credentials={"access_token": "t"})
    events = WhatsAppAdapter(external_id="10634295353625").parse(
        (RECORDED / "restfb/whatsapp/webhook-incoming-message-text.json").read_bytes())
    ingest(account, events)  # recorded in 2022: the window closed long ago
    conversation = Conversation.objects.get(channel_account=account)

    with pytest.raises(Conflict) as closed:
        reply_queue(conversation=conversation, text="Hallo")
    assert closed.value.code == "reply_window_closed"

    last = Interaction.objects.get(conversation=conversation)
    assert reply_queue(conversation=conversation, text="Hallo",
                       now=last.occurred_at + dt.timedelta(hours=23)).delivery_state == "queued"


@pytest.mark.django_db
def test_mastodon_is_not_asked_again_once_it_may_have_forgotten_the_idempotency_key() -> None:
    account = ChannelAccount.objects.create(platform="mastodon", name="support", external_id="43",
                                            config={"instance": "mastodon.social"},
                                            credentials={"access_token": "token"})
    status = json.loads((RECORDED / "mastodon-py/mastodon_social/status_remote_edited_gifv_custom_emoji.json")
                        .read_bytes())
    ingest(account, MastodonAdapter(external_id="43", config={"instance": "mastodon.social"}).parse(status))
    conversation = Conversation.objects.get(channel_account=account)
    reply = reply_queue(conversation=conversation, text="Danke!")
    two_hours_ago = timezone.now() - dt.timedelta(hours=2)
    Interaction.objects.filter(pk=reply.pk).update(delivery_state="unknown", received_at=two_hours_ago)

    with respx.mock:
        route = respx.post("https://mastodon.social/api/v1/statuses").mock(side_effect=FakeMastodon())
        with pytest.raises(OutcomeUnknown, match="agent decides"):
            reply_send(interaction_id=reply.pk)

    assert route.call_count == 0
    reply.refresh_from_db()
    assert reply.delivery_state == "unknown"
