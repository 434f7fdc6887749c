"""Charge rows: the shared charge machinery's bulk writes, and single charges as the merchant API
and the enrolment flow read and write them.

Pending rows are inserted with `ON CONFLICT DO NOTHING ... RETURNING`: a key that is already
taken means an earlier run (maybe a crashed worker) got that far, and the caller resumes
from the stored row instead of writing a second one (`billing.services.charging`). Outcomes are
written with a conditional UPDATE that only leaves `pending`/`unknown`, so a late writer (or
the request that made a charge and a recovery pass) never overwrites a final state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from billing.store.bulk import Column, dialect_insert, insert_rows, is_postgres, json_text, update_rows
from billing.store.client_time import touched_before
from billing.store.engine import Session
from billing.store.models import Charge, PaymentMethod, Subscription

OPEN_STATES = ("pending", "unknown")
_CHARGE = Charge.metadata.tables["charge"]
_METHOD = PaymentMethod.metadata.tables["payment_method"]
_SUB = Subscription.metadata.tables["subscription"]
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class NewCharge:
    """A `pending` charge row to write before the processor is called."""

    id: str
    client_id: str
    subscription_id: str | None
    kind: str
    amount_minor: int
    currency: str
    payment_method_id: str | None
    processor: str
    idempotency_key: str
    period_start: datetime | None
    period_index: int | None
    attempt: int
    method_index: int
    batch_id: str | None
    batch_index: int | None
    metadata: dict[str, Any] | None
    created_at: datetime

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_id": self.client_id,
            "subscription_id": self.subscription_id,
            "kind": self.kind,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "payment_method_id": self.payment_method_id,
            "processor": self.processor,
            "period_start": self.period_start,
            "period_index": self.period_index,
            "attempt": self.attempt,
            "method_index": self.method_index,
            "state": "pending",
            "hard_decline": False,
            "idempotency_key": self.idempotency_key,
            "batch_id": self.batch_id,
            "batch_index": self.batch_index,
            "charge_metadata": self.metadata,
            "created_at": self.created_at,
            "updated_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class StoredCharge:
    """A charge row found under a key that was already taken, with its method's token."""

    id: str
    idempotency_key: str
    state: str
    amount_minor: int
    currency: str
    payment_method_id: str | None
    processor: str
    token: str | None
    method_index: int
    decline_code: str | None
    decline_message: str | None
    hard_decline: bool
    processor_reference: str | None
    expected_settlement_date: date | None = None


@dataclass(frozen=True, slots=True)
class ChargeOutcomeRow:
    """The final (or `unknown`) state of one charge row."""

    id: str
    state: str
    decline_code: str | None
    decline_message: str | None
    hard_decline: bool
    processor_reference: str | None
    expected_settlement_date: date | None
    updated_at: datetime


def _insert_ignoring_taken_keys(session: Session) -> Any:
    return dialect_insert(session, _CHARGE).on_conflict_do_nothing().returning(_CHARGE.c.idempotency_key)


# Array columns of a pending charge (PostgreSQL path), in INSERT order.
_PENDING_COLUMNS: tuple[Column, ...] = (
    ("id", "text"),
    ("client_id", "text"),
    ("subscription_id", "text"),
    ("kind", "text"),
    ("amount_minor", "bigint"),
    ("currency", "text"),
    ("payment_method_id", "text"),
    ("processor", "text"),
    ("period_start", "timestamptz"),
    ("period_index", "integer"),
    ("attempt", "integer"),
    ("method_index", "integer"),
    ("idempotency_key", "text"),
    ("batch_id", "text"),
    ("batch_index", "integer"),
    ("created_at", "timestamptz"),
    ("charge_metadata", "text"),
)
_PENDING_TARGET = (*(name for name, _ in _PENDING_COLUMNS), "state", "hard_decline", "updated_at")
_PENDING_SELECT = (
    *(name for name, _ in _PENDING_COLUMNS[:-1]),
    "CAST(charge_metadata AS jsonb)",
    "'pending'",
    "false",
    "created_at",
)


async def insert_pending(session: Session, charges: Sequence[NewCharge]) -> set[str]:
    """Insert `pending` rows; returns the idempotency keys actually inserted (the rest were taken)."""
    if not charges:
        return set()
    if is_postgres(session):
        return await _insert_pending_postgres(session, charges)
    conn = await session.connection()
    statement = _insert_ignoring_taken_keys(session)
    inserted: set[str] = set()
    for start in range(0, len(charges), _CHUNK):
        rows = [charge.row() for charge in charges[start : start + _CHUNK]]
        result = await conn.execute(statement, rows)
        inserted.update(result.scalars().all())
    return inserted


