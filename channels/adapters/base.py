"""The adapter protocol: the one normalised event shape and the errors adapters may raise.

Every platform module in this package turns what its platform sends (a webhook body or a polled
page) into `InboundEvent`s. `parse` is pure: no ORM, no network. `channels.ingest.ingest` is the one
place that writes them.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import enum
import hashlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger("channels.adapters")


class EventKind(enum.StrEnum):
    """What an inbound event is. The first five create an interaction; edit and delete change one;
    status reports what became of a message we sent (sent, delivered, read, failed)."""

    POST = "post"
    REPLY = "reply"
    COMMENT = "comment"
    MENTION = "mention"
    DIRECT_MESSAGE = "dm"
    EDIT = "edit"
    DELETE = "delete"
    STATUS = "status"


CREATE_KINDS = frozenset(
    {EventKind.POST, EventKind.REPLY, EventKind.COMMENT, EventKind.MENTION, EventKind.DIRECT_MESSAGE}
)


class DeliveryStatus(enum.StrEnum):
    """What a platform reports of a message we sent (WhatsApp statuses, Messenger delivery and read)."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


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
    - `status`: only on a `status` event, whose `external_id` is the id of the message we sent; a failure's
      reason goes in `text`.
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
    status: DeliveryStatus | str = ""

    def problems(self) -> list[str]:
        """What makes this event unusable, in words; an empty list when it can be ingested."""
        found = []
        if not isinstance(self.external_id, str) or not self.external_id.strip():
            found.append("external_id is missing")
        elif len(self.external_id) > MAX_EXTERNAL_ID:
            found.append(f"external_id is longer than {MAX_EXTERNAL_ID} characters")
        if not isinstance(self.kind, str) or self.kind not in _KINDS:
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
        if self.kind == EventKind.STATUS and (not isinstance(self.status, str) or self.status not in _STATUSES):
            found.append(f"status {self.status!r} is not one of {', '.join(DeliveryStatus)}")
        if self.direction not in (Direction.INBOUND, Direction.OUTBOUND):
            found.append(f"direction {self.direction!r} is not 'in' or 'out'")
        return found


_KINDS = frozenset(EventKind)
_STATUSES = frozenset(DeliveryStatus)


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


class OutcomeUnknown(TransientError):
    """A send timed out after the request left: it may or may not have been posted. Never blindly resent."""


def hmac_digest(secret: str | bytes, body: bytes, algorithm: str = "sha256") -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, getattr(hashlib, algorithm)).digest()


def check_signature(given: str, expected: bytes, *, prefix: str = "", encoding: str = "hex") -> None:
    """Compare a signature header with the expected digest in constant time; SignatureError if they differ.

    `prefix` is the scheme the header carries (`sha256=`); `encoding` is `hex` or `base64`.
    """
    if not given:
        raise SignatureError("signature header is missing")
    if prefix:
        if not given.startswith(prefix):
            raise SignatureError(f"signature does not start with {prefix!r}")
        given = given[len(prefix):]
    text = expected.hex() if encoding == "hex" else base64.b64encode(expected).decode()
    if not hmac.compare_digest(given.strip().encode(), text.encode()):
        raise SignatureError("signature does not match the body")


def check_token(given: str, expected: str, what: str = "secret token") -> None:
    """Compare a shared secret sent in a header (Telegram's secret token) in constant time."""
    if not given:
        raise SignatureError(f"{what} header is missing")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignatureError(f"{what} does not match")


# Every call to a platform has these limits; no request waits longer.
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def retry_after(response: httpx.Response, *, default_seconds: int = 60) -> dt.datetime:
    """When a 429 says to come back: `Retry-After` (seconds or an HTTP date), else now + default."""
    now = dt.datetime.now(dt.UTC)
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return now + dt.timedelta(seconds=int(value))
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).astimezone(dt.UTC)
        except (TypeError, ValueError):
            pass
    return now + dt.timedelta(seconds=default_seconds)


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


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An incoming webhook request as the intake view saw it: method, lower-cased headers, query, raw body."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeResponse:
    """What to answer a platform's verification request (Meta's hub.challenge, X's CRC)."""

    body: str
    status: int = 200
    content_type: str = "text/plain"


@dataclasses.dataclass(frozen=True, slots=True)
class OutboundMessage:
    """An agent's reply to send. `idempotency_key` is stable across retries of the same reply.

    `recipient` is the identity answered (its platform id and scope), `thread_key` and `reply_to_id` are
    the external ids of the conversation and of the interaction answered, as ingest stored them.
    `private` is True for a direct message, False for a public reply.
    """

    idempotency_key: str
    text: str
    thread_key: str
    reply_to_id: str = ""
    recipient: Author | None = None
    private: bool = False
    attachments: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SendResult:
    """The platform's id of what we posted, and its answer as received."""

    external_id: str
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    thread_key: str = ""


