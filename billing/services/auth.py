"""Merchant authentication: Ed25519 login, JWT access tokens, rotating refresh tokens, signed requests.

- Login: the client signs ``"{clientId}.{timestamp}"`` with one of its Ed25519 keys.
- Access tokens: HS256 JWTs (``sub`` = client id, ``fam`` = the login's token family), short-lived.
- Refresh tokens: opaque, stored as SHA-256 hashes, single-use. Presenting a used one revokes its whole
  family: the refresh tokens and the access tokens issued under it.
- Signed requests: ``X-Signature`` = base64 Ed25519 over ``"{X-Timestamp}." + raw body bytes``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.settings import AuthSettings
from billing.store import clients as store
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Client, RefreshToken, SigningKey

ENVIRONMENTS = ("sandbox", "production")


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """The merchant a request acts for."""

    id: str
    name: str
    environment: str
    timezone: str
    signing_required: bool
    family_id: str | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.environment == "sandbox"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: int  # epoch seconds
    refresh_expires_at: int

    def as_wire(self) -> dict[str, object]:
        return {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expirationToken": self.access_expires_at,
            "expirationRefreshToken": self.refresh_expires_at,
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    key: SigningKey
    private_key_pem: str | None  # only when the engine generated the pair; shown once, never stored


# ---- keys -------------------------------------------------------------------------------------------


def generate_key_pair() -> tuple[str, str]:
    """A fresh Ed25519 pair: (private key PEM, public key as base64 of the 32 raw bytes)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return pem, public_key_b64(private.public_key())


def public_key_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> str:
    """Accept a PEM public key or base64 of the 32 raw bytes; answer the base64 form."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            loaded = serialization.load_pem_public_key(text.encode())
            if not isinstance(loaded, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return public_key_b64(loaded)
        raw = base64.b64decode(text, validate=True)
        return public_key_b64(Ed25519PublicKey.from_public_bytes(raw))
    except (ValueError, binascii.Error) as exc:
        raise BillingError(
            "CHECK_PARAMETERS", message="The public key must be an Ed25519 key (PEM or base64 of 32 bytes)."
        ) from exc


def sign(private_key_pem: str, message: bytes) -> str:
    """Base64 Ed25519 signature of ``message`` (what merchants compute; used by `billing sign`)."""
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise BillingError("CHECK_PARAMETERS", message="The private key must be an Ed25519 key.")
    return base64.b64encode(private.sign(message)).decode()


async def create_client(
    session: Session,
    clock: Clock,
    *,
    name: str,
    timezone: str,
    environment: str,
    settings: AuthSettings,
    public_key: str | None = None,
    signing_required: bool = True,
) -> tuple[Client, NewKey]:
    """Register a merchant and its first signing key (generated unless ``public_key`` is given)."""
    if not name.strip():
        raise BillingError("CHECK_PARAMETERS", message="name must not be empty.", field="name")
    if environment not in ENVIRONMENTS:
        raise BillingError(
            "CHECK_PARAMETERS", message="environment must be sandbox or production.", field="environment"
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BillingError(
            "CHECK_PARAMETERS", message="timezone must be an IANA name.", field="timezone"
        ) from exc
    if environment == "production" and not signing_required:
        raise BillingError("CHECK_PARAMETERS", message="Production clients must sign their requests.")
    now = clock.now()
    client = Client(
        id=new_id("client"),
        name=name.strip(),
        timezone=timezone,
        environment=environment,
        signing_required=signing_required,
        created_at=now,
    )
    session.add(client)
    await session.flush()
    key = await add_key(session, clock, client.id, settings=settings, public_key=public_key)
    return client, key


async def add_key(
    session: Session,
    clock: Clock,
    client_id: str,
    *,
    settings: AuthSettings,
    public_key: str | None = None,
    lifetime_days: int | None = None,
) -> NewKey:
    """Add a signing key (rotation: add the new one, switch, then revoke the old one)."""
    if await store.get_client(session, client_id) is None:
        raise BillingError("CLIENT_NOT_FOUND")
    private_pem = None
    if public_key is None:
        private_pem, public_b64 = generate_key_pair()
    else:
        public_b64 = parse_public_key(public_key)
    now = clock.now()
    key = SigningKey(
        id=new_id("signing_key"),
        client_id=client_id,
        public_key=public_b64,
        expires_at=now + timedelta(days=lifetime_days or settings.key_lifetime_days),
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return NewKey(key=key, private_key_pem=private_pem)


async def list_clients(session: Session) -> Sequence[Client]:
    """Every merchant, oldest first (operator view)."""
    return await store.list_clients(session)


async def list_keys(session: Session, client_id: str) -> Sequence[SigningKey]:
    """A client's signing keys, revoked ones included, oldest first."""
    if await store.get_client(session, client_id) is None:
        raise BillingError("CLIENT_NOT_FOUND")
    return await store.keys_of(session, client_id, include_revoked=True)


