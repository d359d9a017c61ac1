"""WhatsApp Cloud API parser on real recorded webhook bodies (channels/recorded/restfb/whatsapp, pywa)."""

import copy
import datetime as dt
import json
import pathlib
from typing import Any

import pytest

from channels.adapters import whatsapp
from channels.adapters.base import DeliveryStatus, Direction, EventKind, InboundEvent, PayloadError
from channels.adapters.whatsapp import WhatsAppAdapter

RECORDED = pathlib.Path(__file__).resolve().parents[3] / "channels" / "recorded"
RESTFB = RECORDED / "restfb" / "whatsapp"
PYWA = RECORDED / "pywa" / "whatsapp_cloud_api"
UTC = dt.UTC

RESTFB_ID = "wamid.HBgNNDkxNTIwOTgzMzM5OBUCABIYHGDEHJVFHJEVCFHJEVBCMTkyODk1OEIyAA=="
RESTFB_AT = dt.datetime(2022, 5, 22, 21, 1, 53, tzinfo=UTC)  # "1653253313"
RESTFB_AUTHOR = ("491234567890", "10634295353625", "", "TestUser")
PYWA_AUTHOR = ("972987654321", "1122334455667", "", "Test Name")
DM, EDIT, DELETE, STATUS = EventKind.DIRECT_MESSAGE, EventKind.EDIT, EventKind.DELETE, EventKind.STATUS
IN, OUT = Direction.INBOUND, Direction.OUTBOUND


def recorded(case: str) -> Any:
    """A recorded body: `restfb/<file stem>` is a whole file (bytes, as POSTed); `pywa/<file stem>/<key>` is one
    value of a pywa file, each of which holds several complete POST bodies."""
    source, *rest = case.split("/")
    if source == "restfb":
        return (RESTFB / f"{rest[0]}.json").read_bytes()
    name, key = rest
    return json.loads((PYWA / f"{name}.json").read_bytes())[key]


def parse(case: str, **kwargs: Any) -> tuple[list[InboundEvent], WhatsAppAdapter]:
    adapter = WhatsAppAdapter(**kwargs)
    events = adapter.parse(recorded(case))
    for event in events:
        assert event.problems() == [], event
    return events, adapter


def summary(event: InboundEvent) -> tuple:
    author = event.author
    who = None if author is None else (author.external_id, author.scope, author.handle, author.display_name)
    return event.kind, event.external_id, who, event.thread_key, event.reply_to_id, event.text, event.direction