class BaseAdapter:
    """What every platform adapter offers. Subclasses set `platform` and override what they support.

    An adapter is built for one channel account: `credentials` are its decrypted secrets, `config` its
    plain settings (page id, instance URL, ...). Nothing here touches the database.
    """

    platform: ClassVar[str] = ""
    pollable: ClassVar[bool] = False
    # How long after the customer's last message a private reply is allowed (WhatsApp and Messenger: 24 h).
    private_reply_window: ClassVar[dt.timedelta | None] = None
    # Longest text a reply may have on this platform (None: no limit we enforce).
    max_reply_length: ClassVar[int | None] = None
    # How long after a reply was queued `find_sent` can still be trusted (None: always), e.g. while the
    # platform remembers an idempotency key.
    find_sent_within: ClassVar[dt.timedelta | None] = None

    # Where the platform's API lives; `config["api_base_url"]` overrides it (a fake server in tests).
    api_base_url: ClassVar[str] = ""

    def __init__(self, *, external_id: str = "", credentials: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, webhook_secret: Mapping[str, Any] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.external_id = external_id
        self.credentials = dict(credentials or {})
        self.config = dict(config or {})
        self.webhook_secret = dict(webhook_secret or {})
        self._transport = transport
        # What `parse` met and left out (unknown event kinds, service messages), as (where, why).
        self.skipped: list[tuple[str, str]] = []

    def skip(self, where: str, why: str) -> None:
        """Record a part of a payload that is not an interaction (an unknown kind, a service message)."""
        self.skipped.append((where, why))
        logger.info("%s: skipped %s: %s", self.platform, where, why)

    def http(self) -> httpx.Client:
        """A client for the platform's API with the house timeouts (`config["http_timeout"]` seconds overrides
        them); close it (use it in a `with`)."""
        timeout = HTTP_TIMEOUT
        if isinstance(self.config.get("http_timeout"), int | float) and self.config["http_timeout"] > 0:
            timeout = httpx.Timeout(float(self.config["http_timeout"]), connect=min(5.0, self.config["http_timeout"]))
        return httpx.Client(
            base_url=self.config.get("api_base_url") or self.api_base_url, timeout=timeout,
            transport=self._transport, headers={"User-Agent": "socialcrm"},
        )

    def request(self, client: httpx.Client, method: str, url: str, *, sending: bool = False,
                **kwargs: Any) -> httpx.Response:
        """One API call with errors mapped to the adapter errors.

        Connection failures and 5xx are `TransientError`; 429 is `RateLimited` (see `rate_limit_reset`);
        other 4xx are `PermanentError`. With `sending=True` a timeout after the request may have reached
        the platform is `OutcomeUnknown`, so the caller never resends blindly.
        """
        try:
            response = client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise TransientError(f"{self.platform}: cannot connect: {exc}") from None
        except httpx.TimeoutException as exc:
            if sending:
                raise OutcomeUnknown(f"{self.platform}: no answer in time; the message may have been posted") from None
            raise TransientError(f"{self.platform}: timed out: {exc}") from None
        except httpx.TransportError as exc:
            if sending:
                raise OutcomeUnknown(f"{self.platform}: connection lost: {exc}") from None
            raise TransientError(f"{self.platform}: connection lost: {exc}") from None
        if response.status_code == 429:
            raise RateLimited(f"{self.platform}: rate limited (HTTP 429)", reset_at=self.rate_limit_reset(response))
        if response.status_code >= 500:
            raise TransientError(f"{self.platform}: HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise PermanentError(f"{self.platform}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def rate_limit_reset(self, response: httpx.Response) -> dt.datetime:
        """When a rate-limited account may call again; platforms with their own headers override this."""
        return retry_after(response)

    def parse(self, payload: Any) -> list[InboundEvent]:
        """Turn one webhook body or polled page (already decoded) into events. Pure."""
        raise NotImplementedError

    def fetch(self, cursor: Mapping[str, Any]) -> FetchResult:
        """Fetch the next page after `cursor` (network; never inside a transaction)."""
        raise NotImplementedError(f"{self.platform} cannot be polled")

    def verify_webhook(self, request: WebhookRequest) -> None:
        """Check a webhook's signature or secret against the raw body, in constant time.

        Raises SignatureError when it is missing or wrong, or when the account has no webhook secret:
        a channel without a secret refuses webhooks rather than skipping the check.
        """
        raise SignatureError(f"{self.platform} does not take webhooks")

    def handshake(self, request: WebhookRequest) -> HandshakeResponse | None:
        """The answer to a verification request (GET), or None when `request` is not one."""
        return None

    def send(self, message: OutboundMessage) -> SendResult:
        """Post a reply (network). Raises TransientError / RateLimited / OutcomeUnknown / PermanentError."""
        raise PermanentError(f"{self.platform}: sending is not supported")

    def find_sent(self, message: OutboundMessage) -> SendResult | None:
        """After an OutcomeUnknown: the reply if the platform shows it was posted, None if it was not.

        Adapters that cannot tell raise OutcomeUnknown again, and the reply waits for an agent's decision.
        """
        raise OutcomeUnknown(f"{self.platform}: cannot look up whether the reply was posted")

    def secret(self, key: str) -> str:
        """A webhook secret value; SignatureError when the account has none configured."""
        value = self.webhook_secret.get(key) or ""
        if not isinstance(value, str) or not value:
            raise SignatureError(f"channel account has no webhook secret {key!r}: webhooks are refused")
        return value
