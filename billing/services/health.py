"""Readiness checks."""

from __future__ import annotations

import logging

from billing.services.runtime import Runtime
from billing.store.engine import ping

log = logging.getLogger("billing.health")


async def check_database(runtime: Runtime) -> bool:
    """True when the database answers a trivial query."""
    try:
        await ping(runtime.engine)
    except Exception as exc:  # any driver failure means "not ready"
        log.warning("database ping failed: %s", type(exc).__name__)
        return False
    return True
