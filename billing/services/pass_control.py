"""How a long worker pass learns that its process is shutting down, and what the claim-and-charge
passes (renewals, on-demand) share: their lanes, their semaphore and their summary type.

The worker sets a stop check for the passes it runs (`stop_when`); a pass calls
`stop_requested()` between batches and returns early, leaving the rest to the next worker.
Work already started (a claimed batch, charges in flight) is always finished first.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Generic, TypeVar

from billing.services.runtime import Runtime


def _never() -> bool:
    return False


_STOP: ContextVar[Callable[[], bool]] = ContextVar("billing_pass_stop", default=_never)


def stop_requested() -> bool:
    """True once the process running this pass asked it to stop."""
    return _STOP.get()()


@contextmanager
def stop_when(check: Callable[[], bool]) -> Iterator[None]:
    """Passes run inside this block stop between batches once `check()` is True."""
    token = _STOP.set(check)
    try:
        yield
    finally:
        _STOP.reset(token)


@dataclass
class PassSummary:
    """What a claim-and-charge pass did; each pass adds its own counts to these."""

    claimed: int = 0
    unknown: int = 0

    def add(self, other: PassSummary) -> None:
        """Add `other`'s counts to this one (the sandbox clock sums the passes one advance runs)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


Progress = Callable[[int], None]


RECONCILE_AFTER = timedelta(seconds=60)
"""A charge whose outcome stays unknown is looked at again this much later (client time)."""

S = TypeVar("S", bound=PassSummary)


class LanePass(Generic[S]):
    """What the renewal and on-demand passes share: batch size, leases, one semaphore bounding
    the processor calls in flight, lanes that each claim and charge a batch at a time, and the
    pass's summary (a `summary_type`)."""

    summary_type: type[S]

    def __init__(
        self,
        runtime: Runtime,
        identity: str,
        *,
        semaphore: asyncio.Semaphore | None = None,
        progress: Progress | None = None,
        batch_size: int | None = None,
        lanes: int | None = None,
        reconcile_after: timedelta = RECONCILE_AFTER,
    ) -> None:
        worker = runtime.settings.worker
        self.runtime = runtime
        self.identity = identity
        self.batch_size = batch_size or worker.batch_size
        self.lease_seconds = worker.lease_seconds
        self.semaphore = semaphore or asyncio.Semaphore(worker.concurrency)
        # Enough lanes to keep `concurrency` processor calls in flight, and at least two so
        # one lane's database work overlaps another's processor calls.
        self.lanes = lanes or max(2, min(8, math.ceil(worker.concurrency / self.batch_size)))
        self.progress = progress
        self.reconcile_after = reconcile_after
        self.summary: S = self.summary_type()

    async def in_lanes(self, step: Callable[[], Awaitable[int]]) -> None:
        """Run `step` (claim one batch and take it to the end; returns how many it claimed) in
        every lane until it claims nothing or the process is stopping.

        If one lane fails, the others stop too (their claimed rows come back when the leases run
        out, and their pending charges are resumed, never repeated); a lone failure is raised as
        itself.
        """

        async def lane() -> None:
            while not stop_requested():
                if await step() == 0:
                    return

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.lanes):
                    group.create_task(lane())
        except BaseExceptionGroup as failed:
            if len(failed.exceptions) == 1:
                raise failed.exceptions[0] from None
            raise