# Every recorded body and what each of its events must be:
# (kind, external id, author (id, scope, handle, display name), thread key, reply-to, text, direction).
EXPECTED: dict[str, list[tuple]] = {
    "restfb/webhook-incoming-message-text": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "Test", IN)],
    "restfb/webhook-incoming-message-image": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "Some awesome image", IN)],
    "restfb/webhook-incoming-message-document": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "RESTFB ANNIVERSARY", IN)],
    "restfb/webhook-incoming-message-audio": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "", IN)],
    "restfb/webhook-incoming-message-location": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "", IN)],
    # The contacts entry is another number (222222222222) than the sender: its name is not the sender's.
    "restfb/webhook-incoming-message-contacts": [
        (DM, "wamid.randomwhatsappmessageid", ("333333333333", "1111111111111111", "", ""), "wa:333333333333",
         "", "", IN)],
    "restfb/webhook-incoming-message-button": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "wamid.ID", "No", IN)],
    "restfb/webhook-incoming-message-interactive-btn": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "", "button-text", IN)],
    "restfb/webhook-incoming-message-emoji": [
        (DM, RESTFB_ID, RESTFB_AUTHOR, "wa:491234567890", "wamid.xxxxxxxx", "\U0001f44d\U0001f3fb", IN)],
    "restfb/webhook-incoming-message-text-bsuid": [
        (DM, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
         ("US.13491208655302741918", "106540352242922", "realsheenanelson", "Sheena Nelson"),
         "group:120363418770915618@g.us", "", "Does it come in another color?", IN)],
    "restfb/webhook-incoming-message-status-errors": [
        (STATUS, "wamid.HBgLMzI0NzY3NTUzNzYVAgARGBIzOTI2MzFGRjdBRjA4M0Y2RDQA", None, "wa:REDACTED", "",
         "Receiver is incapable of receiving this message (131026): Message Undeliverable.", IN)],
    "restfb/webhook-incoming-message-status-ui": [
        (STATUS, "wamid.ID", None, "wa:PHONE_NUMBER", "", "", IN)],
    "restfb/webhook-incoming-message-error": [],
    "restfb/webhook-incoming-message-unsupported": [],
    "restfb/webhook-incoming-message-system": [],
    "pywa/messages/text": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "Body Text", IN)],
    "pywa/messages/image": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "", IN)],
    "pywa/messages/document": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "caption", IN)],
    "pywa/messages/voice": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "", IN)],
    "pywa/messages/reaction": [
        (DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "wamid.yzxyzx=", "\U0001f62e", IN)],
    "pywa/messages/current_location": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "", IN)],
    "pywa/messages/reply": [
        (DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "wamid.xyzxyz==", "replied text", IN)],
    "pywa/messages/forwarded": [(DM, "wamid.xyzxyz", PYWA_AUTHOR, "wa:972987654321", "", "forwarded text", IN)],
    "pywa/messages/unsupported": [],
    "pywa/message_status/sent": [(STATUS, "wamid.xyzxyz", None, "wa:972987654321", "", "", IN)],
    "pywa/message_status/delivered": [(STATUS, "wamid.xyzxyz", None, "wa:972987654321", "", "", IN)],
    "pywa/message_status/read": [(STATUS, "wamid.xyzxyz", None, "wa:972987654321", "", "", IN)],
    "pywa/message_status/failed": [
        (STATUS, "wamid.xyzxyz", None, "wa:972987654321", "",
         "User's number is part of an experiment (130472): Failed to send message because this user's phone "
         "number is part of an experiment", IN)],
    # The sender 16505551234 has no contacts entry (the one there is 972987654321): no name.
    "pywa/edited_message/image": [
        (EDIT, "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=",
         ("16505551234", "106540352242922", "", ""), "wa:16505551234", "M0", "Updated image caption", IN)],
    "pywa/outgoing_message_echoes/text": [
        (DM, "<WHATSAPP_MESSAGE_ID>", None, "wa:<WHATSAPP_USER_PHONE_NUMBER>", "", "Test message", OUT)],
    # In these two the customer is `from` and `to` is our display number (972123456789).
    "pywa/outgoing_message_echoes/delete": [(DELETE, "wamid.zzzzzz", None, "wa:972987654321", "", "", OUT)],
    "pywa/outgoing_message_echoes/edit": [
        (EDIT, "wamid.zzzzzz", None, "wa:972987654321", "", "Text was edited", OUT)],
}


def test_the_table_covers_every_recorded_body() -> None:
    cases = {f"restfb/{p.stem}" for p in RESTFB.glob("*.json")}
    for path in PYWA.glob("*.json"):
        cases |= {f"pywa/{path.stem}/{key}" for key in json.loads(path.read_bytes())}

    assert cases == set(EXPECTED)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_every_recorded_body_parses_to_the_expected_events(case: str) -> None:
    events, adapter = parse(case)

    assert [summary(e) for e in events] == EXPECTED[case]
    assert all(e.platform == "whatsapp" for e in events)
    assert all(e.author is None or e.author.platform == "whatsapp" for e in events)
    if not events:
        assert len(adapter.skipped) == 1  # nothing disappears without a recorded reason


def test_times_are_the_webhook_timestamps() -> None:
    assert parse("restfb/webhook-incoming-message-text")[0][0].occurred_at == RESTFB_AT
    assert parse("pywa/messages/text")[0][0].occurred_at == dt.datetime(2023, 10, 11, 16, 53, 43, tzinfo=UTC)
    assert parse("pywa/edited_message/image")[0][0].occurred_at == dt.datetime(2025, 6, 13, 22, 42, 55, tzinfo=UTC)
    assert parse("pywa/outgoing_message_echoes/delete")[0][0].occurred_at == dt.datetime(
        2023, 10, 11, 17, 22, 48, tzinfo=UTC)


