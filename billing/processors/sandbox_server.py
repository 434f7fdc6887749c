"""The sandbox processor as a small HTTP server on loopback, shared by many worker processes.

Load tests and crash tests need what a real processor gives: one ledger that every worker
process talks to over the network, answers that take time, and answers that never come.
This server wraps `SandboxProcessor` (same test cards, same outcomes) behind a minimal
HTTP/1.1 interface and can be told to

- answer after `--latency-ms` milliseconds, and
- lose a fraction `--timeout-rate` of charge calls: half of them are *lost requests*
  (nothing is recorded, the connection hangs and is dropped) and half *lost answers*
  (the charge is recorded, then the connection hangs and is dropped), so a client only
  learns the truth by looking the idempotency key up.

Routes (JSON bodies): `POST /tokenize`, `POST /authorize`, `POST /void`, `POST /charge`,
`GET /lookup/{key}` (404 when the key was never seen), `GET /ledger` (every key with its
outcome, how many charge requests carried it and how many times money moved for it) and
`GET /health`.

    python -m billing.processors.sandbox_server --port 8766 --latency-ms 200 --timeout-rate 0.1

The first line on stdout is `listening on http://HOST:PORT` (useful with `--port 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from billing.domain.errors import BillingError
from billing.processors.base import CardInfo, Outcome
from billing.processors.sandbox import SandboxProcessor

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}


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
    """The server's state: the sandbox (with its ledger) and the fault settings."""

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

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        """Answer one request; None means "hang, then drop the connection"."""
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        try:
            data = json.loads(body) if body else {}
            if method == "GET" and path == "/health":
                return 200, {"ok": True}
            if method == "GET" and path == "/ledger":
                return 200, self.ledger_report()
            if method == "GET" and path.startswith("/lookup/"):
                found = await self.sandbox.lookup(unquote(path.removeprefix("/lookup/")))
                return (404, {"found": False}) if found is None else (200, outcome_json(found))
            if method == "POST" and path == "/charge":
                return await self._charge(data)
            if method == "POST" and path == "/authorize":
                outcome = await self.sandbox.authorize(
                    data["token"], int(data["amount_minor"]), data["currency"], idempotency_key=data["key"]
                )
                return 200, outcome_json(outcome)
            if method == "POST" and path == "/void":
                await self.sandbox.void(data["reference"])
                return 200, {"voided": True}
            if method == "POST" and path == "/tokenize":
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
            return 404, {"error": "no such route"}
        except BillingError as exc:
            return exc.status if exc.status in _REASONS else 400, {"error": exc.spec.name, "code": exc.code}
        except (KeyError, ValueError, TypeError):
            return 400, {"error": "bad request"}

    async def _charge(self, data: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
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

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive: one request at a time per connection."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                answer = await self.handle(method, path, body)
                if answer is None:
                    await asyncio.sleep(self.hang_seconds)
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                writer.write(
                    f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def serve(host: str, port: int, server: SandboxServer) -> None:
    """Run until cancelled; prints the listening URL first."""
    listener = await asyncio.start_server(server.serve_connection, host, port, backlog=1024)
    bound = listener.sockets[0].getsockname()
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (`python -m billing.processors.sandbox_server`)."""
    parser = argparse.ArgumentParser(description="The sandbox processor over HTTP, on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    server = SandboxServer(
        latency_seconds=args.latency_ms / 1000,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        seed=args.seed,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, server))


if __name__ == "__main__":
    main()
