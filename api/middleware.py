"""Request ids and one structured access-log line per request.

The request id is bound in structlog's contextvars for the whole request, so every line the
request causes (ours, the services', Litestar's) carries ``request_id`` (billing/logs.py).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("billing.access")


def request_log_middleware(app: ASGIApp) -> ASGIApp:
    """Give each HTTP request an id (or keep the caller's ``X-Request-Id``), echo it, log the outcome."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        incoming = next(
            (
                value.decode("latin-1")
                for name, value in scope.get("headers") or []
                if name == b"x-request-id"
            ),
            "",
        )
        request_id = incoming[:64] if incoming and incoming.isprintable() else "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send_wrapper)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope.get("method"),
                        "path": scope.get("path"),
                        "status": status_holder["status"],
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": request_id,
                    },
                )
            structlog.contextvars.reset_contextvars(**bound)

    return middleware


def options_allow_middleware(app: ASGIApp, allowed: dict[str, str]) -> ASGIApp:
    """Answer OPTIONS with every method of the path, not only those of the path's first handler.

    Litestar builds a path's OPTIONS answer when the path's first handler is registered, so a
    path served by several handlers (POST and PUT /v1/plans) would list only the first one's
    methods. ``allowed`` maps each route's path template to its full ``Allow`` value.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "OPTIONS":
            await app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            methods = allowed.get(str(scope.get("path_template", "")))
            if message["type"] == "http.response.start" and methods:
                headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != b"allow"]
                headers.append((b"allow", methods.encode()))
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware
