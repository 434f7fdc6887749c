"""GET /metrics: Prometheus text format, for the operator's scraper (docs/operations.md).

Not a merchant route: no client token, no signature, left out of the OpenAPI document. When
`metrics.bearer_token` is set, the scraper sends `Authorization: Bearer <token>` (compared in
constant time); anything else answers 401 with code 7600.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.plugins.prometheus import PrometheusConfig

from billing.domain.errors import BillingError
from billing.services.metrics import CONTENT_TYPE, scrape
from billing.services.runtime import Runtime

HTTP_METRICS = PrometheusConfig(
    app_name="billing",
    prefix="billing_http",
    group_path=True,  # the route template (/v1/subscriptions/{subscription_id}), not every id
    exclude=["^/metrics$"],
)
"""Litestar's Prometheus middleware: requests, errors and latency by method, route template and status."""


def _token_accepted(request: Request[Any, Any, Any], runtime: Runtime) -> bool:
    expected = runtime.settings.metrics.bearer_token
    if expected is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.get_secret_value().encode())


@get("/metrics", operation_id="GetMetrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> Response[bytes]:
    """The engine's series: this host's counters and histograms, and the backlog read from the database."""
    if not _token_accepted(request, runtime):
        raise BillingError("UNAUTHORIZED")
    return Response(await scrape(runtime), media_type=CONTENT_TYPE, status_code=200)
