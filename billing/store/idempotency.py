"""Idempotency records: one per (client, Idempotency-Key); in progress while ``status_code`` is NULL."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select

from billing.store.bulk import dialect_insert
from billing.store.engine import Session
from billing.store.models import IdempotencyRecord


async def insert_in_progress(
    session: Session,
    *,
    client_id: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
    now: datetime,
    expires_at: datetime,
) -> int | None:
    """Insert an in-progress record; its id, or None when (client, key) already has one.

    ``ON CONFLICT DO NOTHING`` on the unique (client_id, key): a concurrent duplicate waits
    for the first insert's transaction and then inserts nothing, instead of failing.
    """
    statement = (
        dialect_insert(session, IdempotencyRecord)
        .values(
            client_id=client_id,
            key=key,
            method=method,
            path=path,
            request_hash=request_hash,
            created_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=["client_id", "key"])
        .returning(col(IdempotencyRecord.id))
    )
    inserted = (await session.exec(statement)).first()
    return None if inserted is None else int(inserted[0])


async def get_record(session: Session, client_id: str, key: str) -> IdempotencyRecord | None:
    query = select(IdempotencyRecord).where(
        IdempotencyRecord.client_id == client_id, IdempotencyRecord.key == key
    )
    return (await session.exec(query)).first()


async def delete_record(session: Session, record_id: int) -> bool:
    """Remove one record (an expired or abandoned one, before the key is claimed again)."""
    result = await session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.id) == record_id))
    return bool(result.rowcount == 1)


async def complete_record(
    session: Session,
    record_id: int,
    *,
    claimed_at: datetime,
    status_code: int,
    body: bytes,
    content_type: str | None,
) -> bool:
    """Store the response of an in-progress record; False if it was no longer in progress.

    ``claimed_at`` names the claim as well as the id: SQLite hands a deleted row's id to the
    next insert, so a released or taken-over record's id may already belong to a newer claim.
    """
    result = await session.exec(
        update(IdempotencyRecord)
        .where(col(IdempotencyRecord.id) == record_id)
        .where(col(IdempotencyRecord.created_at) == claimed_at)
        .where(col(IdempotencyRecord.status_code).is_(None))
        .values(status_code=status_code, response_body=body, response_content_type=content_type)
    )
    return bool(result.rowcount == 1)


async def release_record(session: Session, record_id: int, *, claimed_at: datetime) -> bool:
    """Delete a record that is still in progress (its request failed with a 5xx or crashed, or
    it was abandoned); a record holding an answer is never deleted here."""
    result = await session.exec(
        delete(IdempotencyRecord)
        .where(col(IdempotencyRecord.id) == record_id)
        .where(col(IdempotencyRecord.created_at) == claimed_at)
        .where(col(IdempotencyRecord.status_code).is_(None))
    )
    return bool(result.rowcount == 1)


async def purge_expired(session: Session, now: datetime) -> int:
    """Delete every record whose replay window has passed; the number deleted."""
    result = await session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.expires_at) <= now))
    return int(result.rowcount or 0)
