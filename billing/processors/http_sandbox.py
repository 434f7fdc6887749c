"""A client for the sandbox processor served over HTTP (`billing.processors.sandbox_server`).

It behaves like the in-process sandbox (same slug, same test cards, tokens interchangeable)
but every call crosses the network to one shared ledger, so several worker processes see
the same processor, calls take real time, and timeouts are real: a charge that times out or
gets a 5xx answers `unknown`, and only `lookup` can tell what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote, urlsplit

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


class _Connection:
    """One keep-alive HTTP/1.1 connection to the sandbox server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Pool:
    """Keep-alive connections, at most `size` at once, reused newest first.

    The sandbox server speaks a fixed, minimal HTTP/1.1 (Content-Length bodies, keep-alive),
    so this client stays tiny and cheap: at hundreds of calls in flight, a general-purpose
    client's per-request bookkeeping would cost more than the engine being measured.
    """

    def __init__(self, host: str, port: int, size: int) -> None:
        self._host = host
        self._port = port
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Connection] = []

    async def request(self, method: str, path: str, body: bytes, limit_seconds: float) -> tuple[int, bytes]:
        async with self._slots:
            connection = self._idle.pop() if self._idle else None
            try:
                async with asyncio.timeout(limit_seconds):
                    if connection is None:
                        connection = _Connection(*await asyncio.open_connection(self._host, self._port))
                    answer = await connection.request(method, path, body)
            except BaseException:
                if connection is not None:
                    connection.close()
                raise
            self._idle.append(connection)
            return answer

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


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
        self._pool = _Pool(parsed.hostname, parsed.port or 80, max_connections)
        self._timeout = timeout_seconds

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        status, data = await self._pool.request(method, path, payload, self._timeout)
        return status, json.loads(data) if data else {}

    async def _checked(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            status, data = await self._call(method, path, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
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
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
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
        """Close the idle connections."""
        self._pool.close()
