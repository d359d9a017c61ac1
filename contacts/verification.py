"""The "Telekom hilft" flow: link a social identity to the CRM customer whose customer number the person gave in DM.

The agent asks the person, in a direct message, for their customer number and a few details (postal code, birth
date, last name). `identity_link_by_customer_number` finds the one live customer holding that number and checks
the details against its stored profile:

- a postal code matches when it occurs, as a whole token, in the postal address;
- a birth date matches when it equals the stored one;
- a last name matches when it equals the last token of the display name, ignoring case and accents.

A detail the profile holds nothing for (no address, no birth date, no name) neither matches nor contradicts. At
least one detail must match, none may contradict, and a last name alone is never enough (a display name is not
hard evidence): a postal code or a birth date must be among the matches. A refusal (`verification_failed`) says
neither which detail failed nor what is stored.

On success the identity moves to the CRM customer: when it is its customer's only identity and that customer has
no customer number of its own (the fresh customer ingest made for a new account), that customer is merged into
the CRM customer (`customer_merge`, undone by `customer_unmerge`); otherwise only the identity is linked over
(`identity_link`). Either way a `link` audit event records the verified customer number: its `moved` holds the
usual link layout (`identity_ids`, `from_customer_id`, `to_customer_id`) plus `verified_by: "customer_number"`,
`customer_number`, `evidence` (the names of the details that matched, never their values), `actor`, `via`
("merge" or "link") and `move_event_id` (the merge or link event that moved the identity, which is what an undo
inverts). Everything runs in one transaction, so a refusal anywhere writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Replace, Upper

from socialcrm.errors import Conflict, NotFound, ServiceError

from .merge import (
    Actor,
    ErrorCode,
    _actor_fields,
    _lock_customers,
    _lock_identity,
    _pk,
    _retry_deadlocks,
    customer_merge,
    identity_link,
)
from .models import AuditEvent, Customer, SocialIdentity

logger = logging.getLogger(__name__)

VERIFIED_REASON = "customer number verified in DM"
VERIFIED_BY = "customer_number"
EVIDENCE_ITEMS = ("postal_code", "birth_date", "last_name")
# A match on one of these is required: a last name comes from a display name, which is never hard evidence.
HARD_EVIDENCE = frozenset({"postal_code", "birth_date"})
_FAILED = "The details given do not match the customer with this customer number."


class VerificationErrorCode(enum.StrEnum):
    """Stable codes of the errors raised here, besides those of `contacts.merge` (the API maps them to 4xx)."""

    CUSTOMER_NUMBER_INVALID = "customer_number_invalid"
    CUSTOMER_NUMBER_UNKNOWN = "customer_number_unknown"
    CUSTOMER_NUMBER_AMBIGUOUS = "customer_number_ambiguous"
    EVIDENCE_REQUIRED = "evidence_required"
    INVALID_EVIDENCE = "invalid_evidence"
    VERIFICATION_FAILED = "verification_failed"


@dataclasses.dataclass(frozen=True, slots=True)
class CustomerNumberLink:
    """The outcome of `identity_link_by_customer_number`.

    `changed` is False when the identity already belonged to the customer (nothing was written; both events are
    None). Otherwise `event` is the verification's `link` event and `move_event` the merge or link event that
    moved the identity (`merged` says which).
    """

    identity_id: int
    customer_id: int
    changed: bool
    merged: bool
    event: AuditEvent | None
    move_event: AuditEvent | None


# --- normalisation ---------------------------------------------------------------------------------------------


def customer_number_normalize(value: str) -> str:
    """A customer number as compared: without spaces and dashes, upper case."""
    return re.sub(r"[\s\-]+", "", value).upper()


def _normalized_number_sql() -> Upper:
    """`customer_number_normalize` in SQL (spaces and ASCII dashes only, as stored numbers are typed)."""
    return Upper(Replace(Replace("customer_number", Value(" "), Value("")), Value("-"), Value("")))


def _fold(text: str) -> str:
    """Case- and accent-insensitive form of a name: NFKD without combining marks, case-folded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _last_token(name: str) -> str:
    tokens = [t.strip(".,;:()\"'") for t in name.split()]
    tokens = [t for t in tokens if t]
    return _fold(tokens[-1]) if tokens else ""


