"""The sandbox processor as a small HTTP service on loopback, shared by many worker processes.

Load tests and crash tests need what a real processor gives: one ledger that every worker
process talks to over the network, answers that take time, and answers that never come.
This Litestar app wraps `SandboxProcessor` (same test cards, same outcomes), is served by
uvicorn (`billing sandbox serve`), and can be told to

- answer after `latency_seconds`, and
- lose a fraction `timeout_rate` of charge calls: half of them are *lost requests* (nothing
  is recorded) and half *lost answers* (the charge is recorded), and either way the answer
  only comes after `hang_seconds`, as a 503, long after any sensible client gave up; so a
  client only learns the truth by looking the idempotency key up.

Routes (JSON bodies): `POST /tokenize`, `POST /authorize`, `POST /void`, `POST /charge`,
`GET /lookup/{key}` (404 when the key was never seen), `GET /ledger` (every key with its
outcome, how many charge requests carried it and how many times money moved for it) and
`GET /health`. A refused request answers the catalog name: `{"error": NAME, "code": CODE}`.

Only tests, `bench/` and `billing sandbox serve` import this module; the API never loads it.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from litestar import Litestar, MediaType, Response, get, post
from litestar.exceptions import HTTPException

from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, Outcome
from billing.processors.sandbox import SandboxProcessor

Answer = tuple[int, dict[str, Any]]


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """An outcome as the wire format of this server."""
    return {
        "status": outcome.status,
        "reference": outcome.reference,
        "decline_code": outcome.decline_code,
        "decline_message": outcome.decline_message,
        "hard_decline": outcome.hard_decline,
    }


@dataclass
class SandboxServer:
    """The server's state: the sandbox (with its ledger), the fault settings and the counters."""

    latency_seconds: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = 30.0
    seed: int | None = None
    sandbox: SandboxProcessor = field(default_factory=SandboxProcessor)
    requests: Counter[str] = field(default_factory=Counter)
    money_moved: Counter[str] = field(default_factory=Counter)
    lost_requests: int = 0
    lost_answers: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    async def tokenize(self, data: dict[str, Any]) -> Answer:
        card = CardInfo(
            number=data["number"],
            exp_month=int(data["exp_month"]),
            exp_year=int(data["exp_year"]),
            cvv=data["cvv"],
            holder_name=data.get("holder_name", ""),
        )
        token = await self.sandbox.tokenize(card, customer_ref=data.get("customer_ref", ""))
        return 200, {
            "token": token.token,
            "brand": token.brand,
            "last4": token.last4,
            "exp_month": token.exp_month,
            "exp_year": token.exp_year,
        }

    async def authorize(self, data: dict[str, Any]) -> Answer:
        outcome = await self.sandbox.authorize(
            data["token"], int(data["amount_minor"]), data["currency"], idempotency_key=data["key"]
        )
        return 200, outcome_json(outcome)

    async def void(self, data: dict[str, Any]) -> Answer:
        await self.sandbox.void(data["reference"])
        return 200, {"voided": True}

    async def lookup(self, key: str) -> Answer:
        found = await self.sandbox.lookup(key)
        return (404, {"found": False}) if found is None else (200, outcome_json(found))

    async def charge(self, data: dict[str, Any]) -> Answer | None:
        """Charge; None means the answer is lost (the caller hangs, then gives up)."""
        key = data["key"]
        self.requests[key] += 1
        lost = self.timeout_rate > 0 and self._random.random() < self.timeout_rate
        if lost and self._random.random() < 0.5:
            self.lost_requests += 1
            return None  # never reached the processor
        known = await self.sandbox.lookup(key)
        outcome = await self.sandbox.charge(
            data["token"], int(data["amount_minor"]), data["currency"], idempotency_key=key,
            description=data.get("description", ""),
        )  # fmt: skip
        if known is None:
            stored = await self.sandbox.lookup(key)
            if stored is not None and stored.status == "succeeded":
                self.money_moved[key] += 1
        if lost:
            self.lost_answers += 1
            return None  # the money moved (or not) but the answer is lost
        return 200, outcome_json(outcome)

    def ledger_report(self) -> dict[str, Any]:
        """Every key the sandbox recorded, with request counts (for tests and load reports)."""
        entries = getattr(self.sandbox.ledger, "entries", {})
        return {
            "entries": [
                {
                    "key": key,
                    "operation": entry.operation,
                    "status": entry.outcome.status,
                    "amount_minor": entry.amount_minor,
                    "requests": self.requests.get(key, 0),
                    "money_moved": self.money_moved.get(key, 0),
                }
                for key, entry in entries.items()
            ],
            "lost_requests": self.lost_requests,
            "lost_answers": self.lost_answers,
        }

    async def answer(self, work: Callable[[], Awaitable[Answer | None]]) -> Response[dict[str, Any]]:
        """Wait the configured latency, run `work` and turn its result (or refusal) into a response."""
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        try:
            result = await work()
        except BillingError as exc:
            result = (
                (exc.status if 400 <= exc.status < 500 else 400),
                {"error": exc.spec.name, "code": exc.code},
            )
        except (KeyError, ValueError, TypeError):
            result = 400, {"error": "bad request"}
        if result is None:
            await asyncio.sleep(self.hang_seconds)
            result = 503, {"error": "answer lost"}
        status, payload = result
        return Response(payload, status_code=status, media_type=MediaType.JSON)


