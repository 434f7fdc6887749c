"""Idempotency-Key: the first response to a POST is kept and replayed for the same key and request.

The key is claimed *before* the request runs, by inserting an in-progress record under the unique
(client_id, key) constraint in its own committed transaction. A concurrent duplicate therefore
finds the record and gets 7701 instead of running the request a second time. When the request
ends, its status and body are stored (4xx included: the same request would fail the same way);
a 5xx or a crash releases the key so the merchant can retry.

Releasing on a 5xx is only safe while nothing was committed. A request that moves money (an
on-demand batch, a CSV upload) therefore stores its answer with ``record_response`` in the very
transaction that commits its effect: a record that holds an answer is never released, so after
that commit every retry replays it, whatever fails next (a lost commit acknowledgement, an error
while answering, a process killed before the key is settled). The update only matches the
request's own in-progress record, so a request that lost its key to a retry (see
``ABANDONED_AFTER``) fails to record and its effect rolls back with it.

The replay window runs on the engine's clock, not a sandbox client's shifted clock: it is about
transport retries, not billing time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.services import auth
from billing.services.runtime import Runtime
from billing.store import idempotency as store
from billing.store.engine import Session

log = logging.getLogger("billing.idempotency")

MAX_KEY_LENGTH = 255
# An in-progress record this old belongs to a process that died mid-request (a crash inside the
# process releases its key at once). No request runs this long, so the key may be claimed again.
ABANDONED_AFTER = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key: it runs, then its response is stored (or the key released)."""

    record_id: int
    client_id: str
    key: str
    claimed_at: datetime  # with record_id, names this claim (SQLite reuses a deleted row's id)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The first response to this key and request, to be replayed as it was."""

    status_code: int
    body: bytes
    content_type: str | None


def check_key(key: str) -> str:
    """A usable key: 1-255 printable ASCII characters (a UUID is the usual choice)."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            field="Idempotency-Key",
        )
    return key


def request_hash(method: str, path: str, query: bytes, body: bytes) -> str:
    """SHA-256 over the method, path, query string and the exact body bytes.

    Bytes, not parsed JSON: a retry must send the same bytes it signed the first time.
    """
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query, body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no ambiguity between parts
        digest.update(part)
    return digest.hexdigest()


async def claim(
    session: Session,
    clock: Clock,
    *,
    ttl: timedelta,
    client_id: str,
    key: str,
    method: str,
    path: str,
    fingerprint: str,
) -> Claim | StoredResponse:
    """Claim ``key`` for this request, or answer the response stored for it.

    Commits its own transactions. Raises 7700 when the key was used for a different request
    and 7701 while the first request with this key is still running.
    """
    check_key(key)
    for _ in range(3):  # an expired or abandoned record is cleared once, then claimed
        now = clock.now()
        record_id = await store.insert_in_progress(
            session,
            client_id=client_id,
            key=key,
            method=method.upper(),
            path=path[:500],
            request_hash=fingerprint,
            now=now,
            expires_at=now + ttl,
        )
        if record_id is not None:
            await session.commit()
            return Claim(record_id=record_id, client_id=client_id, key=key, claimed_at=now)
        existing = await store.get_record(session, client_id, key)
        if existing is None or existing.id is None:  # released or purged in between: claim again
            await session.commit()
            continue
        if existing.expires_at <= now:
            await store.delete_record(session, existing.id)
            await session.commit()
            continue
        if existing.status_code is None and existing.created_at <= now - ABANDONED_AFTER:
            # Only while still in progress: the request may have just stored its answer along with
            # its effect, and then the retry must replay it (the next round reads it back).
            await store.release_record(session, existing.id, claimed_at=existing.created_at)
            await session.commit()
            continue
        await session.commit()
        if existing.request_hash != fingerprint:
            raise BillingError(
                "IDEMPOTENCY_KEY_REUSED",
                message="This Idempotency-Key was already used with a different request "
                "(method, path or body); use a new key for a new request.",
                field="Idempotency-Key",
            )
        if existing.status_code is None:
            raise BillingError("IDEMPOTENCY_IN_PROGRESS", field="Idempotency-Key")
        return StoredResponse(
            status_code=existing.status_code,
            body=existing.response_body or b"",
            content_type=existing.response_content_type,
        )
    raise BillingError("IDEMPOTENCY_IN_PROGRESS", field="Idempotency-Key")


async def finish(
    session: Session, claim: Claim, *, status_code: int, body: bytes, content_type: str | None
) -> None:
    """Store the response for replay, or release the key when the request failed on our side (5xx).

    Both leave a record that already holds an answer (``record_response``) as it is.
    """
    if status_code >= 500:
        await store.release_record(session, claim.record_id, claimed_at=claim.claimed_at)
    else:
        await store.complete_record(
            session,
            claim.record_id,
            claimed_at=claim.claimed_at,
            status_code=status_code,
            body=body,
            content_type=content_type,
        )
    await session.commit()


async def record_response(
    session: Session, claim: Claim, *, status_code: int, body: bytes, content_type: str | None
) -> None:
    """Store the answer in the caller's transaction, the one that commits the request's effect.

    Does not commit. Raises 7701 when this request no longer holds its key (a retry took over an
    in-progress record it judged abandoned): the caller's transaction must roll back, so only one
    of the two requests has an effect.
    """
    stored = await store.complete_record(
        session,
        claim.record_id,
        claimed_at=claim.claimed_at,
        status_code=status_code,
        body=body,
        content_type=content_type,
    )
    if not stored:
        raise BillingError(
            "IDEMPOTENCY_IN_PROGRESS",
            message="A retry with this Idempotency-Key took over while this request was running; "
            "this request had no effect.",
            field="Idempotency-Key",
        )


async def release(session: Session, claim: Claim) -> None:
    """Forget an in-progress claim (the request crashed): the merchant may retry with the same key.

    A record that already holds an answer stays: its effect is committed and must be replayed.
    """
    await store.release_record(session, claim.record_id, claimed_at=claim.claimed_at)
    await session.commit()


async def purge_expired(session: Session, clock: Clock) -> int:
    """Delete records past their replay window; how many were deleted."""
    purged = await store.purge_expired(session, clock.now())
    await session.commit()
    return purged


async def purge_pass(runtime: Runtime, identity: str) -> dict[str, int]:
    """Worker pass: drop expired idempotency records (expired ones are already ignored on lookup)
    and used request signatures whose timestamps the tolerance window refuses anyway."""
    async with runtime.sessions() as session:
        purged = await purge_expired(session, runtime.clock)
        signatures = await auth.purge_seen_signatures(session, runtime.clock)
    if purged or signatures:
        log.info(
            "idempotency records purged",
            extra={"purged": purged, "signatures_purged": signatures, "identity": identity},
        )
    return {"purged": purged, "signatures_purged": signatures}
