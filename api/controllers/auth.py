"""Login and token refresh."""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from pydantic import BaseModel, Field

from api.envelope import Envelope
from billing.services import auth
from billing.services.runtime import Runtime


class LoginRequest(BaseModel):
    clientId: str = Field(min_length=1, max_length=64)
    timestamp: int | str = Field(description="Unix seconds; must be within 5 minutes of server time")
    signature: str = Field(min_length=1, description='base64 Ed25519 signature of "{clientId}.{timestamp}"')


class RefreshRequest(BaseModel):
    refreshToken: str = Field(min_length=1)


class Tokens(BaseModel):
    accessToken: str
    refreshToken: str
    expirationToken: int
    expirationRefreshToken: int


@post("/v1/auth/login", operation_id="Login", tags=["auth"], status_code=200)
async def login(runtime: NamedDependency[Runtime], data: JSONBody[LoginRequest]) -> Envelope[Tokens]:
    """Exchange a signed ``"{clientId}.{timestamp}"`` for an access token (30 min) and a refresh token (7 days)."""
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


@post("/v1/auth/refresh", operation_id="RefreshTokens", tags=["auth"], status_code=200)
async def refresh(runtime: NamedDependency[Runtime], data: JSONBody[RefreshRequest]) -> Envelope[Tokens]:
    """Rotate both tokens. The presented refresh token dies; reusing it revokes the whole login."""
    async with runtime.sessions() as session:
        pair = await auth.refresh(
            session, runtime.clock, runtime.settings.auth, runtime.settings.jwt_secret(), data.refreshToken
        )
        await session.commit()
    return Envelope(message="Tokens refreshed", data=Tokens.model_validate(pair.as_wire()))
