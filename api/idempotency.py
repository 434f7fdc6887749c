"""``Idempotency-Key`` on POST: claim after authentication, store the final response, replay it.

Three pieces, because the key belongs to a merchant and the response is only final at the ASGI edge:

- ``claim_idempotency_key`` is an app guard that runs after ``authenticate_request``; it claims the
  key (or raises ``IdempotentReplay`` / a 409) before the handler runs.
- ``IdempotentReplay`` is answered by ``replay_response`` with the stored status and bytes.
- ``idempotency_middleware`` wraps the whole app: it holds back the claimed request's response until
  the record is written (so a retry arriving right after the answer finds it), stores 2xx-4xx, and
  releases the key on a 5xx or a crash.
- ``claim_of_request`` hands a handler its claim, for routes that move money: they store their
  answer in the transaction that commits their effect (``idempotency.record_response``), so a 5xx
  or a crash after that commit cannot release the key and the retry replays the answer.

The header is optional and only honoured on POST by an authenticated merchant; elsewhere it is ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import merchant_of, pending_signature
from api.request_session import request_runtime
from billing.services import auth, idempotency
from billing.services.idempotency import Claim, StoredResponse
from billing.services.runtime import Runtime

log = logging.getLogger("billing.idempotency")

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
_STATE_KEY = "idempotency_claim"


@dataclass(frozen=True, slots=True)
class _ClaimInFlight:
    claim: Claim
    runtime: Runtime


class IdempotentReplay(Exception):
    """Raised by the guard to answer with the stored response instead of running the handler."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.stored = stored


async def claim_idempotency_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard (after authentication): claim the POST's Idempotency-Key for this merchant."""
    if connection.scope.get("method") != "POST" or not isinstance(connection, Request):
        return
    key = connection.headers.get(HEADER)
    merchant = merchant_of(connection.scope)
    if key is None or merchant is None:
        return
    body = await connection.body()  # cached in the scope: the handler reads the same bytes
    runtime = await request_runtime(connection)
    fingerprint = idempotency.request_hash(
        "POST", connection.scope["path"], connection.scope.get("query_string", b""), body
    )
    async with runtime.sessions() as session:
        outcome = await idempotency.claim(
            session,
            runtime.clock,
            ttl=timedelta(hours=runtime.settings.auth.idempotency_ttl_hours),
            client_id=merchant.id,
            key=key,
            method="POST",
            path=connection.scope["path"],
            fingerprint=fingerprint,
        )
        if isinstance(outcome, StoredResponse):
            raise IdempotentReplay(outcome)
        signature = pending_signature(connection.scope)
        if signature is not None:
            # The request will run: its signature is used up now, or it is a replay of a request
            # whose key was released (a 5xx) and the claim is given back.
            try:
                await auth.consume_signature(session, merchant.id, signature)
                await session.commit()
            except BaseException:
                await session.rollback()
                await idempotency.release(session, outcome)
                raise
    connection.scope.setdefault("state", {})[_STATE_KEY] = _ClaimInFlight(outcome, runtime)


def replay_response(_: Request[Any, Any, Any], exc: IdempotentReplay) -> Response[bytes]:
    """The stored response, byte for byte, marked as a replay."""
    stored = exc.stored
    return Response(
        content=stored.body,
        status_code=stored.status_code,
        media_type=stored.content_type or "application/json",
        headers={REPLAYED_HEADER: "true"},
    )


IDEMPOTENCY_EXCEPTION_HANDLERS: dict[Any, Any] = {IdempotentReplay: replay_response}


def _claim_of(scope: Scope) -> _ClaimInFlight | None:
    value = scope.get("state", {}).get(_STATE_KEY)
    return value if isinstance(value, _ClaimInFlight) else None


def claim_of_request(request: Request[Any, Any, Any]) -> Claim | None:
    """The Idempotency-Key claim this request holds (None without a key, or on a replay)."""
    in_flight = _claim_of(request.scope)
    return in_flight.claim if in_flight is not None else None


def _wants_idempotency(scope: Scope) -> bool:
    if scope["type"] != "http" or scope.get("method") != "POST":
        return False
    return any(name.lower() == HEADER.encode() for name, _ in scope.get("headers") or [])


async def _settle(in_flight: _ClaimInFlight, status: int, body: bytes, content_type: str | None) -> None:
    """Store the response (or release the key on a 5xx); never let a failure here lose the answer."""
    try:
        async with in_flight.runtime.sessions() as session:
            await idempotency.finish(
                session, in_flight.claim, status_code=status, body=body, content_type=content_type
            )
    except Exception:
        # The record stays in progress and is treated as abandoned later; the merchant still gets the answer.
        log.exception("idempotency record not stored", extra={"key_record": in_flight.claim.record_id})


async def _release(in_flight: _ClaimInFlight) -> None:
    try:
        with anyio.CancelScope(shield=True):
            async with in_flight.runtime.sessions() as session:
                await idempotency.release(session, in_flight.claim)
    except Exception:
        log.exception("idempotency key not released", extra={"key_record": in_flight.claim.record_id})


def idempotency_middleware(app: ASGIApp) -> ASGIApp:
    """Wrap the app: settle claimed keys with the response actually sent."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if not _wants_idempotency(scope):
            await app(scope, receive, send)
            return
        held: list[Message] = []
        body = bytearray()
        response: dict[str, Any] = {"status": 500, "content_type": None, "settled": False}

        async def send_wrapper(message: Message) -> None:
            in_flight = _claim_of(scope)
            if in_flight is None or response["settled"]:
                await send(message)
                return
            if message["type"] == "http.response.start":
                response["status"] = int(message["status"])
                for name, value in message.get("headers") or []:
                    if name.lower() == b"content-type":
                        response["content_type"] = value.decode("latin-1")[:100]
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                response["settled"] = True
                await _settle(in_flight, response["status"], bytes(body), response["content_type"])
                for pending in held:
                    await send(pending)

        try:
            await app(scope, receive, send_wrapper)
        except BaseException:
            in_flight = _claim_of(scope)
            if in_flight is not None and not response["settled"]:
                await _release(in_flight)
            raise
        in_flight = _claim_of(scope)
        if in_flight is not None and not response["settled"]:
            # The app returned without a complete response: nothing to replay, so free the key.
            await _release(in_flight)
            for pending in held:
                await send(pending)

    return middleware
