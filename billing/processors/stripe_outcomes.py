"""Reading Stripe's answers: PaymentIntents and card errors become Outcomes and catalog names.

Pure functions over decoded JSON, so the mapping can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from billing.domain.errors import ErrorName
from billing.processors.base import Outcome

# Stripe decline/error code -> (catalog name, hard decline). Codes not listed are generic declines.
# Hard means retrying the same card is pointless (the grace policy may stop retries).
DECLINE_CODES: Mapping[str, tuple[ErrorName, bool]] = MappingProxyType(
    {
        "card_declined": ("CARD_DECLINED", False),
        "generic_decline": ("CARD_DECLINED", False),
        "do_not_honor": ("CARD_DECLINED", False),
        "authentication_required": ("CARD_DECLINED", False),
        "insufficient_funds": ("INSUFFICIENT_FUNDS", False),
        "expired_card": ("CARD_EXPIRED", False),
        "lost_card": ("CARD_REPORTED_LOST_OR_STOLEN", True),
        "stolen_card": ("CARD_REPORTED_LOST_OR_STOLEN", True),
        "pickup_card": ("CARD_REPORTED_LOST_OR_STOLEN", True),
        "incorrect_number": ("INVALID_CARD_DATA", False),
        "invalid_number": ("INVALID_CARD_DATA", False),
        "invalid_expiry_month": ("INVALID_CARD_DATA", False),
        "invalid_expiry_year": ("INVALID_CARD_DATA", False),
        "invalid_cvc": ("INVALID_CARD_DATA", False),
        "incorrect_cvc": ("INVALID_CARD_DATA", False),
    }
)


def decline_of(error: Mapping[str, Any]) -> tuple[ErrorName, bool]:
    """(catalog name, hard) for a Stripe error object or `last_payment_error`.

    `decline_code` is the issuer's specific reason (e.g. insufficient_funds under a generic
    `code` of card_declined), so it wins over `code`.
    """
    for key in ("decline_code", "code"):
        value = error.get(key)
        if isinstance(value, str) and value in DECLINE_CODES:
            return DECLINE_CODES[value]
    return DECLINE_CODES["card_declined"]


def declined_outcome(error: Mapping[str, Any], reference: str | None) -> Outcome:
    """A failed Outcome for a Stripe card error."""
    name, hard = decline_of(error)
    return Outcome.declined(name, reference=reference, hard=hard)


def intent_reference(error: Mapping[str, Any]) -> str | None:
    """The PaymentIntent id a card error refers to, when Stripe includes it."""
    intent = error.get("payment_intent")
    if isinstance(intent, Mapping) and isinstance(intent.get("id"), str):
        return str(intent["id"])
    return None


def _charge_status(intent: Mapping[str, Any]) -> str | None:
    charge = intent.get("latest_charge")
    if isinstance(charge, Mapping):
        status = charge.get("status")
        return status if isinstance(status, str) else None
    return None


def intent_outcome(intent: Mapping[str, Any]) -> Outcome:
    """The Outcome a PaymentIntent stands for.

    `requires_capture` is an approved authorization. A `canceled` intent whose charge succeeded
    was an authorization that was voided later: the request itself succeeded.
    """
    reference = str(intent["id"])
    status = intent.get("status")
    error = intent.get("last_payment_error")
    if status in ("succeeded", "requires_capture"):
        return Outcome.succeeded(reference)
    if status == "processing":
        return Outcome.unknown(reference)
    if status == "canceled" and _charge_status(intent) == "succeeded":
        return Outcome.succeeded(reference)
    if isinstance(error, Mapping):
        return declined_outcome(error, reference)
    if status == "requires_action":
        # Off-session payments cannot complete a 3-D Secure challenge.
        return Outcome.declined(
            "CARD_DECLINED", reference=reference, message="The card requires authentication."
        )
    return Outcome.declined(
        "PROCESSOR_ERROR", reference=reference, message=f"The payment was left in status {status!s}."
    )


def refund_outcome(refund: Mapping[str, Any]) -> Outcome:
    """The Outcome a Refund object stands for: `pending` (and `requires_action`) is not final yet."""
    reference = str(refund["id"])
    status = refund.get("status")
    if status == "succeeded":
        return Outcome.succeeded(reference)
    if status in ("failed", "canceled"):
        reason = refund.get("failure_reason")
        return Outcome.declined(
            "REFUND_DECLINED",
            reference=reference,
            message=f"Stripe could not refund ({reason})." if isinstance(reason, str) else None,
        )
    return Outcome.unknown(reference)