def _postal_tokens(text: str) -> str:
    return " ".join(text.upper().split())


# --- lookup ----------------------------------------------------------------------------------------------------


def customers_holding_number(customer_number: str) -> list[int]:
    """Ids of the live (non-tombstone) customers whose customer number normalises to that of `customer_number`.

    Raises `ServiceError` (`customer_number_invalid`) when nothing is left of it after normalising.
    """
    normalized = customer_number_normalize(customer_number)
    if not normalized:
        raise ServiceError("Give a customer number.", code=VerificationErrorCode.CUSTOMER_NUMBER_INVALID,
                           field="customer_number")
    return list(
        Customer.objects.filter(merged_into__isnull=True).exclude(customer_number="")
        .annotate(number_key=_normalized_number_sql()).filter(number_key=normalized)
        .order_by("pk").values_list("pk", flat=True)[:2]
    )


def customer_number_holder(customer_number: str) -> int:
    """The id of the one live customer holding `customer_number`.

    Raises `NotFound` (`customer_number_unknown`) when no live customer holds it, `Conflict`
    (`customer_number_ambiguous`) when several do (a data problem for a person to resolve first).
    """
    holders = customers_holding_number(customer_number)
    if not holders:
        raise NotFound("No customer has this customer number.", code=VerificationErrorCode.CUSTOMER_NUMBER_UNKNOWN,
                       field="customer_number")
    if len(holders) > 1:
        raise Conflict("Several customers have this customer number; merge or correct them first.",
                       code=VerificationErrorCode.CUSTOMER_NUMBER_AMBIGUOUS, field="customer_number")
    return holders[0]


# --- verification ----------------------------------------------------------------------------------------------


def _clean_evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    """The supplied items, without blanks; birth dates as dates. Unknown items are refused, naming them."""
    cleaned: dict[str, Any] = {}
    for name, value in evidence.items():
        if name not in EVIDENCE_ITEMS:
            raise ServiceError(f"unknown evidence {name!r}; give any of {', '.join(EVIDENCE_ITEMS)}",
                               code=VerificationErrorCode.INVALID_EVIDENCE, field=f"evidence.{name}")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name == "birth_date":
            if isinstance(value, str):
                try:
                    value = dt.date.fromisoformat(value.strip())
                except ValueError:
                    raise ServiceError("a birth date is an ISO date (YYYY-MM-DD)",
                                       code=VerificationErrorCode.INVALID_EVIDENCE, field="birth_date") from None
            if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
                raise ServiceError("a birth date is a date", code=VerificationErrorCode.INVALID_EVIDENCE,
                                   field="birth_date")
        elif not isinstance(value, str):
            raise ServiceError(f"{name.replace('_', ' ')} is text", code=VerificationErrorCode.INVALID_EVIDENCE,
                               field=name)
        cleaned[name] = value
    if not cleaned:
        raise ServiceError(f"Give at least one of {', '.join(EVIDENCE_ITEMS)}: what the customer told you in DM.",
                           code=VerificationErrorCode.EVIDENCE_REQUIRED, field="evidence")
    return cleaned


def _compare(customer: Customer, name: str, value: Any) -> bool | None:
    """True if the item matches the stored profile, False if it contradicts it, None if nothing is stored."""
    if name == "postal_code":
        address = _postal_tokens(customer.postal_address)
        code = _postal_tokens(value)
        if not address:
            return None
        return re.search(rf"(?<![0-9A-Z]){re.escape(code)}(?![0-9A-Z])", address) is not None
    if name == "birth_date":
        return None if customer.birth_date is None else customer.birth_date == value
    stored = _last_token(customer.display_name)
    return None if not stored else _last_token(value) == stored


