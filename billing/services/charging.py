"""The charge machinery every feature charges through (renewals, grace retries, on-demand items,
enrolment's first charge and its recovery: `call_processor`).

Guarantees, in the order things happen:

1. **Pending before the call.** Each charge row is written `pending`, with its idempotency
   key, and committed before the processor hears of it. The key is unique, so a second
   row for the same charge cannot exist.
2. **Resume, never repeat.** If a key is already taken (a crashed or slow worker got
   there first), the rows stored under the key and its fallback keys decide, not today's
   methods: a succeeded row is the answer; the highest `pending`/`unknown` row is
   reconciled with `processor.lookup(key)` (with the amount and token it was written
   with), and only when the processor never saw the key is the *same* key sent again
   (processors dedupe on it). A processor answering "key reused with other parameters"
   is `unknown`, never a decline. Nothing is ever charged blind.
3. **Default method, then fallbacks.** Method i > 0 uses the key `f"{key}:m{i}"` and is
   only tried after method i-1 definitely failed. An `unknown` answer stops the chain
   until it is reconciled (it may have been a success).
4. **Outcome and consequence together.** When a request reaches its final result, the
   caller's `apply` callback runs in the same transaction that records the charge row's
   outcome, so the state change it causes (a renewed subscription, a batch item) and the
   events it writes commit atomically with it.

Use it in two steps when the caller wants the pending rows in its own transaction (for
example together with its claim):

    run = await open_charges(session, requests, now=now)      # caller commits
    results = await run.settle(sessions, processors, apply=apply, semaphore=semaphore)

or in one step with `execute_charges(...)`. `ChargeResult.records` lists every charge row
that reached a final state (or `unknown`) during the run, in order, for `charge.*` events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from billing.domain.errors import BillingError
from billing.domain.events import CHARGE_EVENTS, ChargeSnapshot
from billing.domain.money import from_minor
from billing.domain.settlement import DEFAULT_COUNTRY, expected_settlement_date
from billing.processors.base import Outcome, PaymentProcessor
from billing.store.charges import (
    ChargeOutcomeRow,
    NewCharge,
    StoredCharge,
    charge_families,
    fail_unsent_of_inactive_subscriptions,
    insert_pending,
    write_outcomes,
)
from billing.store.engine import Session, SessionFactory, transaction
from billing.store.ids import new_id
from billing.store.models import Charge
from billing.store.payment_methods import SubscriptionMethod

log = logging.getLogger("billing.charging")

ChargeKind = Literal["enrolment", "renewal", "on_demand"]
ChargeState = Literal["succeeded", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class MethodChoice:
    """One payment method a request may be charged to."""

    payment_method_id: str
    processor: str
    token: str


def methods_in_order(
    default_payment_method_id: str | None,
    allowed_processors: Sequence[str],
    subscription_methods: Sequence[SubscriptionMethod],
    processors: Mapping[str, PaymentProcessor],
) -> tuple[MethodChoice, ...]:
    """The subscription's default method first, then the fallbacks attached to that subscription.

    One rule for every kind of charge (renewals, grace retries, on-demand items):
    `subscription_methods` are the subscription's own active cards
    (`billing.store.payment_methods.methods_of_subscriptions`), never the cardholder's others;
    only processors this process runs and, when the plan lists any, that the plan allows; the
    subscription's order is kept among the fallbacks.
    """
    allowed = set(allowed_processors)
    usable = [
        m
        for m in subscription_methods
        if m.processor in processors and (not allowed or m.processor in allowed)
    ]
    usable.sort(key=lambda m: m.id != default_payment_method_id)  # stable: default first
    return tuple(MethodChoice(m.id, m.processor, m.token) for m in usable)


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One thing to charge: an amount, a base idempotency key and the methods to try in order.

    `key` is the base idempotency key (renewals: `f"{sub}:{period_start_iso}:{attempt}"`,
    on-demand: `f"{batch}:{index}"`); method i > 0 is charged under `f"{key}:m{i}"`.
    `at` is the business time of the charge (the client's now: `created_at`, `updated_at`,
    settlement date), defaulting to the run's `now`. `ref` is anything the caller wants
    back with the result (a row id, an index).
    """

    key: str
    client_id: str
    kind: ChargeKind
    amount_minor: int
    currency: str
    methods: tuple[MethodChoice, ...]
    subscription_id: str | None = None
    period_start: datetime | None = None
    period_index: int | None = None
    attempt: int = 1
    batch_id: str | None = None
    batch_index: int | None = None
    metadata: dict[str, Any] | None = None
    description: str = ""
    at: datetime | None = None
    ref: Any = None

    def key_for(self, method_index: int) -> str:
        """The idempotency key of the charge on method `method_index`."""
        return self.key if method_index == 0 else f"{self.key}:m{method_index}"


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    """One charge row as it ended up in this run (for events and reports)."""

    charge_id: str
    idempotency_key: str
    method_index: int
    payment_method_id: str | None
    processor: str
    amount_minor: int
    currency: str
    state: ChargeState
    decline_code: str | None = None
    decline_message: str | None = None
    hard_decline: bool = False
    processor_reference: str | None = None
    expected_settlement_date: date | None = None

    def event(self, request: ChargeRequest) -> ChargeSnapshot:
        """The `charge.succeeded` / `charge.failed` / `charge.unknown` event payload for this row,
        with where the charge came from (`methodIndex`, `hardDecline`, batch fields)."""
        batch: dict[str, Any] = (
            {}
            if request.batch_id is None
            else {"batch_id": request.batch_id, "batch_index": request.batch_index}
        )
        if self.expected_settlement_date is not None:
            batch["expected_settlement_date"] = self.expected_settlement_date
        return CHARGE_EVENTS[f"charge.{self.state}"](
            charge_id=self.charge_id,
            subscription_id=request.subscription_id,
            kind=request.kind,
            state=self.state,
            amount=str(from_minor(self.amount_minor, self.currency)),
            amount_minor=self.amount_minor,
            currency=self.currency,
            payment_method_id=self.payment_method_id,
            processor=self.processor,
            attempt=request.attempt,
            period_start=request.period_start,
            decline_code=self.decline_code,
            decline_message=self.decline_message,
            processor_reference=self.processor_reference,
            method_index=self.method_index,
            hard_decline=self.hard_decline,
            **batch,
        )


