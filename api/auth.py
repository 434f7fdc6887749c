"""Authentication for /v1 (and /transactions): a Bearer access token on every route, a signature on every write."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from billing.domain.errors import BillingError
from billing.services import auth
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime

SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STATE_KEY = "merchant"


# Merchant routes outside /v1 (Migo's Payment Link surface): authenticated and signed like /v1.
MERCHANT_PATHS_OUTSIDE_V1 = frozenset({"/transactions"})


def needs_auth(path: str) -> bool:
    """Whether a path is a merchant route: Bearer token required, writes signed."""
    if path.startswith("/v1/"):
        return not path.startswith("/v1/auth/")
    return path.rstrip("/") in MERCHANT_PATHS_OUTSIDE_V1


async def authenticate_request(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: resolve the merchant from the token and check the request signature on writes."""
    # OPTIONS only lists the methods of a path: it reveals nothing and needs no token.
    if not needs_auth(connection.url.path) or connection.scope.get("method") == "OPTIONS":
        return
    runtime: Runtime = connection.app.state.runtime
    secret = runtime.settings.jwt_secret()
    async with runtime.sessions() as session:
        merchant = await auth.authenticate(
            session, runtime.clock, secret, connection.headers.get("authorization")
        )
        method = connection.scope.get("method", "GET")
        if method in SIGNED_METHODS and merchant.signing_required:
            if not isinstance(connection, Request):  # pragma: no cover - HTTP routes always get a Request
                raise BillingError("INVALID_SIGNATURE")
            body = await connection.body()  # cached: the handler still reads the same bytes
            await auth.verify_request_signature(
                session,
                runtime.clock,
                runtime.settings.auth,
                merchant,
                timestamp=connection.headers.get("x-timestamp"),
                signature=connection.headers.get("x-signature"),
                body=body,
            )
    connection.scope.setdefault("state", {})[_STATE_KEY] = merchant


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


def ensure_same_client(merchant: AuthenticatedClient, named: str | None, *, field: str = "client") -> None:
    """A body or query naming another client than the token's is refused (403), never served."""
    if named is not None and named != merchant.id:
        raise BillingError(
            "CLIENT_MISMATCH", message=f"{field} does not match the authenticated client.", field=field
        )
