"""The inbound routes (/webhooks/*) are for processors and the settlement feed, not merchants.

They are left out of the published document on purpose: the document describes the merchant API
(Bearer token, Ed25519 request signatures, Idempotency-Key), while these bodies are signed by their
senders with an HMAC over the raw bytes, which a generated client or schemathesis cannot produce.
Their contract is docs/processors.md and docs/settlement.md. This test keeps both halves true: the
routes are served, unlisted, and answer their own 401 (not the merchant token's) when unsigned.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio

INBOUND = ["/webhooks/volcan", "/webhooks/stripe", "/webhooks/settlements"]


async def test_inbound_routes_are_served_but_not_published(client: Any, app: Any) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/webhooks/")]
    served = {route.path for route in app.routes}
    assert set(INBOUND) <= served
    for path in INBOUND:
        answer = await client.post(path, json={"eventId": "e1"})
        assert answer.status_code == 401
        assert answer.json()["errors"][0]["code"] == "7070"