def create_app(server: SandboxServer) -> Litestar:
    """The Litestar app serving `server`."""

    @get("/health")
    async def health() -> Response[dict[str, Any]]:
        return await server.answer(_constant(200, {"ok": True}))

    @get("/ledger")
    async def ledger() -> Response[dict[str, Any]]:
        return await server.answer(lambda: _now(200, server.ledger_report()))

    @get("/lookup/{key:path}")
    async def lookup(key: str) -> Response[dict[str, Any]]:
        # A path parameter, so a key holding an (escaped) slash still reaches the handler whole.
        return await server.answer(lambda: server.lookup(key.removeprefix("/")))

    def posting(path: str, operation: Callable[[dict[str, Any]], Awaitable[Answer | None]]) -> Any:
        @post(path, status_code=200)
        async def handler(data: dict[str, Any]) -> Response[dict[str, Any]]:
            return await server.answer(lambda: operation(data))

        return handler

    routes = [
        posting("/tokenize", server.tokenize),
        posting("/authorize", server.authorize),
        posting("/void", server.void),
        posting("/charge", server.charge),
    ]
    return Litestar(
        route_handlers=[health, ledger, lookup, *routes],
        openapi_config=None,
        logging_config=None,
        exception_handlers={HTTPException: _http_error},
    )


async def _now(status: int, payload: dict[str, Any]) -> Answer:
    return status, payload


def _constant(status: int, payload: dict[str, Any]) -> Callable[[], Awaitable[Answer]]:
    return lambda: _now(status, payload)


def _http_error(_request: Any, exc: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's own refusals (unknown route, unreadable body) in this server's wire format."""
    name = "no such route" if exc.status_code == 404 else "bad request"
    return Response({"error": name}, status_code=exc.status_code, media_type=MediaType.JSON)


async def serve(host: str, port: int, server: SandboxServer) -> None:
    """Serve until stopped (SIGINT/SIGTERM); prints `listening on http://HOST:PORT` first."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)  # from here on connections wait in the backlog until uvicorn accepts them
    bound = listener.getsockname()
    config = uvicorn.Config(
        create_app(server),
        log_config=None,
        access_log=False,
        backlog=2048,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    await uvicorn.Server(config).serve(sockets=[listener])


def start_service(
    *, latency_ms: float = 0, timeout_rate: float = 0, hang_seconds: float = 30, seed: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run `billing sandbox serve` on a free loopback port in a child process: (process, base URL)."""
    argv = [sys.executable, "-m", "billing.cli", "sandbox", "serve", "--port", "0"]
    argv += ["--latency-ms", str(latency_ms), "--timeout-rate", str(timeout_rate)]
    argv += ["--hang-seconds", str(hang_seconds)] + ([] if seed is None else ["--seed", str(seed)])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE)  # noqa: S603 - argv is built here
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        process.kill()
        process.wait()
        raise RuntimeError(f"the sandbox service did not start: {line!r}")
    return process, line.removeprefix("listening on ")


def stop_service(process: subprocess.Popen[bytes]) -> None:
    """Stop a child process such as `start_service`'s: SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
