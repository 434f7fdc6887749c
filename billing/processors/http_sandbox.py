"""A client for the sandbox processor served over HTTP (`billing.processors.sandbox_server`).

It behaves like the in-process sandbox (same slug, same test cards, tokens interchangeable)
but every call crosses the network to one shared ledger, so several worker processes see
the same processor, calls take real time, and timeouts are real: a charge that times out or
gets a 5xx answers `unknown`, and only `lookup` can tell what happened.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

import httpx

from billing.domain.errors import BY_NAME, BillingError
from billing.processors.base import CardInfo, CardToken, Outcome


_CONNECTIONS_PER_POOL = 4


def _outcome(data: dict[str, Any]) -> Outcome:
    return Outcome(
        status=data["status"],
        reference=data.get("reference"),
        decline_code=data.get("decline_code"),
        decline_message=data.get("decline_message"),
        hard_decline=bool(data.get("hard_decline")),
    )


class HttpSandboxProcessor:
    """The sandbox processor at `base_url` (e.g. "http://127.0.0.1:8766")."""

    slug = "sandbox"

    def __init__(self, base_url: str, *, timeout_seconds: float = 5.0, max_connections: int = 100) -> None:
        # httpcore matches every queued request against every pooled connection each time a
        # request finishes, which turns quadratic with hundreds of calls in flight. Several
        # small pools, used in turn, keep that cost flat.
        shards = max(1, -(-max_connections // _CONNECTIONS_PER_POOL))
        per_pool = max(1, -(-max_connections // shards))
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                timeout=httpx.Timeout(timeout_seconds),
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
            )
            for _ in range(shards)
        ]
        self._turn = itertools.cycle(self._clients)

    @property
    def _client(self) -> httpx.AsyncClient:
        return next(self._turn)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor did not answer.") from exc
        return self._checked(response)

    @staticmethod
    def _checked(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 500:
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor failed.")
        data: dict[str, Any] = response.json()
        if response.status_code >= 400:
            name = data.get("error")
            if isinstance(name, str) and name in BY_NAME:
                raise BillingError(name)
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor refused the request.")
        return data

    async def tokenize(self, card: CardInfo, *, customer_ref: str) -> CardToken:
        """Send the card to the sandbox and get its token back (nothing is kept here)."""
        data = await self._post(
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
        data = await self._post(
            "/authorize",
            {"token": token, "amount_minor": amount_minor, "currency": currency, "key": idempotency_key},
        )
        return _outcome(data)

    async def void(self, reference: str) -> None:
        """Release an authorization."""
        await self._post("/void", {"reference": reference})

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
            response = await self._client.post("/charge", json=body)
        except httpx.HTTPError:
            return Outcome.unknown()
        if response.status_code >= 500:
            return Outcome.unknown()
        return _outcome(self._checked(response))

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """The recorded outcome for the key, or None if the sandbox never saw it."""
        try:
            response = await self._client.get(f"/lookup/{quote(idempotency_key, safe='')}")
        except httpx.HTTPError as exc:
            raise BillingError("PROCESSOR_ERROR", message="The sandbox processor did not answer.") from exc
        if response.status_code == 404:
            return None
        return _outcome(self._checked(response))

    async def ledger(self) -> dict[str, Any]:
        """The server's ledger report (tests and load reports)."""
        response = await self._client.get("/ledger")
        return self._checked(response)

    async def aclose(self) -> None:
        """Close the connection pools."""
        for client in self._clients:
            await client.aclose()
