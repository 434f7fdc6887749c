"""`billing sandbox serve`: the sandbox processor as an HTTP service on loopback."""

from __future__ import annotations

import asyncio

import click


@click.group("sandbox")
def sandbox_group() -> None:
    """The sandbox processor as a service, for load and crash tests."""


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8766, show_default=True, help="Port to bind (0: any free port).")
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Answer every call after this long."
)
@click.option(
    "--timeout-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of charges whose request or answer is lost.",
)
@click.option(
    "--hang-seconds",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="How long a lost call hangs before the server gives up on it.",
)
@click.option("--seed", type=int, default=None, help="Seed for choosing the lost calls.")
def serve_sandbox(
    host: str, port: int, latency_ms: float, timeout_rate: float, hang_seconds: float, seed: int | None
) -> None:
    """Serve the sandbox processor over HTTP; the first line printed is `listening on URL`.

    Workers reach it through `billing.processors.http_sandbox`; `GET /ledger` reports what it did.
    """
    # Imported here, so that no other command (the API above all) loads the sandbox service.
    from billing.processors.sandbox_server import SandboxServer, serve

    server = SandboxServer(
        latency_seconds=latency_ms / 1000, timeout_rate=timeout_rate, hang_seconds=hang_seconds, seed=seed
    )
    asyncio.run(serve(host, port, server))
