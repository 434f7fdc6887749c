"""One database connection per request, shared by authentication, idempotency and the handler.

A merchant request used to open a session (and check out a connection) for authentication, another
for the Idempotency-Key claim, another for the handler and one more to store the answer. Now the
first of them checks out one connection for the request and every later session of the request is
bound to it (``billing.store.engine.SharedConnection``); ``request_connection_middleware`` gives the
connection back when the request ends.

Sessions on the request's connection run one after the other, each in its own transaction, so the
semantics services rely on are unchanged, the money path in particular: a charge is committed
'pending' before the processor is called and no transaction is open during the call. A session
asked for while another session of the request is still open gets a connection of its own.

The connection stays checked out for the whole request, processor calls included. At most
``database.pool_size`` requests of a process hold one at a time; the others wait for a free one
(``billing.store.engine.ConnectionSlots``) and, past the pool's timeout, answer 503 7019 as a
pool timeout does. Without that limit every request past the pool's size opened an overflow
connection and closed it again at the end (a connection made and torn down per request: about a
third of the CPU of a ``/health`` under 32 concurrent requests on a pool of 20). The overflow
connections stay for what needs a second connection: a session opened while another one of the
request is still open, and the worker running in the same process.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, Receive, Scope, Send

from billing.services.runtime import Runtime
from billing.store.engine import ConnectionSlots, SharedConnection

log = logging.getLogger("billing.api")

_STATE_KEY = "request_database"
_READING_METHODS = frozenset({"GET", "HEAD"})


class RequestDatabase:
    """The request's connection, checked out on first use (``bound_runtime()``)."""

    def __init__(self, runtime: Runtime, slots: ConnectionSlots, *, reads_only: bool = False) -> None:
        self.runtime = runtime
        self._slots = slots
        self._holds_slot = False
        self._shared = SharedConnection(runtime.engine, runtime.sessions, reads_only=reads_only)
        self._bound: Runtime | None = None

    async def bound_runtime(self) -> Runtime:
        """The runtime with ``sessions`` bound to this request's connection (checked out now)."""
        if self._bound is None:
            if not self._holds_slot:
                await self._slots.acquire()
                self._holds_slot = True
            self._bound = dataclasses.replace(self.runtime, sessions=await self._shared.sessions())
        return self._bound

    @property
    def started(self) -> Runtime | None:
        """The bound runtime once the connection was checked out, else None."""
        return self._bound

    async def aclose(self) -> None:
        self._bound = None
        try:
            with anyio.CancelScope(shield=True):
                await self._shared.aclose()
        except Exception:
            # A broken connection is discarded by the pool; the response is already decided.
            log.warning("request connection not returned cleanly", exc_info=True)
        finally:
            if self._holds_slot:
                self._holds_slot = False
                self._slots.release()


def _request_database(scope: Scope) -> RequestDatabase | None:
    value = scope.get("state", {}).get(_STATE_KEY)
    return value if isinstance(value, RequestDatabase) else None


async def request_runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    """The runtime whose sessions use the request's connection (checked out on the first call)."""
    database = _request_database(connection.scope)
    if database is None:  # pragma: no cover - every HTTP request of the app passes the middleware
        runtime: Runtime = connection.app.state.runtime
        return runtime
    return await database.bound_runtime()


def current_runtime(connection: ASGIConnection[Any, Any, Any, Any]) -> Runtime:
    """The request's bound runtime if a guard checked the connection out, else the app's runtime.

    Routes outside the merchant guard (login, refresh, health) keep the app's runtime: they do not
    check a connection out just to be served.
    """
    database = _request_database(connection.scope)
    bound = database.started if database is not None else None
    if bound is not None:
        return bound
    runtime: Runtime = connection.app.state.runtime
    return runtime


def request_connection_middleware(app: ASGIApp, runtime_of: Callable[[], Runtime]) -> ASGIApp:
    """Give each HTTP request a ``RequestDatabase`` and return its connection when the request ends.

    ``runtime_of()`` answers the app's runtime (it exists once the lifespan has started).
    """
    # Made on the first request of each runtime (each lifespan), on the loop that serves it.
    slots: dict[int, ConnectionSlots] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        runtime = runtime_of()
        limit = slots.get(id(runtime))
        if limit is None:
            slots.clear()
            limit = slots[id(runtime)] = ConnectionSlots(runtime.engine, runtime.settings.database.pool_size)
        # GET and HEAD handlers only read (no GET route writes): no transaction around the reads.
        reads_only = scope.get("method") in _READING_METHODS
        database = RequestDatabase(runtime, limit, reads_only=reads_only)
        scope.setdefault("state", {})[_STATE_KEY] = database
        try:
            await app(scope, receive, send)
        finally:
            await database.aclose()

    return middleware
