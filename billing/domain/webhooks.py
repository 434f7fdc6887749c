"""Webhook rules without I/O: event types, the retry schedule, the circuit, what counts as delivered."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

from billing.domain.events import EventType

ANNOUNCED_TYPES: tuple[str, ...] = ()
"""Types of the published contract that no writer emits yet: endpoints may subscribe to them
ahead of time. Every type is emitted today."""

EVENT_TYPES: tuple[str, ...] = (*get_args(EventType), *ANNOUNCED_TYPES)
"""Every event type an endpoint may subscribe to (SPEC section 7)."""

RESPONSE_EXCERPT_BYTES = 1024
"""How much of a receiver's answer the delivery log keeps."""


def unknown_event_types(types: list[str]) -> list[str]:
    """The entries of `types` that are not event types, in the order given."""
    known = set(EVENT_TYPES)
    return [name for name in types if name not in known]


def wants(event_types: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `event_types` (empty = all) receives `event_type`."""
    return not event_types or event_type in event_types


def delivered(status_code: int | None) -> bool:
    """A delivery succeeded: any 2xx answer (a timeout or connection error has no status)."""
    return status_code is not None and 200 <= status_code < 300


def gone(status_code: int | None) -> bool:
    """The receiver says the endpoint no longer exists: stop and disable it."""
    return status_code == 410


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff with full jitter, bounded by a give-up age.

    Retry n (n = 1 after the first failed attempt) waits a uniformly random time in
    [0, min(max_delay, base * 2^(n-1))]: full jitter spreads the retries of many failed
    deliveries instead of sending them again in one burst.
    """

    base: timedelta
    max_delay: timedelta
    give_up_after: timedelta

    def ceiling(self, retry: int) -> timedelta:
        """The largest wait before retry number `retry` (1-based)."""
        exponent = min(max(retry - 1, 0), 62)
        seconds = min(self.max_delay.total_seconds(), self.base.total_seconds() * (2**exponent))
        return timedelta(seconds=seconds)

    def next_attempt(
        self, *, retry: int, now: datetime, first_seen: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after a failure, or None when the delivery is to be abandoned."""
        if now >= first_seen + self.give_up_after:
            return None
        draw = (rng or random).random()
        at = now + self.ceiling(retry) * draw
        return min(at, first_seen + self.give_up_after)

    def timeline(self) -> list[tuple[int, timedelta, timedelta]]:
        """(retry, largest wait, largest total since the event) until the give-up age."""
        rows: list[tuple[int, timedelta, timedelta]] = []
        total = timedelta(0)
        retry = 1
        while total < self.give_up_after:
            wait = self.ceiling(retry)
            total = min(total + wait, self.give_up_after)
            rows.append((retry, wait, total))
            retry += 1
        return rows


def circuit_backoff(
    failures: int, *, threshold: int, first: timedelta, longest: timedelta
) -> timedelta | None:
    """How long an endpoint is left alone after `failures` consecutive failures (None: not at all).

    The circuit opens at `threshold` failures for `first`, doubling with every further failure
    up to `longest`.
    """
    if failures < threshold:
        return None
    exponent = min(failures - threshold, 30)
    return min(first * (2**exponent), longest)