def key_status(key: SigningKey, now: datetime) -> str:
    """``active``, ``expired`` or ``revoked``: what a signature by this key would get."""
    if key.revoked_at is not None:
        return "revoked"
    return "expired" if key.expires_at <= now else "active"


async def revoke_key(session: Session, clock: Clock, client_id: str, key_id: str) -> SigningKey:
    """Revoke a key at once: signatures by it answer 7604 from now on (idempotent)."""
    key = await store.get_key(session, client_id, key_id)
    if key is None:
        raise BillingError("NOT_FOUND", message="Signing key not found for this client.")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        session.add(key)
    return key


# ---- signatures ---------------------------------------------------------------------------------------


def _check_timestamp(raw: str | int | None, now: datetime, tolerance: int) -> int:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError) as exc:
        raise BillingError("INVALID_SIGNATURE", message="The timestamp must be Unix seconds.") from exc
    if value > 10**11:  # milliseconds
        value //= 1000
    if abs(now.timestamp() - value) > tolerance:
        raise BillingError(
            "INVALID_SIGNATURE",
            message=f"The timestamp is more than {tolerance} seconds away from server time.",
        )
    return value


def _decode_signature(signature: str | None) -> bytes:
    if not signature:
        raise BillingError("INVALID_SIGNATURE", message="The signature is missing.")
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BillingError("INVALID_SIGNATURE", message="The signature is not valid base64.") from exc


def _verify_with_keys(
    keys: Sequence[SigningKey], message: bytes, signature: bytes, now: datetime
) -> SigningKey:
    """The key that signed ``message``; 7616 if only an expired key did; 7604 if none did."""
    for key in keys:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
        try:
            public.verify(signature, message)
        except InvalidSignature:
            continue
        if key.expires_at <= now:
            raise BillingError("KEYS_EXPIRED")
        return key
    raise BillingError("INVALID_SIGNATURE")


async def verify_request_signature(
    session: Session,
    clock: Clock,
    settings: AuthSettings,
    client: AuthenticatedClient,
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
) -> None:
    """Check ``X-Signature`` over ``"{X-Timestamp}." + body`` (the exact bytes received)."""
    if timestamp is None:
        raise BillingError("INVALID_SIGNATURE", message="The X-Timestamp header is missing.")
    now = clock.now()
    _check_timestamp(timestamp, now, settings.signature_tolerance_seconds)
    raw_signature = _decode_signature(signature)
    keys = await store.keys_of(session, client.id)
    _verify_with_keys(keys, timestamp.strip().encode() + b"." + body, raw_signature, now)


# ---- tokens ---------------------------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _issue(
    session: Session, clock: Clock, settings: AuthSettings, secret: str, client_id: str, family_id: str
) -> TokenPair:
    now = clock.now()
    access_exp = now + timedelta(seconds=settings.access_token_ttl_seconds)
    refresh_exp = now + timedelta(seconds=settings.refresh_token_ttl_seconds)
    access = jwt.encode(
        {
            "sub": client_id,
            "fam": family_id,
            "iat": int(now.timestamp()),
            "exp": int(access_exp.timestamp()),
            "jti": secrets.token_hex(8),
            "typ": "access",
        },
        secret,
        algorithm="HS256",
    )
    refresh = "rt_" + secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            id=new_id("refresh_token"),
            client_id=client_id,
            family_id=family_id,
            token_hash=_hash(refresh),
            expires_at=refresh_exp,
            created_at=now,
        )
    )
    await session.flush()
    return TokenPair(access, refresh, int(access_exp.timestamp()), int(refresh_exp.timestamp()))


