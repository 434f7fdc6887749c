"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.logging.config import StructLoggingConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.routes import HTTPRoute
from litestar.template.config import TemplateConfig

from api.auth import authenticate_request, provide_merchant
from api.controllers import auth as auth_routes
from api.controllers.charges import ChargesController
from api.controllers.health import health
from api.controllers.inbound import INBOUND_ROUTES
from api.controllers.metrics import HTTP_METRICS
from api.controllers.metrics import metrics as metrics_route
from api.controllers.notifications import NotificationSettingsController, SubscriptionNotificationsController
from api.controllers.payment_methods import PaymentMethodsController
from api.controllers.payment_pages import PAYMENT_PAGES
from api.controllers.plans import PlansController
from api.controllers.refunds import ChargeRefundsController
from api.controllers.sandbox import SandboxClockController
from api.controllers.subscriptions import SubscriptionsController
from api.controllers.transactions import create_transaction
from api.controllers.webhooks import EventsController, WebhookEndpointsController
from api.errors import EXCEPTION_HANDLERS
from api.idempotency import IDEMPOTENCY_EXCEPTION_HANDLERS, claim_idempotency_key, idempotency_middleware
from api.input_hygiene import refuse_unsafe_input
from api.middleware import options_allow_middleware, request_log_middleware
from api.openapi import openapi_config
from api.rate_limits import RateLimits
from api.request_session import current_runtime, request_connection_middleware
from api.requests import BillingRequest
from billing import __version__
from billing.domain.clock import Clock, SystemClock
from billing.logs import structlog_settings
from billing.services.runtime import Runtime, build_runtime
from billing.settings import Settings, load_settings

TEMPLATES = Path(__file__).with_name("templates")

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


def _route_handlers() -> list[Any]:
    """Every controller of the API; resource modules register themselves here."""
    handlers: list[Any] = [health, auth_routes.login, auth_routes.refresh]
    handlers.append(ChargesController)
    handlers.append(ChargeRefundsController)
    handlers += [PlansController, create_transaction, SubscriptionsController, PaymentMethodsController]
    handlers.append(SandboxClockController)
    handlers += [WebhookEndpointsController, EventsController]
    handlers += INBOUND_ROUTES
    handlers += [NotificationSettingsController, SubscriptionNotificationsController]
    handlers.append(PAYMENT_PAGES)
    return handlers


async def provide_runtime(request: Request[Any, Any, Any]) -> Runtime:
    """The runtime; on merchant routes its sessions share the request's connection (api/request_session.py)."""
    return current_runtime(request)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    processors: dict[str, Any] | None = None,
    extra_lifespans: Sequence[Lifespan] = (),
) -> Litestar:
    """Build the API. ``extra_lifespans`` run inside the database lifespan (the worker uses it)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def runtime_lifespan(app: Litestar) -> AsyncIterator[None]:
        settings.jwt_secret()  # a weak or unreadable token secret stops the start, not every login
        runtime = build_runtime(settings, clock or SystemClock(), processors)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.aclose()

    handlers = _route_handlers()
    if settings.metrics.enabled:
        handlers.append(metrics_route)  # operators' scraper: no merchant token, not in the contract
    config = AppConfig(
        route_handlers=[Router(path="/", route_handlers=handlers)],
        dependencies={"runtime": Provide(provide_runtime), "merchant": Provide(provide_merchant)},
        # Order matters: the Idempotency-Key is claimed for the merchant authenticated first, and
        # only for input that passed the edge checks.
        guards=[authenticate_request, refuse_unsafe_input, claim_idempotency_key],
        exception_handlers={**EXCEPTION_HANDLERS, **IDEMPOTENCY_EXCEPTION_HANDLERS},
        openapi_config=openapi_config(__version__),
        # The payment pages (api/controllers/payment_pages.py); Jinja2 escapes every value.
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        # JSON bodies: exact decimals, bounded nesting, media type checked (api/requests.py).
        request_class=BillingRequest,
        # Requests and latency by route template and status, for /metrics.
        middleware=[HTTP_METRICS.middleware] if settings.metrics.enabled else [],
        lifespan=[runtime_lifespan, *extra_lifespans],
        request_max_body_size=settings.server.max_request_bytes,
        # Litestar's structlog integration with the engine's own chain (billing/logs.py): its
        # loggers render like ours. Unexpected errors are logged once, by api/errors.py, with the
        # request id; Litestar's own exception logging would repeat them without it.
        logging_config=StructLoggingConfig(**structlog_settings(), log_exceptions="never"),
        debug=False,
    )
    app = Litestar.from_config(config)
    # Per process, in memory: the generous per-client budget and the strict login/refresh ones.
    app.state.rate_limits = RateLimits(settings.rate_limits)
    # Keyed by the path as declared and as formatted ({id:str} and {id}): the request's
    # path template is one or the other depending on how the route was matched.
    allowed = {
        path: ", ".join(sorted(r.methods))
        for r in app.routes
        if isinstance(r, HTTPRoute)
        for path in (r.path, r.path_format)
    }
    handler = options_allow_middleware(idempotency_middleware(app.asgi_handler), allowed)
    # Around the idempotency layer: storing the answer uses the request's connection too.
    handler = request_connection_middleware(handler, lambda: app.state.runtime)
    # Outermost layer, so unrouted requests (404, 405) get a request id and a log line too.
    app.asgi_handler = request_log_middleware(handler)
    return app
