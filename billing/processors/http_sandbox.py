"""A client for the sandbox processor served over HTTP (`billing.processors.sandbox_server`).

It behaves like the in-process sandbox (same slug, same test cards, tokens interchangeable)
but every call crosses the network to one shared ledger, so several worker processes see
the same processor, calls take real time, and timeouts are real: a charge that times out or
gets a 5xx answers `unknown`, and only `lookup` can tell what happened.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from billing.domain.errors import BY_NAME, BillingError
from billing.processors.base import CardInfo, CardToken, Outcome
from billing.processors.sandbox import is_sandbox_token


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(
        status=data["status"],
        reference=data.get("reference"),
        decline_code=data.get("decline_code"),
        decline_message=data.get("decline_message"),
        hard_decline=bool(data.get("hard_decline")),
    )


LANE_SIZE = 4
"""Connections per httpx transport. httpcore's pool checks every connection it holds (is it free,
has it expired) for each request it places and each answer it returns, so one pool of hundreds
of connections spends more CPU choosing a connection than sending the call; lanes of a few
connections each keep that cost flat at any number of calls in flight."""


class _Lane:
    """One httpx transport of `size` keep-alive connections, and a semaphore as wide, so a call
    waits for a free connection here (cheap) and never in httpx's own queue."""

    def __init__(self, size: int, tls: ssl.SSLContext) -> None:
        self.slots = asyncio.Semaphore(size)
        self.transport = httpx.AsyncHTTPTransport(
            verify=tls, limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
        )


class _Lanes:
    """Calls spread over several small httpx transports: the first lane with a free connection,
    else the next in turn (a busy lane's semaphore queues the call until one of its connections
    frees). Requests go straight to the transport: the client layer's cookies, auth, redirects
    and URL merging do nothing for this fixed, cookie-less API and cost a third of each call."""

    def __init__(self, base_url: str, max_connections: int, lane_size: int = LANE_SIZE) -> None:
        count = max(1, -(-max_connections // lane_size))
        tls = ssl.create_default_context()  # one for all lanes (each transport would build its own)
        self._lanes = [_Lane(lane_size, tls) for _ in range(count)]
        self._next = 0
        self._base = base_url
        self._urls: dict[str, httpx.URL] = {}

    def _pick(self) -> _Lane:
        count = len(self._lanes)
        for step in range(count):
            lane = self._lanes[(self._next + step) % count]
            if not lane.slots.locked():
                self._next = (self._next + step + 1) % count
                return lane
        lane = self._lanes[self._next]
        self._next = (self._next + 1) % count
        return lane

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            url = httpx.URL(self._base + path)
            if len(self._urls) < 64:  # the fixed routes; look-up paths differ per key
                self._urls[path] = url
        return url

    async def request(self, method: str, path: str, body: bytes, limit_seconds: float) -> tuple[int, bytes]:
        request = httpx.Request(method, self._url(path), headers=_HEADERS, content=body)
        lane = self._pick()
        async with lane.slots, asyncio.timeout(limit_seconds):
            answer = await lane.transport.handle_async_request(request)
            try:
                return answer.status_code, await answer.aread()
            finally:
                await answer.aclose()

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.transport.aclose()


_HEADERS = {"content-type": "application/json"}


class HttpSandboxProcessor:
    """The sandbox processor at `base_url` (e.g. "http://127.0.0.1:8766").

    Transport trouble (refused connection, reset, timeout after `timeout_seconds`, 5xx)
    makes `charge` answer `unknown` and the other calls raise 7205 PROCESSOR_ERROR.
    """

    slug = "sandbox"

    def __init__(self, base_url: str, *, timeout_seconds: float = 5.0, max_connections: int = 100) -> None:
        parsed = urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError("the sandbox server URL must look like http://HOST:PORT")
        self._pool = _Lanes(base_url.rstrip("/"), max_connections)
        self._timeout = timeout_seconds

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        status, data = await self._pool.request(method, path, payload, self._timeout)
        return status, json.loads(data) if data else {}

    async def _checked(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            status, data = await self._call(method, path, body)
        except (httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
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
        except (httpx.HTTPError, OSError, TimeoutError, ValueError):
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
        """Close the connections."""
        await self._pool.aclose()
