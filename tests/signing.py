"""How a test client signs a write: the one place that knows the signed message.

``signed_headers`` is used by every client outside the in-process ``Merchant`` helper (the
generated client, the schemathesis run). It signs the v2 canonical request (timestamp, method,
path with query, Idempotency-Key, body) through ``billing.domain.signatures.canonical_request``. Each signed message is accepted once by the engine, so two identical writes in the
same second must not carry the same timestamp: ``Signer`` steps the timestamp back a second
when the message it is about to sign was already signed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from billing.domain.signatures import canonical_request, sign


class Signer:
    """Signs requests for one private key, never reusing a (timestamp, message) pair."""

    def __init__(self, private_key_pem: str, clock: Callable[[], float] = time.time) -> None:
        self.private_key_pem = private_key_pem
        self.clock = clock
        self._signed: set[bytes] = set()

    def signed_headers(
        self, method: str, target: str, idempotency_key: str | None, body: bytes
    ) -> dict[str, str]:
        """``X-Timestamp`` and ``X-Signature`` for a write of ``body`` to ``target`` (path and query)."""
        seconds = int(self.clock())
        while True:
            message = _message(str(seconds), method, target, idempotency_key, body)
            if message not in self._signed:
                break
            seconds -= 1
        self._signed.add(message)
        return {
            "X-Timestamp": str(seconds),
            "X-Signature-Version": "2",
            "X-Signature": sign(self.private_key_pem, message),
        }


def _message(timestamp: str, method: str, target: str, idempotency_key: str | None, body: bytes) -> bytes:
    """The signed message: the v2 canonical request."""
    return canonical_request(
        "v2", timestamp=timestamp, method=method, target=target, idempotency_key=idempotency_key, body=body
    )


def signed_headers(
    private_key_pem: str, method: str, target: str, idempotency_key: str | None, body: bytes
) -> dict[str, str]:
    """Headers for one signed write with the current time (see ``Signer`` for repeated writes)."""
    return Signer(private_key_pem).signed_headers(method, target, idempotency_key, body)