@dataclass(slots=True)
class ChargeResult:
    """The final word on one request.

    - `succeeded`: `charge` is the row that succeeded.
    - `failed`: every method failed (or there was none: `charge` is None, code 7200);
      `hard` is True when every method failed with a hard decline.
    - `unknown`: a charge's outcome could not be learned yet; `charge` is that row, still
      `unknown` in the database, and the next run with the same request resumes it.
    """

    request: ChargeRequest
    state: ChargeState
    charge: ChargeRecord | None
    records: list[ChargeRecord] = field(default_factory=list)

    @property
    def hard(self) -> bool:
        failed = [r for r in self.records if r.state == "failed"]
        return self.state == "failed" and bool(failed) and all(r.hard_decline for r in failed)

    @property
    def decline_code(self) -> str | None:
        if self.state != "failed":
            return None
        return self.charge.decline_code if self.charge is not None else "7200"

    @property
    def decline_message(self) -> str | None:
        if self.state != "failed":
            return None
        if self.charge is None:
            return "No usable payment method."
        return self.charge.decline_message


ApplyResults = Callable[[Session, Sequence[ChargeResult]], Awaitable[None]]
KeepAlive = Callable[[Session], Awaitable[None]]

_SUCCEEDED = ("succeeded", "settled")
_OPEN = ("pending", "unknown")
# A processor saying "this key was used with other parameters" knows the key: whatever was
# charged under it may have succeeded, so it is never a decline.
_KEY_REUSED = BillingError("IDEMPOTENCY_KEY_REUSED").spec
_STATE_CONFLICT = BillingError("STATE_CONFLICT").spec.code
_INACTIVE_MESSAGE = "The subscription is no longer active."


