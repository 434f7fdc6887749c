"""A Stripe double for httpx.MockTransport with the two behaviours localstripe lacks.

- `Idempotency-Key`: a key sent again with identical parameters replays the first answer; with
  different parameters it is refused with 400 `idempotency_error` (Stripe's documented rules).
- The Search API trails writes: while `search_lags` is set it finds nothing.

While `lose_charge_answers` is set, Stripe runs each charge request (or replays it) and the answer
gets lost on the way back (a read timeout), as a slow or broken network does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import httpx


class FakeStripe:
    """Customers, card PaymentMethods and PaymentIntents, kept in memory."""

    def __init__(self) -> None:
        self.by_key: dict[str, tuple[dict[str, str], httpx.Response]] = {}
        self.intents: list[dict[str, Any]] = []
        self.search_lags = True
        self.lose_charge_answers = False

    def transport(self) -> httpx.MockTransport:
        """The transport to hand to StripeProcessor."""
        return httpx.MockTransport(self.handle)

    def charges(self, status: str = "succeeded") -> list[dict[str, Any]]:
        """The automatically captured PaymentIntents in `status` (authorizations left out)."""
        return [i for i in self.intents if i["metadata"]["operation"] == "charge" and i["status"] == status]

    def handle(self, request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.content.decode())) or dict(request.url.params)
        path = request.url.path
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            if key in self.by_key:
                first, answer = self.by_key[key]
                if first != params:
                    return httpx.Response(400, json={"error": {"type": "idempotency_error"}})
                answer = httpx.Response(answer.status_code, json=answer.json())
            else:
                answer = self._create(path, params)
                self.by_key[key] = (params, answer)
            if self.lose_charge_answers and params.get("metadata[operation]") == "charge":
                raise httpx.ReadTimeout("the answer was lost", request=request)
            return answer
        return self._read(request.method, path, params)

    def _create(self, path: str, params: dict[str, str]) -> httpx.Response:
        if path == "/v1/payment_intents":
            metadata = {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")}
            intent = {
                "id": f"pi_{len(self.intents) + 1}",
                "object": "payment_intent",
                "status": "requires_capture" if params.get("capture_method") == "manual" else "succeeded",
                "amount": int(params["amount"]),
                "currency": params["currency"],
                "customer": params["customer"],
                "payment_method": params["payment_method"],
                "description": params.get("description"),
                "metadata": metadata,
            }
            self.intents.append(intent)
            return httpx.Response(200, json=intent)
        return self._read("POST", path, params)

    def _read(self, method: str, path: str, params: dict[str, str]) -> httpx.Response:
        if method == "POST" and path == "/v1/payment_methods":
            card = {"brand": "visa", "last4": params["card[number]"][-4:], "exp_month": 12, "exp_year": 2030}
            return httpx.Response(200, json={"id": "pm_1", "object": "payment_method", "card": card})
        if method == "POST" and path == "/v1/customers":
            return httpx.Response(200, json={"id": "cus_1", "object": "customer"})
        if method == "POST" and path.endswith("/attach"):
            return httpx.Response(200, json={"id": "pm_1", "object": "payment_method", "customer": "cus_1"})
        if method == "POST" and path.endswith("/cancel"):
            intent = next(i for i in self.intents if i["id"] == path.split("/")[3])
            intent["status"] = "canceled"
            return httpx.Response(200, json=intent)
        if method == "GET" and path == "/v1/payment_intents/search":
            # The processor searches `metadata['idempotency_key']:'<key>'`.
            key = params["query"].partition(":")[2].strip("'")
            found = (
                []
                if self.search_lags
                else [i for i in self.intents if i["metadata"]["idempotency_key"] == key]
            )
            return httpx.Response(200, json={"object": "search_result", "data": found})
        return httpx.Response(404, json={"error": {"type": "invalid_request_error"}})
