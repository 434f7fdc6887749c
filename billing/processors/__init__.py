"""Payment processors: the protocol the engine charges through, and its implementations.

`sandbox` is built in (deterministic test cards, no network); `stripe` speaks Stripe's REST API.
Build the configured set with `build_processors`.
"""

from billing.processors.base import CardInfo, CardToken, Outcome, OutcomeStatus, PaymentProcessor
from billing.processors.registry import KNOWN_SLUGS, build_processors
from billing.processors.sandbox import TEST_CARDS, SandboxProcessor, SandboxScenario
from billing.processors.sandbox_ledger import InMemorySandboxLedger, LedgerEntry, SandboxLedger
from billing.processors.stripe import StripeProcessor

__all__ = [
    "KNOWN_SLUGS",
    "TEST_CARDS",
    "CardInfo",
    "CardToken",
    "InMemorySandboxLedger",
    "LedgerEntry",
    "Outcome",
    "OutcomeStatus",
    "PaymentProcessor",
    "SandboxLedger",
    "SandboxProcessor",
    "SandboxScenario",
    "StripeProcessor",
    "build_processors",
]