@dataclass(slots=True)
class _Cursor:
    """Where one request stands during a run."""

    request: ChargeRequest
    method_index: int = 0
    charge_id: str | None = None
    # "charge": send a charge; "reconcile": look the key up first (a resumed or unknown row).
    mode: str = "charge"
    # Amount/token of the stored row when resuming (the row, not the request, is the truth).
    stored: StoredCharge | None = None
    records: list[ChargeRecord] = field(default_factory=list)
    reconcile_rounds: int = 0
    final: ChargeResult | None = None

    @property
    def key(self) -> str:
        return self.request.key_for(self.method_index)

    @property
    def method(self) -> MethodChoice:
        return self.request.methods[self.method_index]


def _log_ids(cursor: _Cursor) -> dict[str, Any]:
    """What a log line about one charge names: its key and the charge, subscription and batch ids."""
    request = cursor.request
    ids = {"key": cursor.key, "charge_id": cursor.charge_id}
    ids |= {"subscription_id": request.subscription_id, "batch_id": request.batch_id}
    return {name: value for name, value in ids.items() if value is not None}


class ChargeRun:
    """Requests whose pending rows are written; `settle` charges them to a final result."""

    def __init__(
        self, cursors: list[_Cursor], now: datetime, settlement_country: str = DEFAULT_COUNTRY
    ) -> None:
        self._cursors = cursors
        self._now = now
        self._country = settlement_country

    @property
    def requests(self) -> list[ChargeRequest]:
        return [c.request for c in self._cursors]

    async def settle(
        self,
        sessions: SessionFactory,
        processors: Mapping[str, PaymentProcessor],
        *,
        apply: ApplyResults,
        semaphore: asyncio.Semaphore | None = None,
        reconcile_rounds: int = 3,
        keep_alive: KeepAlive | None = None,
    ) -> list[ChargeResult]:
        """Call the processors, record outcomes, try fallbacks, and hand final results to `apply`.

        `apply(session, results)` runs inside the transaction that records the final charge
        outcomes of `results`. A request whose outcome stays `unknown` after
        `reconcile_rounds` look-ups is final as `unknown` for this run.

        Before each round of calls after the first, `keep_alive(session)` runs in its own
        transaction (the renewal pass extends its leases there). Just before a renewal row is
        first sent, it is failed with 7050 instead when its subscription is no longer active.
        """
        semaphore = semaphore or asyncio.Semaphore(64)
        ready = [c for c in self._cursors if c.final is not None]
        if ready:
            async with transaction(sessions) as session:
                await apply(session, [c.final for c in ready if c.final is not None])
        active = [c for c in self._cursors if c.final is None]
        first_round = True
        while active:
            active = await self._before_round(sessions, active, apply, None if first_round else keep_alive)
            first_round = False
            if not active:
                break
            outcomes = await asyncio.gather(*(self._call(c, processors, semaphore) for c in active))
            rows: list[ChargeOutcomeRow] = []
            for cursor, outcome in zip(active, outcomes, strict=True):
                self._record(cursor, outcome, rows, reconcile_rounds)
            finished = [c for c in active if c.final is not None]
            following = [c for c in active if c.final is None and c.mode == "charge"]
            async with transaction(sessions) as session:
                await write_outcomes(session, rows)
                if following:
                    await _open(session, following, self._now)
                    finished += [c for c in following if c.final is not None]
                if finished:
                    await apply(session, [c.final for c in finished if c.final is not None])
            active = [c for c in active if c.final is None]
        return [c.final for c in self._cursors if c.final is not None]

    async def _before_round(
        self,
        sessions: SessionFactory,
        active: list[_Cursor],
        apply: ApplyResults,
        keep_alive: KeepAlive | None,
    ) -> list[_Cursor]:
        """Fail first sends of renewals whose subscription was cancelled meanwhile; keep leases alive."""
        unsent = [
            c
            for c in active
            if c.mode == "charge" and c.charge_id is not None and c.request.kind == "renewal"
        ]
        if not unsent and keep_alive is None:
            return active
        async with transaction(sessions) as session:
            if keep_alive is not None:
                await keep_alive(session)
            if not unsent:
                return active
            failed = await fail_unsent_of_inactive_subscriptions(
                session,
                [c.charge_id for c in unsent if c.charge_id is not None],
                code=_STATE_CONFLICT,
                message=_INACTIVE_MESSAGE,
                at=self._now,
            )
            if not failed:
                return active
            finished: list[ChargeResult] = []
            for cursor in unsent:
                if cursor.charge_id not in failed:
                    continue
                record = ChargeRecord(
                    charge_id=cursor.charge_id,
                    idempotency_key=cursor.key,
                    method_index=cursor.method_index,
                    payment_method_id=cursor.method.payment_method_id,
                    processor=cursor.method.processor,
                    amount_minor=cursor.request.amount_minor,
                    currency=cursor.request.currency,
                    state="failed",
                    decline_code=_STATE_CONFLICT,
                    decline_message=_INACTIVE_MESSAGE,
                )
                cursor.records.append(record)
                # No fallback either: nothing may be charged for a subscription that ended.
                cursor.final = ChargeResult(cursor.request, "failed", record, cursor.records)
                finished.append(cursor.final)
            await apply(session, finished)
        return [c for c in active if c.final is None]

    async def _call(
        self, cursor: _Cursor, processors: Mapping[str, PaymentProcessor], semaphore: asyncio.Semaphore
    ) -> Outcome:
        stored = cursor.stored
        slug = stored.processor if stored is not None else cursor.method.processor
        processor = processors.get(slug)
        if processor is None:
            # Not configured in this process: another worker (or a restart) must reconcile it.
            log.warning("processor not configured", extra={"processor": slug, **_log_ids(cursor)})
            return Outcome.unknown()
        call = ProcessorCall(
            mode="reconcile" if cursor.mode == "reconcile" else "charge",
            key=cursor.key,
            token=stored.token if stored is not None else cursor.method.token,
            amount_minor=stored.amount_minor if stored is not None else cursor.request.amount_minor,
            currency=stored.currency if stored is not None else cursor.request.currency,
            description=cursor.request.description,
        )
        async with semaphore:
            try:
                return await call_processor(processor, call)
            except Exception:
                log.exception("processor call failed", extra={"processor": slug, **_log_ids(cursor)})
                return Outcome.unknown()

    def _record(
        self, cursor: _Cursor, outcome: Outcome, rows: list[ChargeOutcomeRow], reconcile_rounds: int
    ) -> None:
        assert cursor.charge_id is not None
        stored = cursor.stored
        at = cursor.request.at or self._now
        record = ChargeRecord(
            charge_id=cursor.charge_id,
            idempotency_key=cursor.key,
            method_index=cursor.method_index,
            payment_method_id=stored.payment_method_id if stored else cursor.method.payment_method_id,
            processor=stored.processor if stored else cursor.method.processor,
            amount_minor=stored.amount_minor if stored else cursor.request.amount_minor,
            currency=stored.currency if stored else cursor.request.currency,
            state=outcome.status,
            decline_code=outcome.decline_code,
            decline_message=outcome.decline_message,
            hard_decline=outcome.hard_decline,
            processor_reference=outcome.reference,
            expected_settlement_date=(
                expected_settlement_date(at, self._country) if outcome.status == "succeeded" else None
            ),
        )
        rows.append(
            ChargeOutcomeRow(
                id=record.charge_id,
                state=record.state,
                decline_code=record.decline_code,
                decline_message=record.decline_message,
                hard_decline=record.hard_decline,
                processor_reference=record.processor_reference,
                expected_settlement_date=record.expected_settlement_date,
                updated_at=at,
            )
        )
        _advance(cursor, record, reconcile_rounds)


