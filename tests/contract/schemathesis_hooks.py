"""schemathesis hooks for the contract run (loaded by `st run` through SCHEMATHESIS_HOOKS).

Authentication: every request carries the access token of one of two merchants read from the
file named by BILLING_TEST_SCHEMATHESIS_MERCHANTS; cases alternate between the merchant that
signs its writes (tests/signing.py, over the exact bytes requests sends) and the sandbox merchant
with signing off.

Some rules span several fields or need the database, so JSON Schema cannot state them: an
amount's decimals depend on the currency, a plan's frequency (and its minimum first period) on its type, the retry settings
must fit together, exactly one of `to` and `advanceSeconds`, a future `to`, one of `cardId` and
`cardInfo`, a CSV file's content. For data generated as valid, ``business_valid`` makes those
parts valid too (what a merchant's valid request looks like); invalid data is sent as generated.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from decimal import ROUND_DOWN, Decimal
from functools import cache
from typing import Any

import requests
import schemathesis

from billing.domain.card_numbers import holds_card_number
from tests.signing import Signer


class SignWrites(requests.auth.AuthBase):
    """Sign each write over the bytes requests is about to send."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.method in {"POST", "PUT", "DELETE"}:
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else body
            key = request.headers.get("Idempotency-Key")
            request.headers.update(self.signer.signed_headers(request.method, request.path_url, key, raw))
        return request


@cache
def _merchants() -> list[tuple[str, SignWrites | None]]:
    """(access token, request signer or None) of the signing and the non-signing merchant."""
    with open(os.environ["BILLING_TEST_SCHEMATHESIS_MERCHANTS"]) as handle:
        described = json.load(handle)
    return [
        (entry["token"], SignWrites(Signer(entry["privateKey"])) if entry["signing"] else None)
        for entry in described
    ]


_turns = itertools.count()


def _money(value: Any, decimals: int = 2) -> str:
    """A valid amount near what was generated: positive, at most ``decimals`` places, not absurd."""
    try:
        amount = abs(Decimal(str(value)))
    except ArithmeticError:
        amount = Decimal(1)
    if not amount.is_finite() or amount > 10**9:
        amount = Decimal("123.45")
    amount = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)
    return str(amount if amount > 0 else Decimal("1.00"))


def _plan_fields(plan: dict[str, Any], *, new: bool) -> None:
    if new or "currency" in plan:
        plan["currency"] = "USD"
    if new or "amount" in plan:
        plan["amount"] = _money(plan.get("amount", 1))
    # Retry settings must fit together and the grace policy must exist: keep the defaults.
    for name in ("dailyAttempts", "intervalAttempt", "graceDays", "gracePolicy", "methods"):
        plan.pop(name, None)
    # At most half the plan's shortest period, which depends on its type and frequency: half a day
    # fits every plan.
    minimum = plan.get("minimumFirstPeriodDays")
    if isinstance(minimum, int | float) and not isinstance(minimum, bool):
        plan["minimumFirstPeriodDays"] = min(abs(minimum), 0.5)
    if plan.get("autoRenewal") is False:
        plan.pop("cycles", None)
    if not new:
        # The term must fit the stored plan's other term fields too: leave both as stored.
        plan.pop("autoRenewal", None)
        plan.pop("cycles", None)
        plan.pop("type", None)
        plan.pop("frequency", None)
        plan.pop("currency", None)
        return
    kind = plan.get("type", "interval")
    frequency = plan.get("frequency") if isinstance(plan.get("frequency"), dict) else {}
    if kind == "fixedDay":
        frequency["day"] = 1 + (frequency.get("day") or 1) % 31
    elif kind == "interval":
        frequency["frequency"] = 1 + (frequency.get("frequency") or 30) % 3660
    else:
        frequency["frequency"] = 1 + (frequency.get("frequency") or 1) % 120
    plan["frequency"] = frequency


_KEY = re.compile(r"[!-~]([ -~]*[!-~])?")


_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_KEY_CONTROL = re.compile("[\x00-\x1f\x7f]")


