"""The built-in sandbox processor: deterministic test cards, no network.

The card's behaviour is decided once, at tokenize time, from the test card number, and travels
inside the token (`tok_sbx_<scenario>_<random>`), so any sandbox instance in any process
treats the token the same way and the card number itself is never kept. Tests can make a token
behave differently later with `set_scenario` ("the card that now declines").
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from billing.domain.clock import Clock, SystemClock
from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, CardToken, Outcome
from billing.processors.cards import card_brand, check_card, full_exp_year
from billing.processors.sandbox_ledger import InMemorySandboxLedger, LedgerEntry, Operation, SandboxLedger

TOKEN_PREFIX = "tok_sbx_"  # noqa: S105 - the shape of a card token, not a credential
_TOKEN_RANDOM = re.compile(r"[0-9a-z]{1,64}")
_TOKEN_LETTERS = 16


class SandboxScenario(StrEnum):
    """How a sandbox card answers authorizations and charges."""

    APPROVE = "approve"
    DECLINE = "decline"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    # Verifies (tokenize and authorize succeed) but every charge declines.
    CHARGES_DECLINE = "charges_decline"
    # The first answer to each charge is lost (`unknown`); the money did move.
    PROCESSING_ERROR = "processing_error"
    STOLEN = "stolen"
    # Charges succeed; every refund or void of them is refused.
    REFUNDS_DECLINE = "refunds_decline"
    # Charges succeed; the first answer to each refund or void is lost (`unknown`); it did happen.
    REFUND_ANSWER_LOST = "refund_answer_lost"


TEST_CARDS: Mapping[str, SandboxScenario] = MappingProxyType(
    {
        "4242424242424242": SandboxScenario.APPROVE,
        "4000000000000002": SandboxScenario.DECLINE,
        "4000000000009995": SandboxScenario.INSUFFICIENT_FUNDS,
        "4000000000000069": SandboxScenario.EXPIRED_CARD,
        "4000000000000341": SandboxScenario.CHARGES_DECLINE,
        "4000000000000119": SandboxScenario.PROCESSING_ERROR,
        "4100000000000019": SandboxScenario.STOLEN,
        "4000000000005126": SandboxScenario.REFUNDS_DECLINE,
        "4000000000007726": SandboxScenario.REFUND_ANSWER_LOST,
    }
)
"""Test card numbers; any other Luhn-valid number approves."""

# Scenarios that refuse both authorizations and charges: (catalog name, hard decline).
_REFUSALS: Mapping[SandboxScenario, tuple[str, bool]] = MappingProxyType(
    {
        SandboxScenario.DECLINE: ("CARD_DECLINED", False),
        SandboxScenario.INSUFFICIENT_FUNDS: ("INSUFFICIENT_FUNDS", False),
        SandboxScenario.EXPIRED_CARD: ("CARD_EXPIRED", False),
        SandboxScenario.STOLEN: ("CARD_REPORTED_LOST_OR_STOLEN", True),
    }
)


def scenario_in_token(token: str) -> SandboxScenario | None:
    """The scenario encoded in a sandbox token, or None if `token` is not one."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    scenario, separator, random = token.removeprefix(TOKEN_PREFIX).rpartition("_")
    if not separator or not _TOKEN_RANDOM.fullmatch(random):
        return None
    try:
        return SandboxScenario(scenario)
    except ValueError:
        return None


def is_sandbox_token(token: str) -> bool:
    """True when `token` has the shape the sandbox mints (`tok_sbx_<scenario>_<random>`)."""
    return scenario_in_token(token) is not None


