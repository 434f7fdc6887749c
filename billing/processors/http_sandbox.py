"""A client for the sandbox processor served over HTTP (`billing.processors.sandbox_server`).

It behaves like the in-process sandbox (same slug, same test cards, tokens interchangeable)
but every call crosses the network to one shared ledger, so several worker processes see
the same processor, calls take real time, and timeouts are real: a charge that times out or
gets a 5xx answers `unknown`, and only `lookup` can tell what happened.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from billing.domain.errors import BY_NAME, BillingError
from billing.processors.base import CardInfo, CardToken, Outcome
from billing.processors.sandbox import is_sandbox_token

# Calls in flight per httpx client. httpx's pool walks its queued requests and its connections on
# every request and every answer, so one pool with hundreds of connections spends more CPU than
# the engine it serves; several small pools behind one semaphore each keep that walk short.
_CALLS_PER_CLIENT = 32


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(
        status=data["status"],
        reference=data.get("reference"),
        decline_code=data.get("decline_code"),
        decline_message=data.get("decline_message"),
        hard_decline=bool(data.get("hard_decline")),
    )


class _Lane:
    """One httpx client and a semaphore as wide as its pool, so requests never queue inside httpx."""

    def __init__(self, base_url: str, size: int, timeout_seconds: float, tls: ssl.SSLContext) -> None:
        self.slots = asyncio.Semaphore(size)
        self.client = httpx.AsyncClient(
            base_url=base_url,
            # The whole call may take timeout_seconds; waiting for a free slot is not part of it.
            timeout=httpx.Timeout(timeout_seconds, pool=None),
            headers={"Content-Type": "application/json"},
            transport=httpx.AsyncHTTPTransport(
                verify=tls, limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
            ),
        )


class HttpSandboxProcessor:
    """The sandbox processor at `base_url` (e.g. "http://127.0.0.1:8766"), over httpx.

    Up to `max_connections` calls are in flight at once, spread over several httpx clients of
    `calls_per_client` connections each (see `_CALLS_PER_CLIENT`).

    Transport trouble (refused connection, reset, timeout after `timeout_seconds`, 5xx)
    makes `charge` answer `unknown` and the other calls raise 7205 PROCESSOR_ERROR.
    """

    slug = "sandbox"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 5.0,
        max_connections: int = 100,
        calls_per_client: int = _CALLS_PER_CLIENT,
    ) -> None:
        parsed = urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError("the sandbox server URL must look like http://HOST:PORT")
        count = max(1, -(-max_connections // calls_per_client))
        size = -(-max_connections // count)
        tls = ssl.create_default_context()  # one for all lanes: building one per client is slow
        self._lanes = [_Lane(base_url, size, timeout_seconds, tls) for _ in range(count)]
        self._next_lane = itertools.cycle(self._lanes)
        self._timeout = timeout_seconds

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        lane = next(self._next_lane)
        content = json.dumps(body).encode() if body is not None else None
        async with lane.slots:
            async with asyncio.timeout(self._timeout):
                response = await lane.client.request(method, path, content=content)
        return response.status_code, json.loads(response.content) if response.content else {}

    async def _checked(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            status, data = await self._call(method, path, body)
        except (httpx.TransportError, TimeoutError, ValueError) as exc:
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor did not answer.") from exc
        if status >= 500:
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor failed.")
        if status >= 400 and status != 404:
            name = data.get("error") if isinstance(data, dict) else None
            if isinstance(name, str) and name in BY_NAME:
                raise BillingError(name)
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor refused the request.")
        return {"_status": status, **data}

    def is_token(self, token: str) -> bool:
        """True for the shape of a sandbox token (the server mints the same tokens)."""
        return is_sandbox_token(token)

    async def tokenize(self, card: CardInfo, *, customer_ref: str) -> CardToken:
        """Send the card to the sandbox and get its token back (nothing is kept here)."""
        data = await self._checked(
            "POST",
            "/tokenize",
            {
                "number": card.number,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "cvv": card.cvv,
                "holder_name": card.holder_name,
                "customer_ref": customer_ref,
            },
        )
        return CardToken(
            token=data["token"],
            brand=data["brand"],
            last4=data["last4"],
            exp_month=int(data["exp_month"]),
            exp_year=int(data["exp_year"]),
        )

    async def authorize(
        self, token: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome:
        """Place a (pretend) hold."""
        data = await self._checked(
            "POST",
            "/authorize",
            {"token": token, "amount_minor": amount_minor, "currency": currency, "key": idempotency_key},
        )
        return _outcome(data)

    async def void(self, reference: str) -> None:
        """Release an authorization."""
        await self._checked("POST", "/void", {"reference": reference})

    async def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        description: str = "",
    ) -> Outcome:
        """Charge the token; no answer (timeout, reset, 5xx) is `unknown`, never an error."""
        body = {
            "token": token,
            "amount_minor": amount_minor,
            "currency": currency,
            "key": idempotency_key,
            "description": description,
        }
        try:
            status, data = await self._call("POST", "/charge", body)
        except (httpx.TransportError, TimeoutError, ValueError):
            return Outcome.unknown()
        if status >= 500:
            return Outcome.unknown()
        if status >= 400:
            name = data.get("error") if isinstance(data, dict) else None
            raise BillingError(name if isinstance(name, str) and name in BY_NAME else "PROCESSOR_ERROR")
        return _outcome(data)

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """The recorded outcome for the key, or None if the sandbox never saw it."""
        data = await self._checked("GET", f"/lookup/{quote(idempotency_key, safe='')}")
        if data["_status"] == 404:
            return None
        return _outcome(data)

    async def ledger(self) -> dict[str, Any]:
        """The server's ledger report (tests and load reports)."""
        return await self._checked("GET", "/ledger")

    async def aclose(self) -> None:
        """Close every connection."""
        for lane in self._lanes:
            await lane.client.aclose()
