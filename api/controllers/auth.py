"""Login and token refresh."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from api.envelope import Envelope
from api.rate_limits import client_address, rate_limits_of
from api.schemas.wire import responses
from billing.services import auth
from billing.services.runtime import Runtime


def _integer_or_text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError("wrong_type", "must be an integer or a string of digits")
    return value


class LoginRequest(BaseModel):
    clientId: str = Field(min_length=1, max_length=64, examples=["cli_01JH3Q9ZC0W5M1V7X8Y2K4N6P8"])
    timestamp: Annotated[int | str, BeforeValidator(_integer_or_text)] = Field(
        description="Unix time in seconds; must be within 5 minutes of server time", examples=[1767225600]
    )
    signature: str = Field(
        min_length=1,
        description='base64 Ed25519 signature of "{clientId}.{timestamp}"',
        examples=["vJ0m1u…base64…Ag=="],
    )


class RefreshRequest(BaseModel):
    refreshToken: str = Field(min_length=1)


class Tokens(BaseModel):
    accessToken: str = Field(description="JWT for the Authorization: Bearer header (30 minutes).")
    refreshToken: str = Field(description="Single use: trade it for a new pair before it expires (7 days).")
    expirationToken: int = Field(description="Unix time in seconds when accessToken expires.")
    expirationRefreshToken: int = Field(description="Unix time in seconds when refreshToken expires.")


@post(
    "/v1/auth/login",
    operation_id="Login",
    tags=["auth"],
    status_code=200,
    responses=responses(200, Tokens, "Logged in"),
)
async def login(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], data: JSONBody[LoginRequest]
) -> Envelope[Tokens]:
    """Exchange a signed ``"{clientId}.{timestamp}"`` for an access token (30 min) and a refresh token (7 days)."""
    limits = rate_limits_of(request)
    limits.admit_auth_address("login", client_address(request))
    limits.admit_auth_client("login", data.clientId)
    async with runtime.sessions() as session, session.begin():
        pair = await auth.login(
            session,
            runtime.clock,
            runtime.settings.auth,
            runtime.settings.jwt_secret(),
            client_id=data.clientId,
            timestamp=data.timestamp,
            signature=data.signature,
        )
    return Envelope(message="Logged in", data=Tokens.model_validate(pair.as_wire()))


@post(
    "/v1/auth/refresh",
    operation_id="RefreshTokens",
    tags=["auth"],
    status_code=200,
    responses=responses(200, Tokens, "Tokens refreshed"),
)
async def refresh(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime], data: JSONBody[RefreshRequest]
) -> Envelope[Tokens]:
    """Rotate both tokens. The presented refresh token dies; reusing it revokes the whole login."""
    limits = rate_limits_of(request)
    limits.admit_auth_address("refresh", client_address(request))
    async with runtime.sessions() as session:
        pair = await auth.refresh(
            session,
            runtime.clock,
            runtime.settings.auth,
            runtime.settings.jwt_secret(),
            data.refreshToken,
            # The token's client is known once it is found; a refused refresh leaves the token unused.
            admit=lambda client_id: limits.admit_auth_client("refresh", client_id),
        )
        await session.commit()
    return Envelope(message="Tokens refreshed", data=Tokens.model_validate(pair.as_wire()))
