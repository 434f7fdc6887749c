"""Clients (tenants), their signing keys and refresh tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from billing.store.bulk import dialect_insert
from billing.store.engine import Session
from billing.store.models import Client, RefreshToken, SeenSignature, SigningKey
from billing.store.owned import owned_row


async def get_client(session: Session, client_id: str) -> Client | None:
    return await session.get(Client, client_id)


async def list_clients(session: Session) -> Sequence[Client]:
    return (await session.exec(select(Client).order_by(col(Client.created_at)))).all()


async def keys_of(session: Session, client_id: str, *, include_revoked: bool = False) -> Sequence[SigningKey]:
    query = select(SigningKey).where(SigningKey.client_id == client_id)
    if not include_revoked:
        query = query.where(col(SigningKey.revoked_at).is_(None))
    return (await session.exec(query.order_by(col(SigningKey.created_at)))).all()


async def get_key(session: Session, client_id: str, key_id: str) -> SigningKey | None:
    return await owned_row(session, SigningKey, client_id, key_id)


async def refresh_token_by_hash(session: Session, token_hash: str) -> RefreshToken | None:
    return (await session.exec(select(RefreshToken).where(RefreshToken.token_hash == token_hash))).first()


async def mark_refresh_token_used(session: Session, token_id: str, now: datetime) -> bool:
    """Use a refresh token once; False when another request used (or revoked) it first."""
    result = await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.id) == token_id)
        .where(col(RefreshToken.used_at).is_(None))
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)


async def revoke_family(session: Session, family_id: str, now: datetime) -> None:
    await session.exec(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id)
        .where(col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=now)
    )


@dataclass(frozen=True, slots=True)
class TokenClient:
    """What every authenticated request needs of the client its access token names."""

    id: str
    name: str
    environment: str
    timezone: str
    signing_required: bool
    signature_scheme: str
    clock_offset_seconds: int
    family_revoked: bool


_CLIENT: Any = Client.__table__  # type: ignore[attr-defined]
_REFRESH: Any = RefreshToken.__table__  # type: ignore[attr-defined]

# Built once: every merchant request runs it, and building a statement (and its cache key) costs
# more than running it. Plain columns, not a Client entity: the request only reads them.
_CLIENT_FOR_TOKEN = sa_select(
    _CLIENT.c.id,
    _CLIENT.c.name,
    _CLIENT.c.environment,
    _CLIENT.c.timezone,
    _CLIENT.c.signing_required,
    _CLIENT.c.signature_scheme,
    _CLIENT.c.clock_offset_seconds,
    sa_select(_REFRESH.c.id)
    .where(_REFRESH.c.family_id == bindparam("family_id"), _REFRESH.c.revoked_at.is_not(None))
    .exists()
    .label("family_revoked"),
).where(_CLIENT.c.id == bindparam("client_id"))


async def client_for_token(session: Session, client_id: str, family_id: str) -> TokenClient | None:
    """The client an access token names and whether its token family was revoked: one statement.

    Every authenticated request asks both questions, so they travel in one round trip.
    """
    conn = await session.connection()
    row = (await conn.execute(_CLIENT_FOR_TOKEN, {"client_id": client_id, "family_id": family_id})).first()
    if row is None:
        return None
    return TokenClient(
        id=row.id,
        name=row.name,
        environment=row.environment,
        timezone=row.timezone,
        signing_required=bool(row.signing_required),
        signature_scheme=row.signature_scheme,
        clock_offset_seconds=int(row.clock_offset_seconds),
        family_revoked=bool(row.family_revoked),
    )


async def remember_signature(session: Session, client_id: str, digest: str, expires_at: datetime) -> bool:
    """Record an accepted signed message; False when it was seen before (a replay).

    The primary key (client_id, digest) decides between concurrent replays on every process:
    ``ON CONFLICT DO NOTHING`` lets exactly one insert through.
    """
    statement = (
        dialect_insert(session, SeenSignature)
        .values(client_id=client_id, digest=digest, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["client_id", "digest"])
        .returning(col(SeenSignature.digest))
    )
    return (await session.exec(statement)).first() is not None


async def purge_seen_signatures(session: Session, now: datetime) -> int:
    """Forget signatures whose timestamps left the tolerance window; the number deleted."""
    result = await session.exec(delete(SeenSignature).where(col(SeenSignature.expires_at) <= now))
    return int(result.rowcount or 0)