def test_placeholder_timestamp_gives_the_receive_time(monkeypatch: pytest.MonkeyPatch) -> None:
    received = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    monkeypatch.setattr(whatsapp, "utc_now", lambda: received)

    [event] = parse("restfb/webhook-incoming-message-status-ui")[0]  # "timestamp": "TIMESTAMP"

    assert event.occurred_at == received


def test_author_profile_keeps_the_contact_entry_with_its_business_scoped_ids() -> None:
    [event] = parse("pywa/messages/text")[0]

    assert event.author.raw == {"profile": {"name": "Test Name"}, "wa_id": "972987654321",
                                "user_id": "US.13491208655302741918", "parent_user_id": "US.ENT.11815799212886844830"}


@pytest.mark.parametrize(("case", "attachment"), [
    ("restfb/webhook-incoming-message-image",
     {"type": "image", "id": "400962571939895", "mime_type": "image\\/jpeg",
      "sha256": "law0CgE277wMMnIJU0XIxhDne6Ptmwaek\\/thVM7mVtg=", "caption": "Some awesome image"}),
    ("restfb/webhook-incoming-message-document",
     {"type": "document", "id": "4937353526352", "mime_type": "application\\/zip",
      "sha256": "FzonbuoHILCEbNUvfvddy77Ef\\/vLBuZvfrM8W2kd4srXrk=", "caption": "RESTFB ANNIVERSARY",
      "filename": "RESTFB ANNIVERSARY.zip"}),
    ("restfb/webhook-incoming-message-audio",
     {"type": "audio", "id": "1113842206146232", "mime_type": "audio\\/ogg; codecs=opus",
      "sha256": "qGgRrybLhq3DQ2fh7t2IPHP6LnQpFVsZ7zkDwoxDPJs=", "voice": True}),
    ("restfb/webhook-incoming-message-location",
     {"type": "location", "latitude": 49.234939575195, "longitude": 6.9993596076965,
      "name": "Saarbr\\u00fccken", "address": "Saarbr\\u00fccken"}),
    ("restfb/webhook-incoming-message-contacts",
     {"type": "contact", "name": {"first_name": "j_doe", "formatted_name": "j_doe"}}),
    ("restfb/webhook-incoming-message-button", {"type": "button", "payload": "No-Button-Payload"}),
    ("restfb/webhook-incoming-message-interactive-btn",
     {"type": "button_reply", "id": "unique-button-identifier-here"}),
    ("restfb/webhook-incoming-message-emoji",
     {"type": "reaction", "emoji": "\U0001f44d\U0001f3fb", "message_id": "wamid.xxxxxxxx"}),
    ("pywa/messages/image", {"type": "image", "id": "65463453", "mime_type": "image/jpeg", "sha256": "4654+8g="}),
    ("pywa/messages/document",
     {"type": "document", "id": "1234567890987654321", "mime_type": "application/pdf",
      "sha256": "grwfwe/ZPx0wAbdfbdeFUNItPZ0RylL8gGUvdt3YFqc18SY=", "caption": "caption", "filename": "filename.pdf"}),
    ("pywa/messages/voice",
     {"type": "audio", "id": "1234567890987654321", "mime_type": "audio/ogg; codecs=opus",
      "sha256": "m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=", "voice": True}),
    ("pywa/messages/current_location", {"type": "location", "latitude": 12.25089, "longitude": 43.90539}),
    ("pywa/edited_message/image",
     {"type": "image", "id": "1234567890", "mime_type": "image/jpeg", "sha256": "a1b2c3d4e5f6...",
      "caption": "Updated image caption", "url": "https://media.example.com/updated-image.jpg"}),
])
def test_attachments_are_summarised_as_recorded(case: str, attachment: dict) -> None:
    [event] = parse(case)[0]

    assert event.attachments == (attachment,)


@pytest.mark.parametrize("case", ["pywa/messages/text", "pywa/messages/reply", "restfb/webhook-incoming-message-text",
                                  "pywa/outgoing_message_echoes/text", "pywa/outgoing_message_echoes/delete"])