def evidence_verify(customer: Customer, evidence: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of the supplied items that match `customer`'s profile, if they verify the person.

    Raises `Conflict` (`verification_failed`) when an item contradicts the profile, when none matches, or when
    only the last name does; the message names neither the item nor a stored value.
    """
    supplied = _clean_evidence(evidence)
    outcomes = {name: _compare(customer, name, value) for name, value in supplied.items()}
    matched = tuple(name for name in EVIDENCE_ITEMS if outcomes.get(name) is True)
    if any(outcome is False for outcome in outcomes.values()) or not HARD_EVIDENCE.intersection(matched):
        raise Conflict(_FAILED, code=VerificationErrorCode.VERIFICATION_FAILED, field="customer_number")
    return matched


# --- the service -----------------------------------------------------------------------------------------------


@_retry_deadlocks
def identity_link_by_customer_number(*, identity: SocialIdentity | int, customer_number: str,
                                     evidence: Mapping[str, Any], actor: Actor,
                                     reason: str = "") -> CustomerNumberLink:
    """Verify the details a person gave in DM against the customer holding `customer_number`, then move the
    identity there (see the module docstring); returns what happened.

    Idempotent: when the identity already belongs to that customer, nothing is written (`changed` False). Raises
    `NotFound` for an unknown identity (`identity_not_found`) or customer number (`customer_number_unknown`),
    `Conflict` for failed verification (`verification_failed`), a number held by several customers
    (`customer_number_ambiguous`) or a concurrent move of the identity (`identity_moved`), and `ServiceError`
    (400) for missing or malformed evidence.
    """
    identity_id = _pk(identity, "identity", ErrorCode.IDENTITY_NOT_FOUND)
    actor_fields = _actor_fields(actor)
    _clean_evidence(evidence)  # malformed input is a 400 before anything is looked up
    full_reason = f"{VERIFIED_REASON}: {reason.strip()}" if reason.strip() else VERIFIED_REASON
    with transaction.atomic():
        holder_id = customer_number_holder(customer_number)
        owner_id = SocialIdentity.objects.filter(pk=identity_id).values_list("customer_id", flat=True).first()
        if owner_id is None:
            raise NotFound(f"social identity {identity_id} does not exist", code=ErrorCode.IDENTITY_NOT_FOUND,
                           field="identity")
        customers = _lock_customers([owner_id, holder_id])
        holder = customers.get(holder_id)
        if holder is None or holder.merged_into_id is not None or (
            customer_number_normalize(holder.customer_number) != customer_number_normalize(customer_number)
        ):
            raise Conflict("The customer with this customer number changed meanwhile; try again.",
                           code=ErrorCode.MERGE_STATE_CHANGED, field="customer_number")
        matched = evidence_verify(holder, evidence)
        _lock_identity(identity_id, owner_id)
        if owner_id == holder_id:
            return CustomerNumberLink(identity_id=identity_id, customer_id=holder_id, changed=False, merged=False,
                                      event=None, move_event=None)
        owner = customers[owner_id]
        # Every move of an identity locks its customer first, so this count cannot change under us.
        alone = not SocialIdentity.objects.filter(customer_id=owner_id).exclude(pk=identity_id).exists()
        merged = alone and not owner.customer_number.strip()
        if merged:
            move_event = customer_merge(target=holder_id, source=owner_id, actor=actor, reason=full_reason)
        else:
            move_event = identity_link(identity=identity_id, customer=holder_id, actor=actor, reason=full_reason)
        event = AuditEvent.objects.create(
            kind=AuditEvent.Kind.LINK, customer_id=holder_id, source_customer_id=owner_id, reason=full_reason,
            moved={
                "identity_ids": [identity_id],
                "from_customer_id": owner_id,
                "to_customer_id": holder_id,
                "verified_by": VERIFIED_BY,
                "customer_number": holder.customer_number,
                "evidence": list(matched),
                "actor": actor_fields["actor_label"],
                "actor_id": actor_fields["actor"].pk if actor_fields["actor"] is not None else None,
                "via": "merge" if merged else "link",
                "move_event_id": move_event.pk,
            },
            **actor_fields,
        )
    logger.info("identity %s verified by customer number and %s customer %s (event %s)", identity_id,
                "merged into" if merged else "linked to", holder_id, event.pk)
    return CustomerNumberLink(identity_id=identity_id, customer_id=holder_id, changed=True, merged=merged,
                              event=event, move_event=move_event)
