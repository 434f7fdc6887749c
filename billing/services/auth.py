"""Merchant authentication: Ed25519 login, JWT access tokens, rotating refresh tokens, signed requests.

- Login: the client signs ``"{clientId}.{timestamp}"`` with one of its Ed25519 keys.
- Access tokens: HS256 JWTs (``sub`` = client id, ``fam`` = the login's token family), short-lived.
- Refresh tokens: opaque, stored as SHA-256 hashes, single-use. Presenting a used one revokes its whole
  family: the refresh tokens and the access tokens issued under it.
- Signed requests: ``X-Signature`` = base64 Ed25519 over the canonical request (``canonical_request``):
  v2 binds timestamp, method, path with query, Idempotency-Key and body; v1 (sandbox, Migo's form)
  only timestamp and body. Each signed message is accepted once (``consume_signature``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.signatures import canonical_request
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
    signature_scheme: str = "v2"
    family_id: str | None = None
    clock_offset_seconds: int = 0
    """How far the client's sandbox clock runs ahead of real time (0 outside sandbox)."""

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
    signature_scheme: str = "v2",
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
    check_signature_scheme(environment, signature_scheme)
    now = clock.now()
    client = Client(
        id=new_id("client"),
        name=name.strip(),
        timezone=timezone,
        environment=environment,
        signing_required=signing_required,
        signature_scheme=signature_scheme,
        created_at=now,
    )
    session.add(client)
    await session.flush()
    key = await add_key(session, clock, client.id, settings=settings, public_key=public_key)
    return client, key


def check_signature_scheme(environment: str, scheme: str) -> str:
    """v1 (body only, Migo's form) is kept for sandbox clients; production signs with v2."""
    if scheme not in SIGNATURE_SCHEMES:
        raise BillingError(
            "CHECK_PARAMETERS", message="signatureScheme must be v2 or v1.", field="signatureScheme"
        )
    if scheme == "v1" and environment == "production":
        raise BillingError(
            "CHECK_PARAMETERS",
            message="Production clients must use signature scheme v2.",
            field="signatureScheme",
        )
    return scheme


async def set_signature_scheme(session: Session, client_id: str, scheme: str) -> Client:
    """Switch a client's request-signature scheme (operators, e.g. a sandbox client moving to v2)."""
    client = await store.get_client(session, client_id)
    if client is None:
        raise BillingError("CLIENT_NOT_FOUND")
    client.signature_scheme = check_signature_scheme(client.environment, scheme)
    session.add(client)
    return client


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

SIGNATURE_SCHEMES = ("v1", "v2")
VERSION_HEADER_V2 = "2"
# A clock running a little ahead on the merchant's side is tolerated, a timestamp far in the future
# is not: it would keep a captured request valid for longer than the tolerance window.
FUTURE_TOLERANCE_SECONDS = 30

