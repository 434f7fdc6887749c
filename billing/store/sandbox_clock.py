"""A client's clock: its time zone and sandbox offset (its "now" is real time plus this many seconds)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from billing.store.engine import Session
from billing.store.models import Client

_CLIENT = Client.metadata.tables["client"]


@dataclass(frozen=True, slots=True)
class ClientClock:
    """What the sandbox clock needs to know about a client."""

    id: str
    environment: str
    offset_seconds: int


async def client_clock(session: Session, client_id: str) -> ClientClock | None:
    """The client's environment and clock offset, or None for an unknown client."""
    conn = await session.connection()
    row = (
        await conn.execute(
            select(_CLIENT.c.id, _CLIENT.c.environment, _CLIENT.c.clock_offset_seconds).where(
                _CLIENT.c.id == client_id
            )
        )
    ).first()
    return None if row is None else ClientClock(row[0], row[1], int(row[2]))


async def replace_offset(session: Session, client_id: str, *, expected: int, offset_seconds: int) -> bool:
    """Set the offset if it is still `expected` (one statement); False when another move came first."""
    conn = await session.connection()
    result = await conn.execute(
        update(_CLIENT)
        .where(_CLIENT.c.id == client_id, _CLIENT.c.clock_offset_seconds == expected)
        .values(clock_offset_seconds=offset_seconds)
    )
    return result.rowcount == 1


async def client_timezone(session: Session, client_id: str) -> str | None:
    """The client's IANA time zone, or None for an unknown client."""
    conn = await session.connection()
    row = (await conn.execute(select(_CLIENT.c.timezone).where(_CLIENT.c.id == client_id))).first()
    return None if row is None else str(row[0])
