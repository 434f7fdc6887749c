"""The error catalog: the single source of codes, names, HTTP statuses and messages.

Codes are strings on the wire (Migo's convention). The HTTP status of a code follows
its class: not found 404, bad parameters 400, authentication 401, permission 403,
conflict 409; declines answer 402 (as Stripe does for card errors) and an
unclassified code answers 500. `docs/errors.md` is generated from this table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

ErrorName = Literal[
    "CHECK_PARAMETERS",
    "GREATER_THAN_ZERO",
    "INVALID_FORMAT_AMOUNT",
    "CONSULT_WITH_SUPPORT",
    "SERVICES_NOT_FOUND",
    "PROCESSOR_NOT_FOUND",
    "EXTERNAL_ID_ALREADY_EXISTS",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "UNSUPPORTED_CURRENCY",
    "PAYLOAD_TOO_LARGE",
    "INVALID_FILE",
    "SERVICE_UNAVAILABLE",
    "SANDBOX_ONLY",
    "UNSUPPORTED_MEDIA_TYPE",
    "CSV_TOO_MANY_ROWS",
    "PLAN_NOT_FOUND",
    "SUBSCRIPTION_NOT_FOUND",
    "TRANSACTION_NOT_FOUND",
    "BATCH_NOT_FOUND",
    "CHARGE_NOT_FOUND",
    "WEBHOOK_ENDPOINT_NOT_FOUND",
    "CLIENT_NOT_FOUND",
    "EVENT_NOT_FOUND",
    "WEBHOOK_DELIVERY_NOT_FOUND",
    "STATE_CONFLICT",
    "LAST_PAYMENT_METHOD",
    "TRANSACTION_ALREADY_USED",
    "PLAN_PROCESSOR_NOT_ALLOWED",
    "WEBHOOK_ENDPOINT_LIMIT",
    "CHARGE_NOT_REFUNDABLE",
    "REFUND_EXCEEDS_REMAINING",
    "REFUND_DECLINED",
    "NOTIFICATION_SIGNATURE_INVALID",
    "SETTLEMENT_TOO_MANY_ROWS",
    "SETTLEMENT_AMOUNT_MISMATCH",
    "SETTLEMENT_CURRENCY_MISMATCH",
    "SETTLEMENT_NOT_SETTLEABLE",
    "USER_NOT_FOUND",
    "CARD_NOT_FOUND",
    "CARD_DECLINED",
    "CARD_EXPIRED",
    "CARD_REPORTED_LOST_OR_STOLEN",
    "INVALID_CARD_DATA",
    "PROCESSOR_ERROR",
    "INSUFFICIENT_FUNDS",
    "UNAUTHORIZED",
    "TOKEN_EXPIRED",
    "TOKEN_INVALID",
    "REFRESH_TOKEN_INVALID",
    "INVALID_SIGNATURE",
    "CLIENT_MISMATCH",
    "KEYS_EXPIRED",
    "IDEMPOTENCY_KEY_REUSED",
    "IDEMPOTENCY_IN_PROGRESS",
    "RATE_LIMITED",
    "AUTH_RATE_LIMITED",
    "INVALID_RETURN_URL",
    "PAYMENT_LINK_NOT_FOUND",
    "PAYMENT_LINK_USED",
    "PAYMENT_LINK_EXPIRED",
    "PAYMENT_LINK_LOCKED",
    "PAYMENT_LINK_TOO_MANY_ATTEMPTS",
    "PAYMENT_LINK_FORM_EXPIRED",
    "PAYMENT_LINK_IN_PROGRESS",
]
"""Every catalog name; mypy refuses `BillingError("...")` with a name that is not one of these."""


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One row of the catalog."""

    code: str
    name: ErrorName
    status: int
    message: str