async def _insert_pending_postgres(session: Session, charges: Sequence[NewCharge]) -> set[str]:
    rows = [
        (
            c.id,
            c.client_id,
            c.subscription_id,
            c.kind,
            c.amount_minor,
            c.currency,
            c.payment_method_id,
            c.processor,
            c.period_start,
            c.period_index,
            c.attempt,
            c.method_index,
            c.idempotency_key,
            c.batch_id,
            c.batch_index,
            c.created_at,
            json_text(c.metadata),
        )
        for c in charges
    ]
    inserted = await insert_rows(
        session,
        "charge",
        _PENDING_COLUMNS,
        rows,
        target=_PENDING_TARGET,
        select_list=_PENDING_SELECT,
        suffix="ON CONFLICT DO NOTHING RETURNING idempotency_key",
    )
    return {row[0] for row in inserted}


async def charge_families(session: Session, keys: Sequence[str]) -> dict[str, list[StoredCharge]]:
    """Every stored charge of each request: the row under `key` and its fallbacks `key:m{i}`.

    Rows come ordered by method index. Used only when a request's key is already taken (or it
    has no method today), so the prefix scans stay off the common path.
    """
    found: dict[str, list[StoredCharge]] = {key: [] for key in keys}
    conn = await session.connection()
    for key in keys:
        rows = await conn.execute(
            _stored_select().where(
                or_(
                    _CHARGE.c.idempotency_key == key,
                    _CHARGE.c.idempotency_key.startswith(f"{key}:m", autoescape=True),
                )
            )
        )
        for row in rows.all():
            stored = StoredCharge(**row._asdict())
            suffix = stored.idempotency_key[len(key) :]
            # Keep only `key` itself and `key:m<digits>` (not a longer key sharing the prefix).
            if suffix == "" or (suffix.startswith(":m") and suffix[2:].isdigit()):
                found[key].append(stored)
        found[key].sort(key=lambda stored: stored.method_index)
    return found


def _stored_select() -> Any:
    return sa_select(
        _CHARGE.c.id,
        _CHARGE.c.idempotency_key,
        _CHARGE.c.state,
        _CHARGE.c.amount_minor,
        _CHARGE.c.currency,
        _CHARGE.c.payment_method_id,
        _CHARGE.c.processor,
        _METHOD.c.token,
        _CHARGE.c.method_index,
        _CHARGE.c.decline_code,
        _CHARGE.c.decline_message,
        _CHARGE.c.hard_decline,
        _CHARGE.c.processor_reference,
        _CHARGE.c.expected_settlement_date,
    ).select_from(_CHARGE.outerjoin(_METHOD, _METHOD.c.id == _CHARGE.c.payment_method_id))


async def fail_unsent_of_inactive_subscriptions(
    session: Session, charge_ids: Sequence[str], *, code: str, message: str, at: datetime
) -> set[str]:
    """Fail the still-`pending` renewal rows among `charge_ids` whose subscription is no longer
    `active` (cancelled after the row was written); returns the ids failed.

    One UPDATE per chunk, run just before the first processor call: a cancel that committed
    after the pending row was written is then seen before any money moves.
    """
    failed: set[str] = set()
    conn = await session.connection()
    for start in range(0, len(charge_ids), _CHUNK):
        chunk = list(charge_ids[start : start + _CHUNK])
        inactive = sa_select(_SUB.c.id).where(
            _SUB.c.id == _CHARGE.c.subscription_id, _SUB.c.status != "active"
        )
        result = await conn.execute(
            update(_CHARGE)
            .where(
                _CHARGE.c.id.in_(chunk),
                _CHARGE.c.state == "pending",
                _CHARGE.c.kind == "renewal",
                inactive.exists(),
            )
            .values(
                state="failed", decline_code=code, decline_message=message, hard_decline=False, updated_at=at
            )
            .returning(_CHARGE.c.id)
        )
        failed.update(result.scalars().all())
    return failed


_WRITE_OUTCOME = (
    update(_CHARGE)
    # Two equalities rather than IN: an expanding IN list cannot be used with executemany.
    .where(_CHARGE.c.id == bindparam("b_id"), or_(*(_CHARGE.c.state == state for state in OPEN_STATES)))
    .values(
        state=bindparam("b_state"),
        decline_code=bindparam("b_decline_code"),
        decline_message=bindparam("b_decline_message"),
        hard_decline=bindparam("b_hard_decline"),
        processor_reference=bindparam("b_reference"),
        expected_settlement_date=bindparam("b_settlement"),
        updated_at=bindparam("b_updated_at"),
    )
)