def printable(value: Any, *, cards: bool = True) -> Any:
    """The edge refuses control characters in every JSON string and key, and card numbers outside
    cardInfo, including members the schema leaves open (metadata, unknown members): JSON Schema
    cannot say that without a recursive schema that generated clients cannot read."""
    if isinstance(value, str):
        cleaned = _CONTROL.sub("", value)
        if value and (not cleaned or cleaned.isspace()):
            # Only spaces left (U+00A0 once its neighbours are gone): text fields need a visible character.
            cleaned = "text"
        return "not-a-card" if cards and holds_card_number(cleaned) else cleaned
    if isinstance(value, list):
        return [printable(item, cards=cards) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = _KEY_CONTROL.sub("", str(key))
            name = "not-a-card" if cards and holds_card_number(name) else name
            out[name] = printable(item, cards=cards and key != "cardInfo")
        return out
    return value


def business_valid(case: Any) -> None:
    """Make the cross-field and stateful parts of a valid generated request valid too."""
    if isinstance(case.body, dict | list):
        case.body = printable(case.body)
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == "idempotency-key" and not _KEY.fullmatch(str(value)):
            headers[name] = "key-" + str(abs(hash(value)))
    body = case.body
    operation = case.operation.definition.raw.get("operationId")
    if (
        operation in ("CreatePlan", "UpdatePlan")
        and isinstance(body, dict)
        and isinstance(body.get("plan"), dict)
    ):
        _plan_fields(body["plan"], new=operation == "CreatePlan")
        if operation == "UpdatePlan" and not isinstance(body.get("planUid"), str):
            # planId and its alias planUid name the plan: one of them is required.
            body["planId"] = body.get("planId") if isinstance(body.get("planId"), str) else "pln_unknown"
    elif operation == "CreateTransaction" and isinstance(body, dict):
        body["currency"] = "USD"
        body["amount"] = _money(body.get("amount"))
    elif operation == "AdvanceSandboxClock" and isinstance(body, dict):
        body.pop("to", None)
        seconds = body.get("advanceSeconds")
        body["advanceSeconds"] = max(1, min(int(seconds or 60), 3600))
    elif (
        operation == "AddPaymentMethod"
        and isinstance(body, dict)
        and isinstance(body.get("tokenizeData"), dict)
    ):
        data = body["tokenizeData"]
        data.pop("cardInfo", None)
        data["cardId"] = "tok_sbx_approve_0123456789abcdef"
    elif operation == "UploadChargesCsv" and isinstance(body, dict):
        # clientId as a form field or a query parameter; the file must be a CSV.
        if not isinstance(body.get("clientId"), str) and not (case.query or {}).get("clientId"):
            body["clientId"] = "cli_unknown"
        body["file"] = "subscriptionId,amount,metadata\nsub_unknown,1.00,\n"
    elif operation == "VerifyCard" and isinstance(body, dict):
        # uid and its alias transactionUid name the same transaction: one of them is required.
        body.pop("transactionUid", None)
        if not isinstance(body.get("uid"), str):
            body["uid"] = "trx_unknown"


_chosen: dict[int, int] = {}


def _merchant_of(case: Any) -> tuple[str, SignWrites | None]:
    """Alternate merchants case by case; a case keeps its merchant for auth and signing.

    Webhook endpoints and events are read back by id in the stateful phase (create, then get);
    with alternating merchants the read would come from the other client and rightly answer 404,
    so those operations always act for the signing merchant.
    """
    path = str(getattr(getattr(case, "operation", None), "path", ""))
    if path.startswith(("/v1/webhooks", "/v1/events")):
        return _merchants()[0]
    turn = _chosen.setdefault(id(case), next(_turns) % 2)
    return _merchants()[turn]


@schemathesis.auth()
class MerchantToken:
    """The merchant's access token; schemathesis leaves it out where it tests authentication."""

    def get(self, case: Any, context: Any) -> str:
        return "merchant"

    def set(self, case: Any, data: str, context: Any) -> None:
        token, _ = _merchant_of(case)
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Valid cases made business-valid; writes of the signing merchant signed."""
    if case.meta is None or not case.meta.generation.mode.is_negative:
        business_valid(case)
    _, signer = _merchant_of(case)
    if signer is not None:
        kwargs["auth"] = signer
