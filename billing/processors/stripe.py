"""The Stripe processor: Customers, PaymentMethods and off-session PaymentIntents over httpx.

Tokens are `"<customer id>:<payment method id>"`: Stripe needs both to charge a saved card
off-session, and carrying both saves a round trip per charge.

Idempotency: every PaymentIntent is created with an `Idempotency-Key` header (Stripe replays the
original answer for 24 h) and carries the engine's key in `metadata[idempotency_key]`, which is
what `lookup` searches for. localstripe ignores the header and has no Search API, so with
`localstripe=True` the processor looks for an existing PaymentIntent before creating one and
`lookup` scans the PaymentIntent list instead of searching.

A key sent again with different parameters (Stripe's `idempotency_error`) is not a decline: the
key's first request may well have moved money. `charge` answers `unknown` for it, so the caller
reconciles with `lookup` and never moves on to another card or attempt.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Generator, Mapping
from typing import Any, Literal

import httpx
from pydantic import SecretStr

from billing.domain.clock import Clock, SystemClock
from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, CardToken, Outcome
from billing.processors.cards import check_card, full_exp_year
from billing.processors.stripe_outcomes import (
    DECLINE_CODES,
    decline_of,
    declined_outcome,
    intent_outcome,
    intent_reference,
    refund_outcome,
)

DEFAULT_BASE_URL = "https://api.stripe.com"

log = logging.getLogger(__name__)

_STRIPE_ID = re.compile(r"[A-Za-z0-9_]+")
_OUTCOME_RANK = {"succeeded": 0, "unknown": 1, "failed": 2}

IntentOperation = Literal["authorize", "charge"]


class _NoAnswer(Exception):
    """Stripe gave no usable answer (transport failure, 5xx, 429, 409, auth trouble)."""


class _KeyReused(Exception):
    """The idempotency key was already used for a request with other parameters."""


class _BearerKey(httpx.Auth):
    """Adds the secret key to each request, so it never sits in client headers or reprs."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        yield request

    def __repr__(self) -> str:
        return "_BearerKey('**********')"


def checked_settings(api_key: SecretStr | str, base_url: str) -> SecretStr:
    """The key as a SecretStr; ValueError (naming the setting, never its value) when unusable."""
    key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
    if not key.get_secret_value().startswith(("sk_", "rk_")):
        raise ValueError("api_key must be a Stripe secret (sk_...) or restricted (rk_...) key")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("base_url must be an http:// or https:// URL")
    return key


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The decoded body, or {} when it is not a JSON object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _resource(response: httpx.Response) -> dict[str, Any]:
    """A Stripe object from a 200 answer; an unreadable one says nothing about our request."""
    body = _json_object(response)
    if not isinstance(body.get("id"), str):
        raise _NoAnswer("unreadable answer")
    return body


def _error_of(response: httpx.Response) -> dict[str, Any]:
    error = _json_object(response).get("error")
    return error if isinstance(error, dict) else {}


def _split_token(token: str) -> tuple[str, str] | None:
    customer, _, method = token.partition(":")
    if (
        customer.startswith("cus_")
        and method.startswith("pm_")
        and _STRIPE_ID.fullmatch(customer)
        and _STRIPE_ID.fullmatch(method)
    ):
        return customer, method
    return None


def _card_refusal(response: httpx.Response) -> BillingError:
    """The BillingError for a refused payment-method create or attach."""
    error = _error_of(response)
    known = any(error.get(k) in DECLINE_CODES for k in ("decline_code", "code"))
    if response.status_code == 402 or known:
        return BillingError(decline_of(error)[0])
    if response.status_code == 400:
        # Stripe (and localstripe) answer 400 to card data they cannot parse.
        return BillingError("INVALID_CARD_DATA")
    return BillingError("PROCESSOR_ERROR", message=f"Stripe refused the card (HTTP {response.status_code}).")


def _best(outcomes: list[Outcome]) -> Outcome:
    """Of several answers for one key, the one that moved money wins."""
    return min(outcomes, key=lambda o: _OUTCOME_RANK[o.status])


