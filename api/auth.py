"""Authentication for /v1 (and /transactions): a Bearer access token on every route, a signature on every write."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from api.rate_limits import rate_limits_of
from api.request_session import request_runtime
from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.services import auth
from billing.services.auth import AuthenticatedClient
from billing.services.client_clock import merchant_clock
from billing.services.runtime import Runtime

SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATE_KEY = "merchant"
_SIGNATURE_KEY = "signature_to_consume"


# Merchant routes outside /v1 (Migo's Payment Link surface): authenticated and signed like /v1.
MERCHANT_PATHS_OUTSIDE_V1 = frozenset({"/transactions"})


def needs_auth(path: str) -> bool:
    """Whether a path is a merchant route: Bearer token required, writes signed."""
    if path.startswith("/v1/"):
        return not path.startswith("/v1/auth/")
    return path.rstrip("/") in MERCHANT_PATHS_OUTSIDE_V1


async def authenticate_request(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: resolve the merchant from the token and check the request signature on writes.

    A verified signature is used up here, in its own committed transaction, before the handler runs,
    so a replay is refused on every API process. The one exception is a POST carrying an
    Idempotency-Key: the key's rule comes first (a retry of a finished request gets the stored
    answer), so ``claim_idempotency_key`` uses the signature up once the request is known to run.
    """
    # OPTIONS only lists the methods of a path: it reveals nothing and needs no token.
    if not needs_auth(connection.url.path) or connection.scope.get("method") == "OPTIONS":
        return
    runtime = await request_runtime(connection)
    secret = runtime.settings.jwt_secret()
    state = connection.scope.setdefault("state", {})
    async with runtime.sessions() as session:
        merchant = await auth.authenticate(
            session, runtime.clock, secret, connection.headers.get("authorization")
        )
        # The client's budget is spent before its signature is used up or its key claimed: a
        # refused request (429) leaves nothing behind and may be sent again as it is.
        rate_limits_of(connection).admit_client(merchant.id)
        method = connection.scope.get("method", "GET")
        if method in SIGNED_METHODS and merchant.signing_required:
            if not isinstance(connection, Request):  # pragma: no cover - HTTP routes always get a Request
                raise BillingError("INVALID_SIGNATURE")
            body = await connection.body()  # cached: the handler still reads the same bytes
            idempotency_key = connection.headers.get("idempotency-key")
            accepted = await auth.verify_request_signature(
                session,
                runtime.clock,
                runtime.settings.auth,
                merchant,
                auth.SignedRequest(
                    method=method,
                    target=request_target(connection.scope),
                    idempotency_key=idempotency_key,
                    body=body,
                    timestamp=connection.headers.get("x-timestamp"),
                    signature=connection.headers.get("x-signature"),
                    version=connection.headers.get("x-signature-version"),
                ),
            )
            if method == "POST" and idempotency_key is not None:
                state[_SIGNATURE_KEY] = accepted
            else:
                await auth.consume_signature(session, merchant.id, accepted)
                await session.commit()
    state[_STATE_KEY] = merchant


def request_target(scope: Scope) -> str:
    """The path as the client sent it, plus ``?`` and the raw query string when there is one."""
    # Some servers put the query string in raw_path too; the query comes from query_string only.
    raw_path = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    target = raw_path.decode("utf-8", "replace")
    query = scope.get("query_string") or b""
    return f"{target}?{query.decode('utf-8', 'replace')}" if query else target


def pending_signature(scope: Scope) -> auth.AcceptedSignature | None:
    """A verified signature this request still has to use up (a POST with an Idempotency-Key)."""
    value = scope.get("state", {}).get(_SIGNATURE_KEY)
    return value if isinstance(value, auth.AcceptedSignature) else None


def merchant_of(scope: Scope) -> AuthenticatedClient | None:
    """The merchant the guard authenticated for this request, if any."""
    merchant = scope.get("state", {}).get(_STATE_KEY)
    return merchant if isinstance(merchant, AuthenticatedClient) else None


async def provide_merchant(request: Request[Any, Any, Any]) -> AuthenticatedClient:
    """The authenticated merchant (dependency ``merchant``)."""
    merchant = merchant_of(request.scope)
    if merchant is None:
        raise BillingError("UNAUTHORIZED")
    return merchant


def clock_of(runtime: Runtime, merchant: AuthenticatedClient) -> Clock:
    """The merchant's clock: every timestamp its request writes (a sandbox clock may run ahead)."""
    return merchant_clock(runtime.clock, merchant.clock_offset_seconds)


def ensure_same_client(merchant: AuthenticatedClient, named: str | None, *, field: str = "client") -> None:
    """A body or query naming another client than the token's is refused (403), never served."""
    if named is not None and named != merchant.id:
        raise BillingError(
            "CLIENT_MISMATCH", message=f"{field} does not match the authenticated client.", field=field
        )