def test_text_and_deletes_have_no_attachments(case: str) -> None:
    assert parse(case)[0][0].attachments == ()


@pytest.mark.parametrize(("case", "status"), [
    ("pywa/message_status/sent", DeliveryStatus.SENT),
    ("pywa/message_status/delivered", DeliveryStatus.DELIVERED),
    ("pywa/message_status/read", DeliveryStatus.READ),
    ("pywa/message_status/failed", DeliveryStatus.FAILED),
    ("restfb/webhook-incoming-message-status-errors", DeliveryStatus.FAILED),
    ("restfb/webhook-incoming-message-status-ui", DeliveryStatus.SENT),
])
def test_statuses_of_our_messages(case: str, status: DeliveryStatus) -> None:
    [event] = parse(case)[0]

    assert (event.kind, event.status, event.author) == (EventKind.STATUS, status, None)


def test_status_times() -> None:
    assert parse("pywa/message_status/read")[0][0].occurred_at == dt.datetime(2023, 7, 15, 0, 20, 58, tzinfo=UTC)
    assert parse("restfb/webhook-incoming-message-status-errors")[0][0].occurred_at == dt.datetime(
        2023, 10, 25, 10, 57, 27, tzinfo=UTC)


@pytest.mark.parametrize(("case", "reason"), [
    ("restfb/webhook-incoming-message-error",
     "unknown message: Unsupported message type (131051): Message type is not currently supported"),
    ("restfb/webhook-incoming-message-unsupported",
     "unsupported message: Messagetypeunknown (131051): Messagetypeiscurrentlynotsupported."),
    ("pywa/messages/unsupported",
     "unsupported message: Message type unknown (131051): Message type is currently not supported."),
    ("restfb/webhook-incoming-message-system", "system message (user_changed_number), not written by the customer"),
])
def test_errors_unsupported_and_system_messages_are_skipped_with_their_reason(case: str, reason: str) -> None:
    events, adapter = parse(case)

    assert events == []
    assert adapter.skipped == [("entry[0].changes[0].value.messages[0]", reason)]


# -- variants derived in code from the recorded bodies --------------------------------------------------------


def _value(body: dict) -> dict:
    return body["entry"][0]["changes"][0]["value"]


def test_list_reply_is_the_chosen_row() -> None:
    """restfb's button reply turned into a list reply (same interactive shape, Meta's `list_reply`)."""
    body = json.loads(recorded("restfb/webhook-incoming-message-interactive-btn"))
    _value(body)["messages"][0]["interactive"] = {
        "type": "list_reply", "list_reply": {"id": "row-2", "title": "Delivery", "description": "Where is my order"}}

    [event] = WhatsAppAdapter().parse(body)

    assert (event.kind, event.text) == (EventKind.DIRECT_MESSAGE, "Delivery")
    assert event.attachments == ({"type": "list_reply", "id": "row-2", "description": "Where is my order"},)


def test_customer_revoke_is_a_delete_of_the_original() -> None:
    """The recorded business revoke (an echo) moved into `messages[]`, as Meta sends a customer's revoke."""
    body = recorded("pywa/outgoing_message_echoes/delete")
    value = _value(body)
    revoke = value.pop("message_echoes")[0]
    value["messages"] = [{**revoke, "from": "972987654321"}]
    del value["messages"][0]["to"]
    body["entry"][0]["changes"][0]["field"] = "messages"

    [event] = WhatsAppAdapter().parse(body)

    assert summary(event) == (DELETE, "wamid.zzzzzz", PYWA_AUTHOR, "wa:972987654321", "", "", IN)


def test_removed_reaction_is_skipped() -> None:
    body = recorded("pywa/messages/reaction")
    _value(body)["messages"][0]["reaction"]["emoji"] = ""
    adapter = WhatsAppAdapter()

    assert adapter.parse(body) == []
    assert adapter.skipped == [("entry[0].changes[0].value.messages[0]", "reaction removed from wamid.yzxyzx=")]


