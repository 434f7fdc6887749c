"""Settlement reports: `succeeded` charges become `settled`, every other row is kept for the operator.

A report lists the charges paid out on one settlement date. A row that matches a `succeeded`
charge (by charge id, else by processor reference) with the same amount and currency settles it,
with a `charge.settled` event in the same transaction. Every other row (unknown charge, amount or
currency mismatch, a charge that is not `succeeded`) is answered per row and kept with the report
(`billing settlements mismatches`); it changes nothing. A charge already `settled` by an earlier
report is reported as not settleable too, so nothing settles twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from billing.domain.errors import ErrorName, spec
from billing.domain.events import ChargeSettled
from billing.services.event_payloads import charge_event
from billing.services.runtime import Runtime
from billing.store import inbound
from billing.store.engine import transaction
from billing.store.events import NewEvent, insert_events, reserve_sequences
from billing.store.inbound import SettleableCharge

log = logging.getLogger("billing.settlement")

SOURCE = "settlements"
MAX_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """One charge the report says was paid out."""

    index: int
    charge_id: str | None
    processor_reference: str | None
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class SettlementReport:
    event_id: str
    settlement_date: date
    rows: tuple[SettlementRow, ...]


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one row: `settled`, or refused with a catalog code."""

    index: int
    charge_id: str | None
    processor_reference: str | None
    status: str  # settled | refused
    code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.charge_id is not None:
            out["chargeId"] = self.charge_id
        if self.processor_reference is not None:
            out["processorReference"] = self.processor_reference
        if self.code is not None:
            out["code"], out["message"] = self.code, self.message
        return out


@dataclass(frozen=True, slots=True)
class SettlementReceipt:
    event_id: str
    duplicate: bool
    settled: int
    refused: int
    rows: tuple[RowResult, ...]


def _refused(row: SettlementRow, name: ErrorName, charge_id: str | None = None) -> RowResult:
    entry = spec(name)
    return RowResult(
        row.index, charge_id or row.charge_id, row.processor_reference, "refused", entry.code, entry.message
    )


def _check(row: SettlementRow, charge: SettleableCharge) -> RowResult | None:
    if charge.currency != row.currency:
        return _refused(row, "SETTLEMENT_CURRENCY_MISMATCH", charge.id)
    if charge.amount_minor != row.amount_minor:
        return _refused(row, "SETTLEMENT_AMOUNT_MISMATCH", charge.id)
    if charge.state != "succeeded":
        return _refused(row, "SETTLEMENT_NOT_SETTLEABLE", charge.id)
    return None


async def receive_settlement_report(runtime: Runtime, report: SettlementReport) -> SettlementReceipt:
    """Apply a settlement report once (dedupe on its event id); answer per row."""
    now = runtime.clock.now()
    async with transaction(runtime.sessions) as session:
        notice_id = await inbound.record_notification(
            session,
            source=SOURCE,
            event_id=report.event_id,
            type="settlement.report",
            received_at=now,
            detail={"settlementDate": report.settlement_date.isoformat(), "rows": len(report.rows)},
        )
        if notice_id is None:
            return SettlementReceipt(report.event_id, True, 0, 0, ())
        by_id, by_reference = await inbound.charges_for_settlement(
            session,
            ids=[r.charge_id for r in report.rows if r.charge_id],
            references=[
                r.processor_reference for r in report.rows if not r.charge_id and r.processor_reference
            ],
        )
        results: dict[int, RowResult] = {}
        chosen: dict[str, SettlementRow] = {}
        for row in report.rows:
            if row.charge_id:
                charge = by_id.get(row.charge_id)
            else:
                matches = by_reference.get(row.processor_reference or "", [])
                charge = matches[0] if len(matches) == 1 else None
            if charge is None:
                results[row.index] = _refused(row, "CHARGE_NOT_FOUND")
                continue
            refusal = _check(row, charge)
            if refusal is None and charge.id in chosen:
                refusal = _refused(row, "SETTLEMENT_NOT_SETTLEABLE", charge.id)  # named twice
            if refusal is not None:
                results[row.index] = refusal
                continue
            chosen[charge.id] = row
        moved = await inbound.settle_charges(session, list(chosen), at=now)
        for charge_id, row in chosen.items():
            if charge_id in moved:
                results[row.index] = RowResult(row.index, charge_id, row.processor_reference, "settled")
            else:  # moved by a concurrent report between the read and the update
                results[row.index] = _refused(row, "SETTLEMENT_NOT_SETTLEABLE", charge_id)
        await _settled_events(session, sorted(moved), report, now)
        ordered = tuple(results[row.index] for row in report.rows)
        refused = [r.to_json() for r in ordered if r.status != "settled"]
        await inbound.resolve_notification(
            session,
            notice_id,
            resolution="mismatches" if refused else "settled",
            detail={
                "settlementDate": report.settlement_date.isoformat(),
                "rows": len(report.rows),
                "settled": len(moved),
                "refused": refused,
            },
        )
    if refused:
        log.warning(
            "settlement report rows not applied",
            extra={"event_id": report.event_id, "refused": len(refused), "settled": len(moved)},
        )
    return SettlementReceipt(report.event_id, False, len(moved), len(refused), ordered)


async def _settled_events(session: Any, charge_ids: list[str], report: SettlementReport, now: Any) -> None:
    """One `charge.settled` per settled charge, in the subscription's event order."""
    if not charge_ids:
        return
    charges = await inbound.charges_by_id(session, charge_ids)
    per_sub: dict[str, int] = defaultdict(int)
    for charge in charges:
        if charge.subscription_id is not None:
            per_sub[charge.subscription_id] += 1
    first = await reserve_sequences(session, dict(sorted(per_sub.items())))
    events: list[NewEvent] = []
    for charge in sorted(charges, key=lambda c: c.id):
        sequence = None
        if charge.subscription_id is not None and charge.subscription_id in first:
            sequence = first[charge.subscription_id]
            first[charge.subscription_id] += 1
        payload = charge_event(
            ChargeSettled,
            charge,
            settlement_date=report.settlement_date,
            settlement_report_id=report.event_id,
        )
        events.append(
            NewEvent(
                client_id=charge.client_id,
                payload=payload,
                created_at=now,
                subscription_id=charge.subscription_id,
                sequence=sequence,
            )
        )
    await insert_events(session, events)


async def settlement_mismatches(runtime: Runtime, *, limit: int = 100) -> list[dict[str, Any]]:
    """Settlement rows that were not applied, report by report (oldest first), for the operator."""
    async with runtime.sessions() as session:
        reports = await inbound.notifications(session, resolution="mismatches", source=SOURCE, limit=limit)
    out: list[dict[str, Any]] = []
    for report in reports:
        detail = report.detail or {}
        for row in detail.get("refused", []):
            out.append(
                {
                    "eventId": report.event_id,
                    "settlementDate": detail.get("settlementDate"),
                    "receivedAt": report.received_at.isoformat(),
                    **row,
                }
            )
    return out