# Verifying against this key when a client id is unknown makes a login cost the same work whether
# or not the client exists, so timing does not reveal which client ids are real.
_DUMMY_PUBLIC_KEY = public_key_b64(Ed25519PrivateKey.generate().public_key())


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a signed write carried: the headers and the exact request as received."""

    method: str
    target: str  # the path as sent, plus "?" and the raw query string when there is one
    idempotency_key: str | None
    body: bytes
    timestamp: str | None
    signature: str | None
    version: str | None  # the X-Signature-Version header


@dataclass(frozen=True, slots=True)
class AcceptedSignature:
    """A signature that verified; ``consume_signature`` records it so it cannot be used again."""

    digest: str
    expires_at: datetime


def _check_timestamp(raw: str | int | None, now: datetime, tolerance: int) -> int:
    text = "" if raw is None or isinstance(raw, bool) else str(raw).strip()
    if not text or not text.isascii() or not text.isdigit():
        raise BillingError(
            "INVALID_SIGNATURE", message="The timestamp must be Unix time in whole seconds, e.g. 1767225600."
        )
    if len(text) > 11:
        raise BillingError(
            "INVALID_SIGNATURE", message="The timestamp must be Unix time in seconds, not milliseconds."
        )
    value = int(text)
    if value - now.timestamp() > FUTURE_TOLERANCE_SECONDS:
        raise BillingError(
            "INVALID_SIGNATURE",
            message=f"The timestamp is more than {FUTURE_TOLERANCE_SECONDS} seconds ahead of server time; "
            "check the clock of the signing host.",
        )
    if now.timestamp() - value > tolerance:
        raise BillingError(
            "INVALID_SIGNATURE",
            message=f"The timestamp is more than {tolerance} seconds older than server time; sign the request anew.",
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
    """The key that signed ``message``; 7616 if only an expired key did; 7604 if none did.

    With no key at all (an unknown client) a dummy key is tried, so the work is the same.
    """
    candidates: list[tuple[str, SigningKey | None]] = [(key.public_key, key) for key in keys]
    if not candidates:
        candidates.append((_DUMMY_PUBLIC_KEY, None))
    for public_b64, key in candidates:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
        try:
            public.verify(signature, message)
        except InvalidSignature:
            continue
        if key is None:
            break
        if key.expires_at <= now:
            raise BillingError("KEYS_EXPIRED")
        return key
    raise BillingError("INVALID_SIGNATURE")


def _scheme_for(client: AuthenticatedClient, version: str | None) -> str:
    """The scheme this request is verified under; v2 whenever the client or the request says so."""
    if version is not None and version.strip() != VERSION_HEADER_V2:
        raise BillingError(
            "INVALID_SIGNATURE",
            message="X-Signature-Version must be 2 (or absent for the v1 scheme of sandbox clients).",
        )
    if version is not None:
        return "v2"
    if client.signature_scheme == "v2" or not client.is_sandbox:
        raise BillingError(
            "INVALID_SIGNATURE",
            message="This client signs requests with scheme v2: send X-Signature-Version: 2 and sign "
            "timestamp, method, path, Idempotency-Key and body (see docs/authentication.md).",
        )
    return "v1"


def _accepted(kind: bytes, message: bytes, timestamp: int, tolerance: int) -> AcceptedSignature:
    digest = hashlib.sha256(kind + b":" + message).hexdigest()
    expires = datetime.fromtimestamp(timestamp + tolerance, tz=UTC)
    return AcceptedSignature(digest=digest, expires_at=expires)


async def verify_request_signature(
    session: Session,
    clock: Clock,
    settings: AuthSettings,
    client: AuthenticatedClient,
    request: SignedRequest,
) -> AcceptedSignature:
    """Check ``X-Signature`` over the request's canonical form (see ``canonical_request``).

    Verifying does not use the signature up: ``consume_signature`` does, once the request is
    known to run (an Idempotency-Key replay answers from the stored response instead).
    """
    if request.timestamp is None:
        raise BillingError("INVALID_SIGNATURE", message="The X-Timestamp header is missing.")
    now = clock.now()
    timestamp = _check_timestamp(request.timestamp, now, settings.signature_tolerance_seconds)
    scheme = _scheme_for(client, request.version)
    raw_signature = _decode_signature(request.signature)
    message = canonical_request(
        scheme,
        timestamp=request.timestamp.strip(),
        method=request.method,
        target=request.target,
        idempotency_key=request.idempotency_key,
        body=request.body,
    )
    keys = await store.keys_of(session, client.id)
    _verify_with_keys(keys, message, raw_signature, now)
    return _accepted(b"request", message, timestamp, settings.signature_tolerance_seconds)


async def consume_signature(session: Session, client_id: str, accepted: AcceptedSignature) -> None:
    """Use a verified signature up (the caller commits); 7604 when it was already used: a replay."""
    if not await store.remember_signature(session, client_id, accepted.digest, accepted.expires_at):
        raise BillingError(
            "INVALID_SIGNATURE",
            message="This signed request was already received (replay). Sign every request anew with "
            "a fresh X-Timestamp; to retry a POST safely, resend it with the same Idempotency-Key.",
        )


async def purge_seen_signatures(session: Session, clock: Clock) -> int:
    """Forget used signatures whose timestamps are past the tolerance window (commits)."""
    purged = await store.purge_seen_signatures(session, clock.now())
    await session.commit()
    return purged


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
    checked = _check_timestamp(timestamp, now, settings.signature_tolerance_seconds)
    raw_signature = _decode_signature(signature)
    # One query and one verification whether or not the client exists: the answer and its timing
    # are those of a bad signature, so they do not reveal which client ids are real.
    keys = await store.keys_of(session, client_id)
    message = f"{client_id}.{str(timestamp).strip()}".encode()
    key = _verify_with_keys(keys, message, raw_signature, now)
    accepted = _accepted(b"login", message, checked, settings.signature_tolerance_seconds)
    await consume_signature(session, key.client_id, accepted)
    return await _issue(session, clock, settings, secret, key.client_id, new_id("refresh_token"))


async def refresh(
    session: Session,
    clock: Clock,
    settings: AuthSettings,
    secret: str,
    token: str,
    *,
    admit: Callable[[str], None] | None = None,
) -> TokenPair:
    """Rotate: the presented refresh token dies and a new pair is issued in the same family.

    The caller commits on success. On reuse this function commits the revocation itself.

    A token that was already used (or revoked) revokes the whole family, since either the
    owner or a thief is replaying it; both must log in again.

    ``admit`` is called with the token's client before anything else is decided (the API's
    per-client refresh budget); raising from it leaves the token as it was.
    """
    now = clock.now()
    row = await store.refresh_token_by_hash(session, _hash(token or ""))
    if row is None:
        raise BillingError("REFRESH_TOKEN_INVALID")
    if admit is not None:  # the caller's rate limit for the token's client; it raises to refuse
        admit(row.client_id)
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


@lru_cache(maxsize=4096)
def _verified_claims(token: str, secret: str) -> Mapping[str, Any]:
    """The claims of an access token whose HS256 signature ``secret`` verifies (PyJWTError if not).

    A merchant sends the same token with every request until it expires, so a verified token is
    remembered (per process, the 4,096 most recent): verifying it again would give the same answer.
    Only the signature check is cached; expiry, the client and its revocation are judged on every
    request. A token that fails is not remembered, and a new secret never matches an old entry.
    """
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
    return MappingProxyType(claims)


async def authenticate(
    session: Session, clock: Clock, secret: str, authorization: str | None
) -> AuthenticatedClient:
    """The client behind ``Authorization: Bearer <access token>``."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise BillingError("UNAUTHORIZED")
    token = authorization[7:].strip()
    try:
        claims = _verified_claims(token, secret)
    except jwt.PyJWTError as exc:
        raise BillingError("TOKEN_INVALID") from exc
    if claims.get("typ") != "access":
        raise BillingError("TOKEN_INVALID")
    # Expiry is judged by the engine's clock (not the OS clock) so tests and operators agree.
    if int(claims["exp"]) <= clock.now().timestamp():
        raise BillingError("TOKEN_EXPIRED")
    family = str(claims["fam"])
    client = await store.client_for_token(session, str(claims["sub"]), family)
    if client is None:
        raise BillingError("TOKEN_INVALID")
    if client.family_revoked:
        raise BillingError("TOKEN_INVALID", message="This login was revoked; log in again.")
    return AuthenticatedClient(
        id=client.id,
        name=client.name,
        environment=client.environment,
        timezone=client.timezone,
        signing_required=client.signing_required,
        signature_scheme=client.signature_scheme,
        family_id=family,
        clock_offset_seconds=client.clock_offset_seconds,
    )
