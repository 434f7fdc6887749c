"""A sandbox ledger in a SQLite file, shared by every process of a test (workers that get killed).

The in-memory ledger dies with its process; this one survives, so a restarted worker's sandbox
knows what the killed one charged (as a real processor would), and the test can count every
charge request the sandbox ever accepted under each idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from billing.processors.base import Outcome
from billing.processors.sandbox_ledger import LedgerEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (key TEXT NOT NULL, new INTEGER NOT NULL);
"""


def _dump(entry: LedgerEntry) -> str:
    o = entry.outcome
    return json.dumps(
        {
            "key": entry.idempotency_key,
            "operation": entry.operation,
            "token": entry.token,
            "amount": entry.amount_minor,
            "currency": entry.currency,
            "description": entry.description,
            "voided": entry.voided,
            "target": entry.target,
            "outcome": [o.status, o.reference, o.decline_code, o.decline_message, o.hard_decline],
        }
    )


def _load(text: str) -> LedgerEntry:
    d = json.loads(text)
    status, reference, code, message, hard = d["outcome"]
    return LedgerEntry(
        idempotency_key=d["key"],
        operation=d["operation"],
        token=d["token"],
        amount_minor=d["amount"],
        currency=d["currency"],
        outcome=Outcome(
            status=status, reference=reference, decline_code=code, decline_message=message, hard_decline=hard
        ),
        description=d["description"],
        voided=d["voided"],
        target=d.get("target"),
    )


class FileLedger:
    """`SandboxLedger` over a SQLite file; ``delay`` slows every charge so a test can kill mid-batch."""

    def __init__(self, path: Path, *, delay: float = 0.0) -> None:
        self.path = path
        self.delay = delay
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30, isolation_level=None)

    async def record(self, entry: LedgerEntry) -> LedgerEntry:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            inserted = conn.execute(
                "INSERT OR IGNORE INTO ledger (key, entry) VALUES (?, ?)",
                (entry.idempotency_key, _dump(entry)),
            ).rowcount
            conn.execute("INSERT INTO requests (key, new) VALUES (?, ?)", (entry.idempotency_key, inserted))
            row = conn.execute("SELECT entry FROM ledger WHERE key = ?", (entry.idempotency_key,)).fetchone()
            conn.execute("COMMIT")
        return _load(row[0])

    async def get(self, idempotency_key: str) -> LedgerEntry | None:
        with self._connect() as conn:
            row = conn.execute("SELECT entry FROM ledger WHERE key = ?", (idempotency_key,)).fetchone()
        return _load(row[0]) if row else None

    async def find_by_reference(self, reference: str) -> LedgerEntry | None:
        with self._connect() as conn:
            rows = conn.execute("SELECT entry FROM ledger").fetchall()
        return next((e for e in map(_load, (r[0] for r in rows)) if e.outcome.reference == reference), None)

    async def mark_voided(self, idempotency_key: str) -> None:
        entry = await self.get(idempotency_key)
        if entry is None:
            raise KeyError(idempotency_key)
        voided = replace(entry, voided=True)
        with self._connect() as conn:
            conn.execute("UPDATE ledger SET entry = ? WHERE key = ?", (_dump(voided), idempotency_key))

    def charged_keys(self) -> dict[str, str]:
        """Every key the sandbox charged, with the outcome status it stored."""
        with self._connect() as conn:
            rows = conn.execute("SELECT key, entry FROM ledger").fetchall()
        return {key: _load(text).outcome.status for key, text in rows if _load(text).operation == "charge"}

    def new_charges_per_key(self) -> dict[str, int]:
        """How many times each key created a new ledger entry (a real charge): must never exceed 1."""
        with self._connect() as conn:
            rows = conn.execute("SELECT key, SUM(new) FROM requests GROUP BY key").fetchall()
        return {key: int(count) for key, count in rows}
