"""The payment processor protocol and the values that cross it.

A processor turns card data into a reusable token, places and voids authorizations,
charges tokens and answers "what happened to the request with this idempotency key?".
Processors hold no database state; one instance serves a whole process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from billing.domain.errors import spec

OutcomeStatus = Literal["succeeded", "failed", "unknown"]


@dataclass(frozen=True, repr=False)
class CardInfo:
    """Raw card data as the cardholder typed it. Lives only as long as one tokenize call.

    The representation masks everything but the last four digits so that a stray log line or
    traceback never carries a card number, CVV or holder name.
    """

    number: str
    exp_month: int
    exp_year: int
    cvv: str
    holder_name: str

    @property
    def last4(self) -> str:
        """The last four digits of the card number."""
        return self.number[-4:]

    def __repr__(self) -> str:
        return (
            f"CardInfo(number='****{self.last4}', exp_month={self.exp_month}, "
            f"exp_year={self.exp_year}, cvv='***', holder_name='***')"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class CardToken:
    """A processor's reusable handle on a card; safe to store and to log."""

    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class Outcome:
    """What a processor said about one authorization or charge.

    `unknown` means the answer never arrived (timeout, reset, 5xx): the money may or may not
    have moved, and only `PaymentProcessor.lookup` with the same idempotency key can tell.
    `decline_code` is an error-catalog code (e.g. "7303"), never a processor's own code.
    """

    status: OutcomeStatus
    reference: str | None = None
    decline_code: str | None = None
    decline_message: str | None = None
    hard_decline: bool = False

    @classmethod
    def succeeded(cls, reference: str) -> Outcome:
        """The processor approved; `reference` identifies the authorization or charge there."""
        return cls(status="succeeded", reference=reference)

    @classmethod
    def declined(
        cls,
        name: str,
        *,
        reference: str | None = None,
        hard: bool = False,
        message: str | None = None,
    ) -> Outcome:
        """A definite refusal, described by the error-catalog row `name` (e.g. "INSUFFICIENT_FUNDS")."""
        row = spec(name)
        return cls(
            status="failed",
            reference=reference,
            decline_code=row.code,
            decline_message=message or row.message,
            hard_decline=hard,
        )

    @classmethod
    def unknown(cls, reference: str | None = None) -> Outcome:
        """No answer arrived; reconcile with `lookup` before doing anything else."""
        return cls(status="unknown", reference=reference)


@runtime_checkable
class PaymentProcessor(Protocol):
    """What the engine needs from a payment processor.

    Declines are outcomes, not exceptions. `charge` never raises for transport trouble: it answers
    `Outcome(status="unknown")`. `tokenize`, `authorize`, `void` and `lookup` raise
    `BillingError("PROCESSOR_ERROR")` when the processor cannot be reached.
    """

    slug: str

    def is_token(self, token: str) -> bool:
        """True when `token` has the shape of a token this processor issues (no network call).

        Lets a merchant-supplied token be refused before it is stored; it does not prove the
        card exists or works.
        """
        ...

    async def tokenize(self, card: CardInfo, *, customer_ref: str) -> CardToken:
        """Turn card data into a reusable token; raises BillingError for bad or refused cards."""
        ...

    async def authorize(
        self, token: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome:
        """Place a hold for the amount without moving money."""
        ...

    async def void(self, reference: str) -> None:
        """Release an authorization; voiding an already voided one is a no-op."""
        ...

    async def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        description: str = "",
    ) -> Outcome:
        """Move money. The same key always yields the same outcome and never a second charge."""
        ...

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """The outcome of the request made with this key, or None if the processor never saw it."""
        ...

    async def refund(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str, reason: str = ""
    ) -> Outcome:
        """Give back part or all of the charge `reference`. Like `charge`: the same key never
        refunds twice, a refusal is `failed` and no answer is `unknown` (never an exception)."""
        ...

    async def void_charge(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome | None:
        """Release the whole charge `reference` before it settles, under the key's discipline;
        None, without any call, when this processor cannot void captured charges (refund then)."""
        ...

    async def lookup_refund(self, reference: str, idempotency_key: str) -> Outcome | None:
        """The outcome of the refund or void of `reference` made with this key; None if never seen."""
        ...

    async def aclose(self) -> None:
        """Release connections; the instance is unusable afterwards."""
        ...
