"""What a request signature covers and how a merchant computes one (Ed25519, base64).

Kept apart from the authentication service so that `billing sign` loads only this and the
`cryptography` package, not the store.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from billing.domain.errors import BillingError


def sign(private_key_pem: str, message: bytes) -> str:
    """Base64 Ed25519 signature of ``message`` (what merchants compute; used by `billing sign`)."""
    private = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise BillingError("CHECK_PARAMETERS", message="The private key must be an Ed25519 key.")
    return base64.b64encode(private.sign(message)).decode()


def canonical_request(
    scheme: str, *, timestamp: str, method: str, target: str, idempotency_key: str | None, body: bytes
) -> bytes:
    """The bytes a request signature covers.

    v2: ``"v2\\n{timestamp}\\n{METHOD}\\n{path?query}\\n{Idempotency-Key or empty}\\n"`` + body.
    v1 (Migo's form, sandbox only): ``"{timestamp}." + body``; it does not bind the route.
    """
    if scheme == "v1":
        return timestamp.encode() + b"." + body
    head = "\n".join(("v2", timestamp, method.upper(), target, idempotency_key or ""))
    return head.encode() + b"\n" + body