@dataclass(frozen=True, slots=True)
class ProcessorCall:
    """One call about one charge row, under the row's idempotency key.

    - `charge`: send the charge.
    - `look_up`: ask what the key produced; a key the processor never saw is `unknown`.
    - `reconcile`: look up first; when the processor never saw the key, send the very same
      charge again under it (processors dedupe on the key, so it is never charged twice).
    """

    mode: Literal["charge", "look_up", "reconcile"]
    key: str
    token: str | None
    amount_minor: int
    currency: str
    description: str

    @classmethod
    def for_row(
        cls,
        mode: Literal["charge", "look_up", "reconcile"],
        row: Charge,
        *,
        token: str | None,
        description: str,
    ) -> ProcessorCall:
        """The call about a stored charge row (its key, amount and currency)."""
        return cls(mode, row.idempotency_key, token, row.amount_minor, row.currency, description)


async def call_processor(processor: PaymentProcessor, call: ProcessorCall) -> Outcome:
    """Make `call` and read the answer the one way every charge does.

    A processor error, or "key reused with other parameters", is `unknown` (the key may have
    charged); any other catalog error is a refusal before money could move (`failed` with its
    code). Anything else propagates: a pass logs it and keeps the row open, a request fails.
    """
    try:
        if call.mode != "charge":
            found = await processor.lookup(call.key)
            if found is not None:
                return _never_key_reused(found)
            if call.mode == "look_up" or call.token is None:
                return Outcome.unknown()
            # The processor never saw this key: sending the same key again is safe.
        return _never_key_reused(
            await processor.charge(
                call.token or "",
                call.amount_minor,
                call.currency,
                idempotency_key=call.key,
                description=call.description,
            )
        )
    except BillingError as exc:
        if exc.spec.name in ("PROCESSOR_ERROR", _KEY_REUSED.name):
            return Outcome.unknown()
        # A refusal before any money could move (bad amount, card data...).
        return Outcome(status="failed", decline_code=exc.spec.code, decline_message=exc.detail)


