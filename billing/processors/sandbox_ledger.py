"""Where the sandbox processor remembers what it did, keyed by idempotency key.

The ledger is what makes the sandbox behave like a real processor under retries: a second
request with a known key gets the stored outcome back instead of a second charge. It is a
protocol so that several processes can later share one ledger (for example in the database).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

from billing.processors.base import Outcome

Operation = Literal["authorize", "charge", "refund", "void"]


@dataclass(frozen=True)
class LedgerEntry:
    """One authorization, charge, refund or void the sandbox decided, with the request that caused
    it (`target`: the charge a refund or void gives money back on)."""

    idempotency_key: str
    operation: Operation
    token: str
    amount_minor: int
    currency: str
    outcome: Outcome
    description: str = ""
    voided: bool = False
    target: str | None = None

    def same_request(self, other: LedgerEntry) -> bool:
        """True when `other` repeats this request (a retry), not a different one under the same key."""
        return (self.operation, self.token, self.amount_minor, self.currency, self.target) == (
            other.operation,
            other.token,
            other.amount_minor,
            other.currency,
            other.target,
        )


class SandboxLedger(Protocol):
    """Storage for sandbox outcomes; implementations must make `record` atomic per key."""

    async def record(self, entry: LedgerEntry) -> LedgerEntry:
        """Store `entry` unless its key is taken; return whichever entry the key now holds."""
        ...

    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        """The entry stored under `idempotency_key`, if any."""
        ...

    async def find_by_reference(self, reference: str) -> LedgerEntry | None:
        """The entry whose outcome carries `reference`, if any."""
        ...

    async def mark_voided(self, idempotency_key: str) -> None:
        """Flag the authorization stored under `idempotency_key` as released."""
        ...


class InMemorySandboxLedger:
    """A per-process ledger; `entries` lets tests see exactly what the sandbox did."""

    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}

    @property
    def entries(self) -> Mapping[str, LedgerEntry]:
        """A read-only view of every entry by idempotency key."""
        return MappingProxyType(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    async def record(self, entry: LedgerEntry) -> LedgerEntry:
        """Store `entry` unless its key is taken; no await inside, so this is atomic on one loop."""
        return self._entries.setdefault(entry.idempotency_key, entry)

    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        """The entry stored under `idempotency_key`, if any."""
        return self._entries.get(idempotency_key)

    async def find_by_reference(self, reference: str) -> LedgerEntry | None:
        """The entry whose outcome carries `reference`, if any."""
        return next((e for e in self._entries.values() if e.outcome.reference == reference), None)

    async def mark_voided(self, idempotency_key: str) -> None:
        """Flag the authorization stored under `idempotency_key` as released."""
        entry = self._entries[idempotency_key]
        self._entries[idempotency_key] = replace(entry, voided=True)