def test_played_status_counts_as_read_and_unknown_statuses_are_skipped() -> None:
    body = recorded("pywa/message_status/read")
    statuses = _value(body)["statuses"]
    statuses.append({**statuses[0], "status": "played"})
    statuses.append({**statuses[0], "status": "deleted"})
    adapter = WhatsAppAdapter()

    events = adapter.parse(body)

    assert [e.status for e in events] == [DeliveryStatus.READ, DeliveryStatus.READ]
    assert adapter.skipped == [("entry[0].changes[0].value.statuses[2]",
                                "status 'deleted' is not sent, delivered, read, played or failed")]


def test_group_status_is_threaded_by_the_group() -> None:
    body = recorded("pywa/message_status/delivered")
    _value(body)["statuses"][0] |= {"recipient_id": "120363418770915618@g.us", "recipient_type": "group"}

    [event] = WhatsAppAdapter().parse(body)

    assert event.thread_key == "group:120363418770915618@g.us"


def test_events_for_another_business_number_are_skipped() -> None:
    adapter = WhatsAppAdapter(external_id="999999999999")

    assert adapter.parse(recorded("pywa/messages/text")) == []
    assert adapter.skipped == [
        ("entry[0].changes[0]", "for business number 1122334455667, not this channel's 999999999999")]
    assert len(WhatsAppAdapter(external_id="1122334455667").parse(recorded("pywa/messages/text"))) == 1


def test_every_entry_and_change_is_read_and_other_fields_are_skipped() -> None:
    text, image = recorded("pywa/messages/text"), recorded("pywa/messages/image")
    other = copy.deepcopy(text["entry"][0]["changes"][0]) | {"field": "account_update"}
    body = {"object": "whatsapp_business_account",
            "entry": [text["entry"][0] | {"changes": [*text["entry"][0]["changes"], other]}, image["entry"][0]]}
    adapter = WhatsAppAdapter()

    events = adapter.parse(body)

    assert [e.text for e in events] == ["Body Text", ""]
    assert [e.occurred_at.minute for e in events] == [53, 56]
    assert adapter.skipped == [("entry[0].changes[1]", "field 'account_update' carries no messages")]


def test_same_bytes_parse_the_same() -> None:
    raw = recorded("restfb/webhook-incoming-message-document")

    assert WhatsAppAdapter().parse(raw) == WhatsAppAdapter().parse(json.loads(raw)) == WhatsAppAdapter().parse(
        raw.decode())


def _text_body(**message: Any) -> dict:
    body = recorded("pywa/messages/text")
    _value(body)["messages"][0].update(message)
    return body


@pytest.mark.parametrize(("payload", "message"), [
    (b"{", "not valid JSON"),
    ([], "must be a JSON object"),
    ({"object": "page", "entry": []}, "expected \"whatsapp_business_account\""),
    ({"object": "whatsapp_business_account"}, "no `entry` list"),
    ({"object": "whatsapp_business_account", "entry": ["x"]}, r"entry\[0\] is not an object"),
    ({"object": "whatsapp_business_account", "entry": [{"changes": {}}]}, "changes must be a list"),
    ({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {}}]}]},
     "metadata is not an object"),
    ({"object": "whatsapp_business_account",
      "entry": [{"changes": [{"field": "messages", "value": {"metadata": {}}}]}]}, "phone_number_id is missing"),
    (_text_body(id=None), r"messages\[0\].id is missing"),
    (_text_body(**{"from": None}), "names no customer"),
    (_text_body(text="hello"), "text is not an object"),
    (_text_body(text={"body": 5}), "text.body is not a string"),
    (_text_body(type="revoke"), "revoke is not an object"),
    (_text_body(type="edit", edit={"original_message_id": "wamid.1"}), "edit.message is not an object"),
])
def test_malformed_payloads_raise(payload: object, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        WhatsAppAdapter().parse(payload)


def test_unknown_message_type_is_skipped() -> None:
    adapter = WhatsAppAdapter()

    assert adapter.parse(_text_body(type="request_welcome")) == []
    assert adapter.skipped == [
        ("entry[0].changes[0].value.messages[0]", "message type 'request_welcome' is not handled")]
