"""Request budgets: generous per client on merchant routes, strict per address and per clientId on login/refresh.

Each budget is ``requests`` per ``period`` for one key, counted in this process's memory with the
generic cell rate algorithm (GCRA): one float per key (the time at which the key's budget is whole
again), no timers, no database round trip, and the exact wait for ``Retry-After``. A key that has been
idle for a period is back at its full budget, bursts included. With N API processes a client gets N
budgets (docs/authentication.md#rate-limits says so to operators).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection

from billing.domain.errors import BillingError, ErrorName
from billing.settings import RateLimitSettings

RETRY_AFTER = "retry_after_seconds"
"""Key of ``BillingError.data`` that the error handler turns into the ``Retry-After`` header."""


class Budget:
    """``requests`` per ``period`` seconds for each key, as a burst or spread out (GCRA)."""

    def __init__(
        self, requests: int, period: float, max_keys: int, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._period = float(period)
        self._interval = self._period / requests
        self._max_keys = max_keys
        self._now = now
        self._full_at: dict[Hashable, float] = {}

    def take(self, key: Hashable) -> float:
        """Spend one request of ``key``'s budget: 0 when admitted, else the seconds until it would be."""
        now = self._now()
        full_at = max(self._full_at.get(key, now), now) + self._interval
        wait = full_at - self._period - now
        if wait > 0:
            return wait
        if key not in self._full_at and len(self._full_at) >= self._max_keys:
            self._forget(now)
        self._full_at[key] = full_at
        return 0.0

    def _forget(self, now: float) -> None:
        """Drop keys back at their full budget (forgetting them changes nothing), else the oldest."""
        kept = {key: at for key, at in self._full_at.items() if at > now}
        while len(kept) >= self._max_keys:
            del kept[next(iter(kept))]
        self._full_at = kept


@dataclass(frozen=True, slots=True)
class _Unlimited:
    def take(self, key: Hashable) -> float:
        return 0.0


class RateLimits:
    """The budgets of one API process (``app.state.rate_limits``)."""

    def __init__(self, settings: RateLimitSettings, now: Callable[[], float] = time.monotonic) -> None:
        def budget(requests: int) -> Budget | _Unlimited:
            if not settings.enabled:
                return _Unlimited()
            return Budget(requests, settings.period_seconds, settings.max_tracked_keys, now)

        self.client = budget(settings.client_requests)
        self.auth_by_address = {route: budget(settings.login_per_ip) for route in ("login", "refresh")}
        self.auth_by_client = {route: budget(settings.login_per_client) for route in ("login", "refresh")}

    def admit_client(self, client_id: str) -> None:
        """A merchant request of ``client_id`` (after its token was checked, before anything else)."""
        _admit(self.client, client_id, "RATE_LIMITED")

    def admit_auth_address(self, route: str, address: str) -> None:
        """A login or refresh attempt from ``address``."""
        _admit(self.auth_by_address[route], address, "AUTH_RATE_LIMITED")

    def admit_auth_client(self, route: str, client_id: str) -> None:
        """A login or refresh attempt for ``client_id`` (login: the body's; refresh: the token's)."""
        _admit(self.auth_by_client[route], client_id, "AUTH_RATE_LIMITED")


def _admit(budget: Budget | _Unlimited, key: str, name: ErrorName) -> None:
    wait = budget.take(key)
    if wait > 0:
        raise BillingError(name, data={RETRY_AFTER: max(1, math.ceil(wait))})


def rate_limits_of(connection: ASGIConnection[Any, Any, Any, Any]) -> RateLimits:
    """The process's budgets, made by ``create_app``."""
    limits: RateLimits = connection.app.state.rate_limits
    return limits


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The peer address as the server saw it (behind a proxy: as the server's proxy settings resolve it)."""
    client = connection.client
    return client.host if client is not None and client.host else "unknown"
