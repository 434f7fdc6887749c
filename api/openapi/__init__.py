"""The API contract: the OpenAPI document at /schema/openapi.json and its offline UI at /schema."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig

from api.openapi.plugins import Contract, ContractJsonPlugin, OfflineSwaggerPlugin

DESCRIPTION = """Subscription billing with on-demand charging, speaking the Migo recurring-payments API.

Every answer is an envelope: `{success: true, message, data}`, or `{success: false, message, errors:
[{code, message, field?}], requestId}` with a code from the error catalog. Merchant routes take the
`accessToken` of `POST /v1/auth/login` as a Bearer token; writes are signed (`X-Timestamp`,
`X-Signature`). Money is exact: send amounts as decimal strings ("29.90") or JSON numbers; answers
carry JSON numbers with the currency's decimals. docs/api.md shows how to generate a client.
"""


def openapi_config(version: str) -> OpenAPIConfig:
    """The OpenAPI settings of the app: the contract at /schema/openapi.json, Swagger UI at /schema."""
    contract = Contract()
    return OpenAPIConfig(
        title="billing-engine API",
        version=version,
        description=DESCRIPTION,
        path="/schema",
        use_handler_docstrings=True,
        # The first plugin is also served at /schema itself.
        render_plugins=[OfflineSwaggerPlugin(contract, schema_path="/schema"), ContractJsonPlugin(contract)],
    )
