"""What the reply composer needs beyond the form: canned responses with their variables filled in, the agent's
signature, and the platform's rules (longest reply, private-reply window) exactly as the channels app enforces
them when the reply is queued.

The limits are not kept here: they come from the platform's adapter (`max_reply_length`,
`private_reply_window`), which is what `channels.services.reply_queue` checks, so the counter in the page and
the refusal on the server can never disagree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping

from django.contrib.auth.models import AbstractBaseUser

from channels.adapters import adapter_class
from channels.adapters.base import BaseAdapter
from channels.models import ChannelAccount
from contacts.models import Customer, SocialIdentity
from conversations.models import Interaction

# `{name}` placeholders of a canned response. Filled by plain substitution, never by str.format: a response's
# text is written by people, and `{customer_name.__class__}` must stay text, not reach into objects.
_VARIABLE = re.compile(r"\{([a-z_]{1,32})\}")
# Platforms whose handles are written "@handle" in a reply.
_AT_HANDLE_PLATFORMS = frozenset({"x", "instagram", "mastodon", "telegram"})
SIGNATURE_MAX_LENGTH = 40


def agent_initials(user: AbstractBaseUser) -> str:
    """Two letters for the agent: first and last name's initials, else the first two of the user name."""
    first = (getattr(user, "first_name", "") or "").strip()
    last = (getattr(user, "last_name", "") or "").strip()
    if first and last:
        return (first[0] + last[0]).upper()
    letters = [c for c in (first or last or user.get_username()) if c.isalnum()]
    return "".join(letters[:2]).upper()


def agent_name(user: AbstractBaseUser) -> str:
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def default_signature(user: AbstractBaseUser) -> str:
    """The sign-off Telekom-hilft-style teams put under every public answer: "^AB"."""
    return f"^{agent_initials(user)}"


def written_handle(identity: SocialIdentity | None) -> str:
    """The identity's handle as one writes it in a reply on its platform ("@anna" on X, "anna" elsewhere)."""
    if identity is None or not identity.handle:
        return ""
    handle = identity.handle
    if identity.platform in _AT_HANDLE_PLATFORMS and not handle.startswith("@"):
        return f"@{handle}"
    return handle


def canned_variables(*, customer: Customer | None, identity: SocialIdentity | None,
                     agent: AbstractBaseUser) -> dict[str, str]:
    """The values of a canned response's variables for one conversation and one agent."""
    customer_name = ""
    if customer is not None and customer.display_name:
        customer_name = customer.display_name
    elif identity is not None:
        customer_name = identity.display_name or identity.handle
    return {
        "customer_name": customer_name,
        "first_name": customer_name.split()[0] if customer_name.split() else "",
        "handle": written_handle(identity),
        "agent_name": agent_name(agent),
        "agent_initials": agent_initials(agent),
        "customer_number": customer.customer_number if customer is not None else "",
    }


def canned_fill(text: str, variables: Mapping[str, str]) -> str:
    """`text` with every known `{variable}` replaced; unknown ones are left as they are."""
    return _VARIABLE.sub(lambda match: variables.get(match.group(1), match.group(0)), text)


def signed(text: str, *, signature: str, sign: bool) -> str:
    """The text as it is sent: the signature appended after a space when `sign` is on.

    An empty text stays empty, so the reply is refused as empty rather than sent as a bare signature.
    """
    text = (text or "").strip()
    signature = (signature or "").strip()
    if not text or not sign or not signature:
        return text
    return f"{text} {signature}"


def _adapter(account: ChannelAccount) -> BaseAdapter | None:
    """The account's adapter built from its plain settings only (a limit may depend on them, as Mastodon's
    does); the secrets are neither needed nor decrypted for a page view."""
    try:
        return adapter_class(account.platform)(external_id=account.external_id, config=account.config or {})
    except KeyError:
        return None


def reply_limit(account: ChannelAccount) -> int | None:
    """The longest reply the account's platform takes (None: no limit we enforce), as `reply_queue` checks it."""
    adapter = _adapter(account)
    return adapter.max_reply_length if adapter is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class ReplyWindow:
    """The platform's window for private replies (WhatsApp, Messenger: 24 hours after the customer's last
    message). `applies` is False when the platform has none or the next reply is public."""

    applies: bool
    closes_at: dt.datetime | None = None
    is_open: bool = False


def reply_window(account: ChannelAccount, last_inbound: Interaction | None, *, now: dt.datetime) -> ReplyWindow:
    """The window the next reply in a conversation falls under, worked out as `reply_queue` does: a reply is
    private when the newest inbound message was a direct message, and a private reply needs that message to be
    younger than the platform's window."""
    adapter = _adapter(account)
    window = adapter.private_reply_window if adapter is not None else None
    if window is None:
        return ReplyWindow(applies=False)
    if last_inbound is None:
        return ReplyWindow(applies=True)
    if last_inbound.kind != Interaction.Kind.DIRECT_MESSAGE:
        return ReplyWindow(applies=False)
    closes_at = last_inbound.occurred_at + window
    return ReplyWindow(applies=True, closes_at=closes_at, is_open=closes_at >= now)