def _never_key_reused(outcome: Outcome) -> Outcome:
    """An answer "key reused with other parameters" is `unknown` (never a decline)."""
    if outcome.status == "failed" and outcome.decline_code == _KEY_REUSED.code:
        return Outcome.unknown()
    return outcome


def _advance(cursor: _Cursor, record: ChargeRecord, reconcile_rounds: int) -> None:
    """Move a cursor past a charge row whose state is now `record.state`."""
    if record.state == "succeeded":
        cursor.records.append(record)
        cursor.final = ChargeResult(cursor.request, "succeeded", record, cursor.records)
    elif record.state == "failed":
        cursor.records.append(record)
        if cursor.method_index + 1 < len(cursor.request.methods):
            cursor.method_index += 1
            cursor.mode = "charge"
            cursor.stored = None
            cursor.charge_id = None
        else:
            cursor.final = ChargeResult(cursor.request, "failed", record, cursor.records)
    else:
        cursor.reconcile_rounds += 1
        cursor.mode = "reconcile"
        if cursor.reconcile_rounds > reconcile_rounds:
            cursor.records.append(record)
            cursor.final = ChargeResult(cursor.request, "unknown", record, cursor.records)


def _stored_record(stored: StoredCharge) -> ChargeRecord:
    state: ChargeState = "succeeded" if stored.state in _SUCCEEDED else "failed"
    return ChargeRecord(
        charge_id=stored.id,
        idempotency_key=stored.idempotency_key,
        method_index=stored.method_index,
        payment_method_id=stored.payment_method_id,
        processor=stored.processor,
        amount_minor=stored.amount_minor,
        currency=stored.currency,
        state=state,
        decline_code=stored.decline_code,
        decline_message=stored.decline_message,
        hard_decline=stored.hard_decline,
        processor_reference=stored.processor_reference,
        expected_settlement_date=stored.expected_settlement_date,
    )


def _fail_without_method(cursor: _Cursor) -> None:
    """No method left to try: failed with the last decline, or 7200 when nothing was tried."""
    last = cursor.records[-1] if cursor.records else None
    cursor.final = ChargeResult(cursor.request, "failed", last, cursor.records)


async def _resume_families(session: Session, cursors: Sequence[_Cursor]) -> None:
    """Position each cursor on what earlier runs already wrote under its key family.

    The stored rows, not today's method list, say where a request stands: a succeeded row
    is the answer; otherwise the highest `pending`/`unknown` row is reconciled (lookup, then
    the same key) with the amount and token it was written with, whatever methods exist
    now; when every row failed, the next method index is tried (if today's list has one).
    """
    families = await charge_families(session, sorted({c.request.key for c in cursors}))
    for cursor in cursors:
        rows = [r for r in families.get(cursor.request.key, []) if r.method_index >= cursor.method_index]
        if not rows:
            if cursor.method_index < len(cursor.request.methods):
                # Taken by a row under another unique key (same subscription, period, attempt
                # and method written with a different key format): nothing safe to do here.
                cursor.final = ChargeResult(cursor.request, "unknown", None, cursor.records)
                log.error("charge key conflict without a row", extra=_log_ids(cursor))
            continue
        resume = next((r for r in rows if r.state in _SUCCEEDED), None)
        if resume is None:
            resume = next((r for r in reversed(rows) if r.state in _OPEN), None)
        for row in rows:
            if row.state not in _SUCCEEDED + _OPEN and (
                resume is None or row.method_index < resume.method_index
            ):
                cursor.records.append(_stored_record(row))
        if resume is None:
            cursor.method_index = rows[-1].method_index + 1
            cursor.mode, cursor.stored, cursor.charge_id = "charge", None, None
            continue
        cursor.method_index = resume.method_index
        cursor.charge_id = resume.id
        cursor.stored = resume
        if resume.state in _OPEN:
            cursor.mode = "reconcile"
        else:
            _advance(cursor, _stored_record(resume), reconcile_rounds=0)