_ROWS: tuple[ErrorSpec, ...] = (
    # General & parameters (70xx)
    ErrorSpec("7000", "CHECK_PARAMETERS", 400, "Check the parameters provided."),
    ErrorSpec("7001", "GREATER_THAN_ZERO", 400, "The amount must be greater than zero."),
    ErrorSpec("7002", "INVALID_FORMAT_AMOUNT", 400, "Invalid amount format for the currency."),
    ErrorSpec("7003", "CONSULT_WITH_SUPPORT", 500, "Please contact support for assistance."),
    ErrorSpec("7004", "SERVICES_NOT_FOUND", 404, "Required services not found."),
    ErrorSpec("7005", "PROCESSOR_NOT_FOUND", 404, "Payment processor not found."),
    ErrorSpec("7006", "EXTERNAL_ID_ALREADY_EXISTS", 409, "External ID already exists."),
    ErrorSpec("7010", "NOT_FOUND", 404, "Not found, verify endpoint."),
    ErrorSpec("7015", "METHOD_NOT_ALLOWED", 405, "This endpoint does not accept that HTTP method."),
    ErrorSpec("7016", "UNSUPPORTED_CURRENCY", 400, "The currency is not a known ISO 4217 code."),
    ErrorSpec("7017", "PAYLOAD_TOO_LARGE", 413, "The request body or file is too large."),
    ErrorSpec("7018", "INVALID_FILE", 400, "The uploaded file could not be read."),
    ErrorSpec("7019", "SERVICE_UNAVAILABLE", 503, "A required service is unavailable; retry later."),
    ErrorSpec("7020", "SANDBOX_ONLY", 403, "This operation is only available to sandbox clients."),
    ErrorSpec(
        "7021", "UNSUPPORTED_MEDIA_TYPE", 415, "Send the body as application/json (Content-Type header)."
    ),
    ErrorSpec("7022", "CSV_TOO_MANY_ROWS", 413, "The file has more rows than one upload may hold; split it."),
    # Resources (7040-7099)
    ErrorSpec("7040", "PLAN_NOT_FOUND", 404, "Plan not found."),
    ErrorSpec("7041", "SUBSCRIPTION_NOT_FOUND", 404, "Subscription not found."),
    ErrorSpec("7042", "TRANSACTION_NOT_FOUND", 404, "Transaction not found."),
    ErrorSpec("7043", "BATCH_NOT_FOUND", 404, "Batch not found."),
    ErrorSpec("7044", "CHARGE_NOT_FOUND", 404, "Charge not found."),
    ErrorSpec("7045", "WEBHOOK_ENDPOINT_NOT_FOUND", 404, "Webhook endpoint not found."),
    ErrorSpec("7046", "CLIENT_NOT_FOUND", 404, "Client not found."),
    ErrorSpec("7047", "EVENT_NOT_FOUND", 404, "Event not found."),
    ErrorSpec("7048", "WEBHOOK_DELIVERY_NOT_FOUND", 404, "Webhook delivery not found."),
    ErrorSpec("7050", "STATE_CONFLICT", 409, "The resource is not in a state that allows this operation."),
    ErrorSpec(
        "7051",
        "LAST_PAYMENT_METHOD",
        409,
        "The only payment method of an active subscription cannot be removed.",
    ),
    ErrorSpec("7052", "TRANSACTION_ALREADY_USED", 409, "The transaction was already used for an enrolment."),
    ErrorSpec("7053", "PLAN_PROCESSOR_NOT_ALLOWED", 400, "The plan does not allow this processor."),
    ErrorSpec(
        "7054",
        "WEBHOOK_ENDPOINT_LIMIT",
        409,
        "The client has as many webhook endpoints as allowed; delete one before adding another.",
    ),
    # Refunds (7060-7069)
    ErrorSpec(
        "7060",
        "CHARGE_NOT_REFUNDABLE",
        409,
        "Only a succeeded or settled charge can be refunded; this one is not (or not yet).",
    ),
    ErrorSpec(
        "7061",
        "REFUND_EXCEEDS_REMAINING",
        409,
        "The refund is more than what remains refundable on the charge.",
    ),
    ErrorSpec("7062", "REFUND_DECLINED", 402, "The processor refused the refund."),
    # Inbound notifications and settlement (7070-7079)
    ErrorSpec(
        "7070",
        "NOTIFICATION_SIGNATURE_INVALID",
        401,
        "The notification signature did not validate (secret, timestamp or body).",
    ),
    ErrorSpec("7071", "SETTLEMENT_TOO_MANY_ROWS", 413, "A settlement report holds at most 10,000 charges."),
    ErrorSpec(
        "7072", "SETTLEMENT_AMOUNT_MISMATCH", 409, "The settled amount differs from the charge's amount."
    ),
    ErrorSpec(
        "7073",
        "SETTLEMENT_CURRENCY_MISMATCH",
        409,
        "The settled currency differs from the charge's currency.",
    ),
    ErrorSpec("7074", "SETTLEMENT_NOT_SETTLEABLE", 409, "Only a succeeded charge can settle."),
    # Users and cards (71xx, 72xx)
    ErrorSpec("7100", "USER_NOT_FOUND", 404, "User not found in the system."),
    ErrorSpec("7200", "CARD_NOT_FOUND", 404, "Card not found in the system."),
    ErrorSpec("7201", "CARD_DECLINED", 402, "The card was declined."),
    ErrorSpec("7202", "CARD_EXPIRED", 402, "The card has expired."),
    ErrorSpec("7203", "CARD_REPORTED_LOST_OR_STOLEN", 402, "The card was reported lost or stolen."),
    ErrorSpec("7204", "INVALID_CARD_DATA", 400, "The card data is invalid."),
    ErrorSpec("7205", "PROCESSOR_ERROR", 502, "The processor could not complete the operation; retry later."),
    # Funds (73xx)
    ErrorSpec("7303", "INSUFFICIENT_FUNDS", 402, "The account does not have enough balance."),
    # Authentication and authorisation (76xx)
    ErrorSpec("7600", "UNAUTHORIZED", 401, "Authentication is required: send a Bearer access token."),
    ErrorSpec("7601", "TOKEN_EXPIRED", 401, "The access token has expired; refresh it or log in again."),
    ErrorSpec("7602", "TOKEN_INVALID", 401, "The access token is malformed or its signature is invalid."),
    ErrorSpec("7603", "REFRESH_TOKEN_INVALID", 401, "The refresh token is unknown, expired or already used."),
    ErrorSpec("7604", "INVALID_SIGNATURE", 401, "The request signature did not validate."),
    ErrorSpec("7605", "CLIENT_MISMATCH", 403, "The request names a client other than the authenticated one."),
    ErrorSpec("7616", "KEYS_EXPIRED", 401, "Your signing keys have expired; rotate them and log in again."),
    # Idempotency (77xx)
    ErrorSpec(
        "7700", "IDEMPOTENCY_KEY_REUSED", 409, "The Idempotency-Key was used with a different request."
    ),
    ErrorSpec(
        "7701", "IDEMPOTENCY_IN_PROGRESS", 409, "A request with this Idempotency-Key is still in progress."
    ),
    # Rate limits (772x): the answer carries Retry-After, in seconds.
    ErrorSpec(
        "7720", "RATE_LIMITED", 429, "Too many requests from this client; retry after Retry-After seconds."
    ),
    ErrorSpec(
        "7721",
        "AUTH_RATE_LIMITED",
        429,
        "Too many login or refresh attempts; retry after Retry-After seconds.",
    ),
    # Payment links: the hosted enrolment page (78xx)
    ErrorSpec(
        "7800",
        "INVALID_RETURN_URL",
        400,
        "returnUrl must be an absolute https URL (sandbox clients may also use http).",
    ),
    ErrorSpec("7801", "PAYMENT_LINK_NOT_FOUND", 404, "Payment link not found."),
    ErrorSpec("7802", "PAYMENT_LINK_USED", 410, "This payment link was already used."),
    ErrorSpec("7803", "PAYMENT_LINK_EXPIRED", 410, "This payment link has expired."),
    ErrorSpec(
        "7804", "PAYMENT_LINK_LOCKED", 410, "This payment link is locked after too many declined cards."
    ),
    ErrorSpec(
        "7805", "PAYMENT_LINK_TOO_MANY_ATTEMPTS", 429, "Too many card attempts from this address; try later."
    ),
    ErrorSpec(
        "7806", "PAYMENT_LINK_FORM_EXPIRED", 403, "The form expired or was not sent from its page; reload it."
    ),
    ErrorSpec("7807", "PAYMENT_LINK_IN_PROGRESS", 409, "A payment on this link is still being confirmed."),
)

