"""Clients (tenants), their signing keys and refresh tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, update
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


async def client_for_token(session: Session, client_id: str, family_id: str) -> tuple[Client, bool] | None:
    """The client an access token names and whether its token family was revoked: one statement.

    Every authenticated request asks both questions, so they travel in one round trip.
    """
    revoked = (
        select(RefreshToken.id)
        .where(RefreshToken.family_id == family_id)
        .where(col(RefreshToken.revoked_at).is_not(None))
        .exists()
    )
    query = select(Client, revoked.label("revoked")).where(Client.id == client_id)
    row = (await session.exec(query)).first()
    if row is None:
        return None
    client, family_revoked = row
    return client, bool(family_revoked)


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
