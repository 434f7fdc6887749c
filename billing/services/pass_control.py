"""How a long worker pass learns that its process is shutting down.

The worker sets a stop check for the passes it runs (`stop_when`); a pass calls
`stop_requested()` between batches and returns early, leaving the rest to the next worker.
Work already started (a claimed batch, charges in flight) is always finished first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


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