async def login(
    session: Session,
    clock: Clock,
    settings: AuthSettings,
    secret: str,
    *,
    client_id: str,
    timestamp: str | int,
    signature: str,
) -> TokenPair:
    """Exchange a signed ``"{clientId}.{timestamp}"`` for a token pair (a new token family)."""
    now = clock.now()
    _check_timestamp(timestamp, now, settings.signature_tolerance_seconds)
    raw_signature = _decode_signature(signature)
    client = await store.get_client(session, client_id)
    if client is None:  # same answer as a bad signature: do not reveal which client ids exist
        raise BillingError("INVALID_SIGNATURE")
    keys = await store.keys_of(session, client.id)
    _verify_with_keys(keys, f"{client_id}.{str(timestamp).strip()}".encode(), raw_signature, now)
    return await _issue(session, clock, settings, secret, client.id, new_id("refresh_token"))


async def refresh(
    session: Session, clock: Clock, settings: AuthSettings, secret: str, token: str
) -> TokenPair:
    """Rotate: the presented refresh token dies and a new pair is issued in the same family.

    The caller commits on success. On reuse this function commits the revocation itself.

    A token that was already used (or revoked) revokes the whole family, since either the
    owner or a thief is replaying it; both must log in again.
    """
    now = clock.now()
    row = await store.refresh_token_by_hash(session, _hash(token or ""))
    if row is None:
        raise BillingError("REFRESH_TOKEN_INVALID")
    if row.used_at is not None or row.revoked_at is not None:
        await _revoke_and_commit(session, row.family_id, now)
        raise BillingError(
            "REFRESH_TOKEN_INVALID", message="The refresh token was already used; log in again."
        )
    if row.expires_at <= now:
        raise BillingError("REFRESH_TOKEN_INVALID", message="The refresh token has expired; log in again.")
    if not await store.mark_refresh_token_used(session, row.id, now):
        await _revoke_and_commit(session, row.family_id, now)
        raise BillingError(
            "REFRESH_TOKEN_INVALID", message="The refresh token was already used; log in again."
        )
    return await _issue(session, clock, settings, secret, row.client_id, row.family_id)


async def _revoke_and_commit(session: Session, family_id: str, now: datetime) -> None:
    """Revoke a family and commit at once: the revocation must outlive the failing request."""
    await session.rollback()
    await store.revoke_family(session, family_id, now)
    await session.commit()


async def authenticate(
    session: Session, clock: Clock, secret: str, authorization: str | None
) -> AuthenticatedClient:
    """The client behind ``Authorization: Bearer <access token>``."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise BillingError("UNAUTHORIZED")
    token = authorization[7:].strip()
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={
                "require": ["sub", "exp", "fam"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise BillingError("TOKEN_INVALID") from exc
    if claims.get("typ") != "access":
        raise BillingError("TOKEN_INVALID")
    # Expiry is judged by the engine's clock (not the OS clock) so tests and operators agree.
    if int(claims["exp"]) <= clock.now().timestamp():
        raise BillingError("TOKEN_EXPIRED")
    client = await store.get_client(session, str(claims["sub"]))
    if client is None:
        raise BillingError("TOKEN_INVALID")
    family = str(claims["fam"])
    if await store.family_revoked(session, family):
        raise BillingError("TOKEN_INVALID", message="This login was revoked; log in again.")
    return AuthenticatedClient(
        id=client.id,
        name=client.name,
        environment=client.environment,
        timezone=client.timezone,
        signing_required=client.signing_required,
        family_id=family,
    )
