"""Builders of `InboundEvent`s for ingest tests (the platform parsers are tested on real payloads)."""

from __future__ import annotations

import datetime as dt
import itertools

from channels.adapters.base import Author, Direction, EventKind, InboundEvent

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def author(n: int, **kwargs: str) -> Author:
    defaults = {"handle": f"user{n}", "display_name": f"User {n}"}
    return Author(platform="x", external_id=f"u{n}", **{**defaults, **kwargs})


def post(external_id: str | None = None, *, who: int = 1, thread: str | None = None, minutes: int = 0,
         text: str = "Mein Router blinkt rot", kind: EventKind = EventKind.MENTION, **kwargs) -> InboundEvent:
    external_id = external_id or f"t{next(_ids)}"
    return InboundEvent(
        platform="x", external_id=external_id, kind=kind, occurred_at=T0 + dt.timedelta(minutes=minutes),
        author=kwargs.pop("author", author(who)), text=text, thread_key=thread or external_id,
        **{"raw": {"id": external_id, "text": text}, **kwargs},
    )


def reply_from_us(external_id: str, *, thread: str, minutes: int, text: str = "Wir helfen gern! ^AB") -> InboundEvent:
    return InboundEvent(
        platform="x", external_id=external_id, kind=EventKind.REPLY, occurred_at=T0 + dt.timedelta(minutes=minutes),
        author=Author(platform="x", external_id="brand-1", handle="TelekomHilft"), text=text, thread_key=thread,
        direction=Direction.OUTBOUND, raw={"id": external_id},
    )


def edit(external_id: str, *, minutes: int, text: str) -> InboundEvent:
    return InboundEvent(
        platform="x", external_id=external_id, kind=EventKind.EDIT, occurred_at=T0 + dt.timedelta(minutes=minutes),
        text=text, raw={"edit_of": external_id, "text": text},
    )


def delete(external_id: str, *, minutes: int) -> InboundEvent:
    return InboundEvent(
        platform="x", external_id=external_id, kind=EventKind.DELETE, occurred_at=T0 + dt.timedelta(minutes=minutes),
        raw={"deleted": external_id},
    )


def batch(n: int, *, repeat_every: int = 10, start: int = 0) -> list[InboundEvent]:
    """n mentions from n - n/repeat_every authors, every tenth a reply in an earlier thread."""
    events = []
    for i in range(start, start + n):
        who = i - i // repeat_every
        thread = f"t-{start}-{i - 1}" if i % repeat_every == 5 and i > start else None
        events.append(post(f"t-{start}-{i}", who=who, thread=thread, minutes=i, text=f"message {i} " + "x" * 200,
                           reply_to_id=thread or ""))
    return events
