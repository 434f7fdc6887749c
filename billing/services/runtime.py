"""What a process needs to run use cases: settings, database, processors and a clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.domain.clock import Clock
from billing.processors.registry import build_processors
from billing.settings import Settings
from billing.store.engine import Engine, SessionFactory, create_engine, session_factory


@dataclass
class Runtime:
    """Long-lived objects shared by the API and the worker of one process."""

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    clock: Clock
    processors: dict[str, Any] = field(default_factory=dict)

    async def aclose(self) -> None:
        for processor in self.processors.values():
            closer = getattr(processor, "aclose", None)
            if closer is not None:
                await closer()
        await self.engine.dispose()


def build_runtime(settings: Settings, clock: Clock, processors: dict[str, Any] | None = None) -> Runtime:
    """Create the engine and (unless given) the processors named in the settings."""
    engine = create_engine(
        settings.database.url, pool_size=settings.database.pool_size, echo=settings.database.echo
    )
    if processors is None:
        processors = dict(build_processors(settings.processors.enabled(), clock=clock))
    return Runtime(
        settings=settings, engine=engine, sessions=session_factory(engine), clock=clock, processors=processors
    )