async def _open(session: Session, cursors: Sequence[_Cursor], now: datetime) -> None:
    """Write pending rows for cursors in "charge" mode; resume from rows whose key is taken.

    Loops because a resumed family whose rows all failed moves its cursor to the next
    method, whose key may be taken too (by a concurrent run).
    """
    todo = [c for c in cursors if c.final is None and c.mode == "charge"]
    # No method today does not mean nothing was charged: an earlier run's rows come first.
    bare = [c for c in todo if c.method_index == 0 and not c.request.methods]
    if bare:
        await _resume_families(session, bare)
    while todo:
        todo = [c for c in todo if c.final is None and c.mode == "charge"]
        for cursor in todo:
            if cursor.method_index >= len(cursor.request.methods):
                _fail_without_method(cursor)
        todo = [c for c in todo if c.final is None]
        if not todo:
            return
        new = {
            c.key: NewCharge(
                id=new_id("charge"),
                client_id=c.request.client_id,
                subscription_id=c.request.subscription_id,
                kind=c.request.kind,
                amount_minor=c.request.amount_minor,
                currency=c.request.currency,
                payment_method_id=c.method.payment_method_id,
                processor=c.method.processor,
                idempotency_key=c.key,
                period_start=c.request.period_start,
                period_index=c.request.period_index,
                attempt=c.request.attempt,
                method_index=c.method_index,
                batch_id=c.request.batch_id,
                batch_index=c.request.batch_index,
                metadata=c.request.metadata,
                created_at=c.request.at or now,
            )
            for c in todo
        }
        inserted = await insert_pending(session, list(new.values()))
        taken = [c for c in todo if c.key not in inserted]
        for cursor in todo:
            if cursor.key in inserted:
                cursor.charge_id = new[cursor.key].id
        if not taken:
            return
        # A new key for method 0 means no earlier run: only taken keys need the family read.
        await _resume_families(session, taken)
        todo = taken


async def open_charges(
    session: Session,
    requests: Sequence[ChargeRequest],
    *,
    now: datetime,
    settlement_country: str = DEFAULT_COUNTRY,
) -> ChargeRun:
    """Write the `pending` rows of `requests` in the caller's transaction (the caller commits).

    `settlement_country` names the holiday calendar of the expected settlement dates
    (`billing.domain.settlement`; setting `settlement.country`).

    A request whose key is already taken resumes the stored row: it is reconciled (never
    charged under a new key) or, if final, reported as it is. A request without methods is
    final at once as `failed` with code 7200.
    """
    cursors = [_Cursor(request) for request in requests]
    await _open(session, cursors, now)
    return ChargeRun(cursors, now, settlement_country)


async def execute_charges(
    sessions: SessionFactory,
    processors: Mapping[str, PaymentProcessor],
    requests: Sequence[ChargeRequest],
    *,
    now: datetime,
    apply: ApplyResults,
    semaphore: asyncio.Semaphore | None = None,
    reconcile_rounds: int = 3,
    settlement_country: str = DEFAULT_COUNTRY,
) -> list[ChargeResult]:
    """Open and settle `requests` (see the module docstring); returns one result per request."""
    async with transaction(sessions) as session:
        run = await open_charges(session, requests, now=now, settlement_country=settlement_country)
    return await run.settle(
        sessions, processors, apply=apply, semaphore=semaphore, reconcile_rounds=reconcile_rounds
    )