_OUTCOME_COLUMNS: tuple[Column, ...] = (
    ("id", "text"),
    ("state", "text"),
    ("decline_code", "text"),
    ("decline_message", "text"),
    ("hard_decline", "boolean"),
    ("processor_reference", "text"),
    ("expected_settlement_date", "date"),
    ("updated_at", "timestamptz"),
)


async def write_outcomes(session: Session, outcomes: Sequence[ChargeOutcomeRow]) -> None:
    """Record outcomes on rows still `pending`/`unknown` (a row already final is left alone)."""
    if not outcomes:
        return
    if is_postgres(session):
        await update_rows(
            session,
            "charge",
            _OUTCOME_COLUMNS,
            [
                (
                    o.id,
                    o.state,
                    o.decline_code,
                    o.decline_message,
                    o.hard_decline,
                    o.processor_reference,
                    o.expected_settlement_date,
                    o.updated_at,
                )
                for o in outcomes
            ],
            assignments=[f"{name} = v.{name}" for name, _ in _OUTCOME_COLUMNS[1:]],
            where="t.id = v.id AND t.state IN ('pending', 'unknown')",
        )
        return
    conn = await session.connection()
    params = [
        {
            "b_id": o.id,
            "b_state": o.state,
            "b_decline_code": o.decline_code,
            "b_decline_message": o.decline_message,
            "b_hard_decline": o.hard_decline,
            "b_reference": o.processor_reference,
            "b_settlement": o.expected_settlement_date,
            "b_updated_at": o.updated_at,
        }
        for o in outcomes
    ]
    await conn.execute(_WRITE_OUTCOME, params)


def enrolment_key(trx_id: str, attempt: int) -> str:
    """Idempotency key of the n-th enrolment charge of a transaction."""
    return f"enrol:{trx_id}:{attempt}"


async def add_charge(session: Session, charge: Charge) -> bool:
    """Insert `charge`; False (and nothing written) when its idempotency key is already taken."""
    try:
        async with session.begin_nested():
            session.add(charge)
    except IntegrityError:
        return False
    return True


_ATTEMPT_PROBE = 8


async def enrolment_attempts(session: Session, client_id: str, trx_id: str) -> int:
    """How many enrolment charges were ever written for a transaction.

    Attempt n's key is ``enrolment_key(trx_id, n)``, written for n = 1, 2, ... in turn (each under the
    unique key, after counting the earlier ones), so the keys are probed by value, a few at a time:
    each probe is a lookup of the client's unique key, whatever the number of charges. (A prefix
    match on the key could use no index and read every charge.)
    """
    found = 0
    while True:
        keys = [enrolment_key(trx_id, found + n) for n in range(1, _ATTEMPT_PROBE + 1)]
        query = (
            select(func.count())
            .select_from(Charge)
            .where(col(Charge.client_id) == client_id)
            .where(col(Charge.idempotency_key).in_(keys))
            .where(Charge.kind == "enrolment")
        )
        seen = int((await session.exec(query)).one())
        found += seen
        if seen < _ATTEMPT_PROBE:
            return found


async def finish_charge(
    session: Session, charge: Charge, *, from_states: Sequence[str], **values: Any
) -> bool:
    """Move `charge` out of one of `from_states`, setting `values`; False if it had already moved.

    The object is refreshed either way.
    """
    result = await session.exec(
        update(Charge)
        .where(col(Charge.id) == charge.id)
        .where(col(Charge.state).in_(list(from_states)))
        .values(**values)
    )
    await session.refresh(charge)
    return bool(result.rowcount == 1)


async def stale_enrolment_charges(
    session: Session, *, before: datetime, limit: int, offsets: Mapping[str, int]
) -> Sequence[Charge]:
    """Enrolment charges still `pending` or `unknown` that were last touched before `before`
    (real time; `offsets`: clients whose clock runs ahead, see `client_time`)."""
    query = (
        select(Charge)
        .where(Charge.kind == "enrolment")
        .where(col(Charge.state).in_(OPEN_STATES))
        .where(touched_before(col(Charge.updated_at), col(Charge.client_id), before, offsets))
        .order_by(col(Charge.updated_at), col(Charge.id))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def charges_of_subscription(session: Session, subscription_id: str) -> Sequence[Charge]:
    """A subscription's charges, newest first (its payment history)."""
    query = (
        select(Charge)
        .where(Charge.subscription_id == subscription_id)
        .order_by(col(Charge.created_at).desc(), col(Charge.id).desc())
    )
    return (await session.exec(query)).all()
