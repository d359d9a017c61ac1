"""The adapter protocol: the one normalised event shape and the errors adapters may raise.

Every platform module in this package turns what its platform sends (a webhook body or a polled
page) into `InboundEvent`s. `parse` is pure: no ORM, no network. `channels.ingest.ingest` is the one
place that writes them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping


class EventKind(enum.StrEnum):
    """What an inbound event is. The first five create an interaction; edit and delete change one."""

    POST = "post"
    REPLY = "reply"
    COMMENT = "comment"
    MENTION = "mention"
    DIRECT_MESSAGE = "dm"
    EDIT = "edit"
    DELETE = "delete"


CREATE_KINDS = frozenset(
    {EventKind.POST, EventKind.REPLY, EventKind.COMMENT, EventKind.MENTION, EventKind.DIRECT_MESSAGE}
)


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


# Limits every event must keep; longer text is cut (and the cut recorded), never dropped.
MAX_EXTERNAL_ID = 255
MAX_TEXT = 65_536
MAX_HANDLE = 255


@dataclasses.dataclass(frozen=True, slots=True)
class Author:
    """The account that wrote an event, as the platform names it.

    `external_id` is the platform's user id as an opaque string. `scope` is set where the platform's ids
    are not global: a Messenger page id (page-scoped ids), a Mastodon instance host, a WhatsApp business
    number id. It is empty for X and Telegram, whose user ids are global.
    """

    platform: str
    external_id: str
    scope: str = ""
    handle: str = ""
    display_name: str = ""
    avatar_url: str = ""
    profile_url: str = ""
    raw: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InboundEvent:
    """One thing that happened on a platform, in the one shape ingest understands.

    - `external_id`: the platform's id of the message / post / comment, unique per channel account. For
      `edit` and `delete` it is the id of the object that changed.
    - `occurred_at`: the platform's time of the event (for an edit, the edit time; for a delete, the
      delete time, or the receive time when the platform gives none).
    - `thread_key`: what groups events into one conversation on the channel account (an X conversation
      id, a Facebook post id, a Telegram chat id, a Mastodon root status, an e-mail root Message-ID).
      Empty on an edit or delete that does not say where it belongs.
    - `reply_to_id`: the external id this event answers, if any.
    - `direction`: `out` for our own messages seen on the platform (echoes, page replies).
    """

    platform: str
    external_id: str
    kind: EventKind
    occurred_at: dt.datetime
    author: Author | None = None
    text: str = ""
    thread_key: str = ""
    reply_to_id: str = ""
    direction: Direction = Direction.INBOUND
    attachments: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def problems(self) -> list[str]:
        """What makes this event unusable, in words; an empty list when it can be ingested."""
        found = []
        if not isinstance(self.external_id, str) or not self.external_id.strip():
            found.append("external_id is missing")
        elif len(self.external_id) > MAX_EXTERNAL_ID:
            found.append(f"external_id is longer than {MAX_EXTERNAL_ID} characters")
        try:
            EventKind(self.kind)
        except ValueError:
            found.append(f"kind {self.kind!r} is not one of {', '.join(k.value for k in EventKind)}")
        if not isinstance(self.occurred_at, dt.datetime) or self.occurred_at.tzinfo is None:
            found.append("occurred_at must be a timezone-aware datetime")
        if not isinstance(self.text, str):
            found.append("text must be a string")
        if self.kind in CREATE_KINDS and not self.thread_key:
            found.append("thread_key is missing")
        if len(self.thread_key or "") > MAX_EXTERNAL_ID:
            found.append(f"thread_key is longer than {MAX_EXTERNAL_ID} characters")
        if self.author is not None and (not isinstance(self.author.external_id, str) or not self.author.external_id):
            found.append("author.external_id is missing")
        if self.direction not in (Direction.INBOUND, Direction.OUTBOUND):
            found.append(f"direction {self.direction!r} is not 'in' or 'out'")
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class FetchResult:
    """One polled page: its events, the cursor to store once they are stored, and whether more is waiting."""

    events: list[InboundEvent]
    cursor: dict[str, Any]
    has_more: bool = False


class AdapterError(Exception):
    """Base of every error an adapter raises."""


class PayloadError(AdapterError):
    """The payload cannot be understood; retrying will not help."""


class SignatureError(AdapterError):
    """A webhook's signature or secret is missing or wrong."""


class TransientError(AdapterError):
    """A timeout, a connection error or a 5xx: worth retrying with backoff."""


class RateLimited(TransientError):
    """The platform asked us to wait until `reset_at`."""

    def __init__(self, message: str, *, reset_at: dt.datetime) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class PermanentError(AdapterError):
    """The platform refused for good (bad credentials, a deleted object): do not retry."""


def decode_payload(payload: Any, platform_label: str) -> Any:
    """A payload as Python data: bytes and str are JSON-decoded, anything else is returned as it is."""
    if isinstance(payload, bytes | bytearray | memoryview):
        payload = bytes(payload)
    if isinstance(payload, bytes | str):
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise PayloadError(f"{platform_label} payload is not valid JSON: {exc}") from None
    return payload


class BaseAdapter:
    """What every platform adapter offers. Subclasses set `platform` and override what they support.

    An adapter is built for one channel account: `credentials` are its decrypted secrets, `config` its
    plain settings (page id, instance URL, ...). Nothing here touches the database.
    """

    platform: ClassVar[str] = ""
    pollable: ClassVar[bool] = False

    def __init__(self, *, external_id: str = "", credentials: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self.external_id = external_id
        self.credentials = dict(credentials or {})
        self.config = dict(config or {})

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one webhook body or polled page (already decoded) into events. Pure."""
        raise NotImplementedError

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """Fetch the next page after `cursor` (network; never inside a transaction)."""
        raise NotImplementedError(f"{self.platform} cannot be polled")