CATALOG: dict[str, ErrorSpec] = {row.code: row for row in _ROWS}
BY_NAME: dict[str, ErrorSpec] = {row.name: row for row in _ROWS}


def spec(name_or_code: str) -> ErrorSpec:
    """Look a catalog row up by NAME or code; unknown keys are a programming error."""
    found = BY_NAME.get(name_or_code) or CATALOG.get(name_or_code)
    if found is None:
        raise KeyError(f"unknown error catalog entry: {name_or_code}")
    return found


@dataclass(frozen=True, slots=True)
class ErrorItem:
    """One entry of the response's `errors` list."""

    code: str
    message: str
    field: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass
class BillingError(Exception):
    """A domain failure that maps onto one catalog row.

    `message` overrides the catalog text with something more specific
    (it must never contain secrets or card data); `field` names the offending input.
    """

    name: ErrorName
    message: str | None = None
    field: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def of_code(cls, code: str, *, message: str | None = None, field: str | None = None) -> BillingError:
        """The error for a catalog code read from stored data (a charge's decline code)."""
        return cls(spec(code).name, message=message, field=field)

    def __post_init__(self) -> None:
        self.spec = spec(self.name)
        Exception.__init__(self, self.detail)

    @property
    def code(self) -> str:
        return self.spec.code

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def detail(self) -> str:
        return self.message or self.spec.message

    def items(self) -> list[ErrorItem]:
        return [ErrorItem(self.spec.code, self.detail, self.field)]

    def __str__(self) -> str:
        return f"{self.spec.code} {self.spec.name}: {self.detail}"


def catalog_markdown() -> str:
    """The catalog as the Markdown table published in docs/errors.md."""
    lines = ["| code | name | HTTP | message |", "|---|---|---|---|"]
    lines += [f"| {row.code} | {row.name} | {row.status} | {row.message} |" for row in _ROWS]
    return "\n".join(lines) + "\n"