def _search_literal(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


class StripeProcessor:
    """Payment processor backed by Stripe's REST API (or a Stripe-compatible test server).

    `api_key` is a secret (`sk_...`) or restricted (`rk_...`) key; it is only ever placed in the
    Authorization header. Raw card numbers are sent to Stripe at tokenize time, which requires
    raw card data access on the Stripe account.
    """

    slug = "stripe"

    def __init__(
        self,
        api_key: SecretStr | str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        localstripe: bool = False,
        api_version: str | None = None,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        key = checked_settings(api_key, base_url)
        self.base_url = base_url
        self.localstripe = localstripe
        self._clock = clock or SystemClock()
        headers = {"Stripe-Version": api_version} if api_version else {}
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=_BearerKey(key),
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=min(3.0, timeout_seconds)),
            # Limits belong on the transport: the client ignores its own `limits` once given one.
            # Retries cover failed connects only: nothing reached Stripe, so even a POST is safe to resend.
            transport=transport
            or httpx.AsyncHTTPTransport(
                retries=2, limits=httpx.Limits(max_connections=20, max_keepalive_connections=10)
            ),
        )

    def __repr__(self) -> str:
        return f"StripeProcessor(base_url={self.base_url!r}, localstripe={self.localstripe})"

    def is_token(self, token: str) -> bool:
        """True for `"cus_...:pm_..."`, the shape `tokenize` returns."""
        return _split_token(token) is not None

    async def tokenize(self, card: CardInfo, *, customer_ref: str) -> CardToken:
        """Create a card PaymentMethod, a Customer (metadata customer_ref) and attach one to the other.

        Issuers refuse cards at attach time; the Customer made for a refused card is deleted again.
        """
        check_card(card, self._clock.now())
        try:
            created = await self._request(
                "POST",
                "/v1/payment_methods",
                data={
                    "type": "card",
                    "card[number]": card.number,
                    "card[exp_month]": str(card.exp_month),
                    "card[exp_year]": str(full_exp_year(card.exp_year)),
                    "card[cvc]": card.cvv,
                    **({"billing_details[name]": card.holder_name} if card.holder_name else {}),
                },
            )
            if created.status_code != 200:
                raise _card_refusal(created)
            method = _resource(created)
            customer = await self._request(
                "POST", "/v1/customers", data={"metadata[customer_ref]": customer_ref}
            )
            if customer.status_code != 200:
                raise BillingError(
                    "PROCESSOR_ERROR", message=f"Stripe refused the customer (HTTP {customer.status_code})."
                )
            customer_id = str(_resource(customer)["id"])
            attached = await self._request(
                "POST", f"/v1/payment_methods/{method['id']}/attach", data={"customer": customer_id}
            )
            if attached.status_code != 200:
                await self._forget_customer(customer_id)
                raise _card_refusal(attached)
        except _NoAnswer as exc:
            raise BillingError("PROCESSOR_ERROR") from exc
        details = method.get("card") or {}
        return CardToken(
            token=f"{customer_id}:{method['id']}",
            brand=str(details.get("brand", "unknown")),
            last4=str(details.get("last4", card.last4)),
            exp_month=int(details.get("exp_month", card.exp_month)),
            exp_year=int(details.get("exp_year", full_exp_year(card.exp_year))),
        )

    async def authorize(
        self, token: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome:
        """A manual-capture PaymentIntent, confirmed off-session: a hold for the amount."""
        try:
            return await self._confirm_intent("authorize", token, amount_minor, currency, idempotency_key, "")
        except _NoAnswer as exc:
            raise BillingError("PROCESSOR_ERROR") from exc
        except _KeyReused as exc:
            raise BillingError("IDEMPOTENCY_KEY_REUSED", field="idempotency_key") from exc

    async def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        *,
        idempotency_key: str,
        description: str = "",
    ) -> Outcome:
        """An automatically captured PaymentIntent, confirmed off-session.

        No answer -> `unknown`. A key already used with other parameters -> `unknown` as well:
        the key's first request may have moved money, and only `lookup` can tell.
        """
        try:
            return await self._confirm_intent(
                "charge", token, amount_minor, currency, idempotency_key, description
            )
        except _NoAnswer:
            return Outcome.unknown()
        except _KeyReused:
            log.warning("stripe charge: idempotency key already used with other parameters")
            return Outcome.unknown()

    async def void(self, reference: str) -> None:
        """Cancel the PaymentIntent of an authorization; an already canceled one is fine."""
        if not (reference.startswith("pi_") and _STRIPE_ID.fullmatch(reference)):
            raise BillingError("PROCESSOR_ERROR", message="Not a Stripe PaymentIntent reference.")
        try:
            canceled = await self._request("POST", f"/v1/payment_intents/{reference}/cancel")
            if canceled.status_code == 200:
                return
            if canceled.status_code == 400:
                current = await self._request("GET", f"/v1/payment_intents/{reference}")
                if current.status_code == 200 and _json_object(current).get("status") == "canceled":
                    return
                raise BillingError("STATE_CONFLICT", message="The payment can no longer be voided.")
        except _NoAnswer as exc:
            raise BillingError("PROCESSOR_ERROR") from exc
        raise BillingError(
            "PROCESSOR_ERROR", message=f"Stripe refused the void (HTTP {canceled.status_code})."
        )

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        """Find the PaymentIntent tagged with the key and read its outcome; None if there is none.

        On Stripe this uses the Search API, whose index trails writes (usually by under a minute):
        reconcile `unknown` charges after that delay, or replay `charge` with the same key.
        """
        try:
            if self.localstripe:
                intents = await self._scan_intents(idempotency_key)
            else:
                intents = await self._search_intents(idempotency_key)
        except _NoAnswer as exc:
            raise BillingError("PROCESSOR_ERROR") from exc
        return _best([intent_outcome(i) for i in intents]) if intents else None

    async def refund(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str, reason: str = ""
    ) -> Outcome:
        """A Refund of the PaymentIntent `reference` (`/v1/refunds` with the Idempotency-Key header;
        the key is also kept in metadata for `lookup_refund`). No answer -> `unknown`."""
        if amount_minor <= 0:
            raise BillingError("GREATER_THAN_ZERO", field="amount")
        if not (reference.startswith("pi_") and _STRIPE_ID.fullmatch(reference)):
            return Outcome.declined("REFUND_DECLINED", message="Not a Stripe PaymentIntent reference.")
        data = {
            "payment_intent": reference,
            "amount": str(amount_minor),
            "metadata[idempotency_key]": idempotency_key,
        }
        if reason:
            data["metadata[reason]"] = reason[:500]  # Stripe's own `reason` is an enum
        try:
            if self.localstripe:  # ignores Idempotency-Key: look for the key's refund first
                existing = await self._scan_refunds(reference, idempotency_key)
                if existing:
                    if any(str(r.get("amount")) != data["amount"] for r in existing):
                        return Outcome.unknown()
                    return _best([refund_outcome(r) for r in existing])
            response = await self._request("POST", "/v1/refunds", data=data, idempotency_key=idempotency_key)
            if response.status_code == 200:
                return refund_outcome(_resource(response))
        except _NoAnswer:
            return Outcome.unknown()
        error = _error_of(response)
        if error.get("type") == "idempotency_error":
            log.warning("stripe refund: idempotency key already used with other parameters")
            return Outcome.unknown()
        return Outcome.declined(
            "REFUND_DECLINED",
            message=f"Stripe refused the refund (HTTP {response.status_code} {error.get('code') or ''}).",
        )

    async def void_charge(
        self, reference: str, amount_minor: int, currency: str, *, idempotency_key: str
    ) -> Outcome | None:
        """None: a captured PaymentIntent cannot be canceled; Stripe reverses a refund made
        before the payout on its own, so the engine refunds instead."""
        return None

    async def lookup_refund(self, reference: str, idempotency_key: str) -> Outcome | None:
        """The refund of `reference` tagged with the key (read from the PaymentIntent's refunds)."""
        if not (reference.startswith("pi_") and _STRIPE_ID.fullmatch(reference)):
            return None
        try:
            refunds = await self._scan_refunds(reference, idempotency_key)
        except _NoAnswer as exc:
            raise BillingError("PROCESSOR_ERROR") from exc
        return _best([refund_outcome(r) for r in refunds]) if refunds else None

    async def _scan_refunds(self, reference: str, idempotency_key: str) -> list[dict[str, Any]]:
        """The refunds of one PaymentIntent tagged with the key (a short list per payment)."""
        return await self._scan_tagged(
            "/v1/refunds", (("payment_intent", reference), ("limit", "100")), idempotency_key
        )

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def _forget_customer(self, customer_id: str) -> None:
        """Best effort: an empty Customer left behind is untidy, not harmful."""
        with contextlib.suppress(_NoAnswer):
            await self._request("DELETE", f"/v1/customers/{customer_id}")

    async def _confirm_intent(
        self,
        operation: IntentOperation,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        description: str,
    ) -> Outcome:
        if amount_minor <= 0:
            raise BillingError("GREATER_THAN_ZERO", field="amount")
        parts = _split_token(token)
        if parts is None:
            return Outcome.declined("CARD_NOT_FOUND", hard=True)
        customer, method = parts
        data = {
            "amount": str(amount_minor),
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": method,
            "payment_method_types[0]": "card",
            "confirm": "true",
            "off_session": "true",
            "metadata[idempotency_key]": idempotency_key,
            "metadata[operation]": operation,
        }
        if operation == "authorize":
            data["capture_method"] = "manual"
        if description:
            # localstripe rejects `description` on PaymentIntents.
            data["metadata[description]" if self.localstripe else "description"] = description
        if self.localstripe:
            existing = await self._scan_intents(idempotency_key)
            if existing:
                if any(not self._same_request(intent, data) for intent in existing):
                    raise _KeyReused
                return _best([intent_outcome(i) for i in existing])
        response = await self._request(
            "POST", "/v1/payment_intents", data=data, idempotency_key=idempotency_key
        )
        if response.status_code == 200:
            return intent_outcome(_resource(response))
        error = _error_of(response)
        if response.status_code == 402:
            return declined_outcome(error, intent_reference(error))
        if error.get("type") == "idempotency_error":
            raise _KeyReused
        if response.status_code == 404:
            # The customer or payment method is gone at Stripe: this token will never work again.
            return Outcome.declined("CARD_NOT_FOUND", hard=True)
        return Outcome.declined(
            "PROCESSOR_ERROR",
            message=f"Stripe rejected the payment (HTTP {response.status_code} {error.get('code') or ''}).",
        )

    @staticmethod
    def _same_request(intent: Mapping[str, Any], data: Mapping[str, str]) -> bool:
        """Whether an existing intent was made by this very request (localstripe mode only).

        Compares every parameter Stripe's own idempotency check would, `description` included
        (kept in metadata here, as localstripe rejects it on PaymentIntents).
        """
        metadata = intent.get("metadata") or {}
        return (
            str(intent.get("amount")) == data["amount"]
            and str(intent.get("currency")) == data["currency"]
            and intent.get("payment_method") == data["payment_method"]
            and metadata.get("operation") == data["metadata[operation]"]
            and (metadata.get("description") or "") == data.get("metadata[description]", "")
        )

    async def _search_intents(self, idempotency_key: str) -> list[dict[str, Any]]:
        response = await self._request(
            "GET",
            "/v1/payment_intents/search",
            params=httpx.QueryParams(
                [
                    ("query", f"metadata['idempotency_key']:{_search_literal(idempotency_key)}"),
                    ("limit", "10"),
                    ("expand[]", "data.latest_charge"),
                ]
            ),
        )
        if response.status_code != 200:
            raise _NoAnswer(f"search answered HTTP {response.status_code}")
        return [i for i in _json_object(response).get("data", []) if isinstance(i, dict)]

    async def _scan_intents(self, idempotency_key: str) -> list[dict[str, Any]]:
        """Every PaymentIntent tagged with the key, by walking the whole list (test servers only)."""
        return await self._scan_tagged(
            "/v1/payment_intents", (("limit", "100"), ("expand[]", "data.latest_charge")), idempotency_key
        )

    async def _scan_tagged(
        self, path: str, params: tuple[tuple[str, str], ...], idempotency_key: str
    ) -> list[dict[str, Any]]:
        """The objects of a Stripe list whose metadata carries the key, walking every page."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            query = httpx.QueryParams(params)
            if after is not None:
                query = query.add("starting_after", after)
            response = await self._request("GET", path, params=query)
            if response.status_code != 200:
                raise _NoAnswer(f"list answered HTTP {response.status_code}")
            page = _json_object(response)
            items = [i for i in page.get("data", []) if isinstance(i, dict)]
            found += [i for i in items if (i.get("metadata") or {}).get("idempotency_key") == idempotency_key]
            if not page.get("has_more") or not items:
                return found
            after = str(items[-1]["id"])

    async def _request(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: httpx.QueryParams | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One call to Stripe; raises _NoAnswer when the answer says nothing about our request."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            response = await self._client.request(method, path, data=data, params=params, headers=headers)
        except httpx.TransportError as exc:
            log.warning("stripe %s %s: no answer (%s)", method, path, type(exc).__name__)
            raise _NoAnswer(type(exc).__name__) from exc
        status = response.status_code
        # 5xx: Stripe's side failed, the request may or may not have run. 429: throttled.
        # 409: the same Idempotency-Key is still in flight. 401/403: our credentials, not the card.
        if status >= 500 or status in (401, 403, 409, 429):
            log.warning("stripe %s %s: answered HTTP %s", method, path, status)
            raise _NoAnswer(f"HTTP {status}")
        return response