def _token_random() -> str:
    """The random part of a new token: letters only, so no token ever holds a digit run that
    could be mistaken for (or hide) a card number."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(_TOKEN_LETTERS))


def _decide(scenario: SandboxScenario, operation: Operation, reference: str) -> Outcome:
    """The true outcome of one request; what the caller is first told may differ (see charge)."""
    if scenario in _REFUSALS:
        name, hard = _REFUSALS[scenario]
        return Outcome.declined(name, reference=reference, hard=hard)
    if scenario is SandboxScenario.CHARGES_DECLINE and operation == "charge":
        return Outcome.declined("CARD_DECLINED", reference=reference)
    return Outcome.succeeded(reference)


class SandboxProcessor:
    """Deterministic in-process processor for development, demos and tests.

    `ledger` stores every decided outcome by idempotency key (an in-memory one by default);
    `clock` supplies "now" for the card-expiry check (the system clock unless given).
    """

    slug = "sandbox"

    def __init__(
        self,
        ledger: SandboxLedger | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.ledger: SandboxLedger = ledger if ledger is not None else InMemorySandboxLedger()
        self._clock = clock or SystemClock()
        self._overrides: dict[str, SandboxScenario] = {}

    def set_scenario(self, token: str, scenario: SandboxScenario) -> None:
        """Make `token` behave as `scenario` from now on, in this instance only.

        Outcomes already in the ledger are not rewritten: a retried key still answers as before.
        """
        self._overrides[token] = scenario

    def clear_scenario(self, token: str) -> None:
        """Return `token` to the behaviour encoded in it."""
        self._overrides.pop(token, None)

    def scenario_of(self, token: str) -> SandboxScenario | None:
        """The behaviour `token` has right now (override first), or None for a foreign token."""
        return self._overrides.get(token) or scenario_in_token(token)

    def is_token(self, token: str) -> bool:
        """True for the shape of a sandbox token, whichever sandbox instance minted it."""
        return is_sandbox_token(token)

    async def tokenize(self, card: CardInfo, *, customer_ref: str) -> CardToken:
        """Check the card and mint a token carrying its scenario; declines happen later, at authorize."""
        check_card(card, self._clock.now())
        scenario = TEST_CARDS.get(card.number, SandboxScenario.APPROVE)
        return CardToken(
            token=f"{TOKEN_PREFIX}{scenario.value}_{_token_random()}",
            brand=card_brand(card.number),
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=full_exp_year(card.exp_year),
        )

    async def authorize(
        self, token: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome:
        """Place a (pretend) hold; refusing cards decline here, so verification catches them."""
        return await self._settle("authorize", token, amount_minor, currency, idempotency_key, "")

    async def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        description: str = "",
    ) -> Outcome:
        """Charge the token; a known key returns its stored outcome and charges nothing."""
        return await self._settle("charge", token, amount_minor, currency, idempotency_key, description)

    async def void(self, reference: str) -> None:
        """Release an authorization; repeating a void is harmless."""
        entry = await self.ledger.find_by_reference(reference)
        if entry is None:
            raise BillingError("PROCESSOR_ERROR", message="No sandbox authorization has this reference.")
        if entry.operation != "authorize":
            raise BillingError("STATE_CONFLICT", message="Only authorizations can be voided.")
        await self.ledger.mark_voided(entry.idempotency_key)

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """The stored (true) outcome for the key, or None if this sandbox never saw it."""
        entry = await self.ledger.get(idempotency_key)
        return entry.outcome if entry is not None else None

    async def refund(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str, reason: str = ""
    ) -> Outcome:
        """Refund part or all of a sandbox charge; a known key answers its stored outcome."""
        return await self._give_back("refund", reference, amount_minor, currency, idempotency_key, reason)

    async def void_charge(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome | None:
        """Void the whole of a sandbox charge (the sandbox can, before settlement)."""
        return await self._give_back("void", reference, amount_minor, currency, idempotency_key, "")

    async def lookup_refund(self, reference: str, idempotency_key: str) -> Outcome | None:
        """The stored outcome of the refund or void made with the key, if it was made."""
        entry = await self.ledger.get(idempotency_key)
        if entry is None or entry.target != reference:
            return None
        return entry.outcome

    async def aclose(self) -> None:
        """Nothing to release: the sandbox holds no connections."""

    async def _give_back(
        self,
        operation: Operation,
        reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        reason: str,
    ) -> Outcome:
        if amount_minor <= 0:
            raise BillingError("GREATER_THAN_ZERO", field="amount")
        charged = await self.ledger.find_by_reference(reference)
        if charged is None or charged.operation != "charge" or charged.outcome.status != "succeeded":
            return Outcome.declined(
                "REFUND_DECLINED", message="No succeeded sandbox charge has this reference."
            )
        scenario = self.scenario_of(charged.token)
        given = f"{'vd' if operation == 'void' else 're'}_sbx_{secrets.token_hex(8)}"
        if charged.voided or amount_minor > charged.amount_minor or currency != charged.currency:
            outcome = Outcome.declined("REFUND_DECLINED", reference=given)
        elif operation == "void" and amount_minor != charged.amount_minor:
            outcome = Outcome.declined("REFUND_DECLINED", reference=given, message="A void releases it all.")
        elif scenario is SandboxScenario.REFUNDS_DECLINE:
            outcome = Outcome.declined("REFUND_DECLINED", reference=given)
        else:
            outcome = Outcome.succeeded(given)
        proposed = LedgerEntry(
            idempotency_key=idempotency_key,
            operation=operation,
            token=charged.token,
            amount_minor=amount_minor,
            currency=currency,
            outcome=outcome,
            description=reason,
            target=reference,
        )
        stored = await self.ledger.record(proposed)
        if not stored.same_request(proposed):
            return Outcome.declined("IDEMPOTENCY_KEY_REUSED")
        first_time = stored == proposed
        if first_time and operation == "void" and outcome.status == "succeeded":
            await self.ledger.mark_voided(charged.idempotency_key)
        if first_time and scenario is SandboxScenario.REFUND_ANSWER_LOST:
            return Outcome.unknown()
        return stored.outcome

    async def _settle(
        self,
        operation: Operation,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        description: str,
    ) -> Outcome:
        if amount_minor <= 0:
            raise BillingError("GREATER_THAN_ZERO", field="amount")
        scenario = self.scenario_of(token)
        if scenario is None:
            # Not ours (another processor's token, or corrupted): it will never work, so hard.
            return Outcome.declined("CARD_NOT_FOUND", hard=True)
        prefix = "auth_sbx_" if operation == "authorize" else "ch_sbx_"
        proposed = LedgerEntry(
            idempotency_key=idempotency_key,
            operation=operation,
            token=token,
            amount_minor=amount_minor,
            currency=currency,
            outcome=_decide(scenario, operation, f"{prefix}{secrets.token_hex(8)}"),
            description=description,
        )
        stored = await self.ledger.record(proposed)
        if not stored.same_request(proposed):
            raise BillingError("IDEMPOTENCY_KEY_REUSED", field="idempotency_key")
        first_time = stored == proposed
        if first_time and operation == "charge" and scenario is SandboxScenario.PROCESSING_ERROR:
            # The charge went through but its answer was "lost": only lookup can tell.
            return Outcome.unknown()
        return stored.outcome
