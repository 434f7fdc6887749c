"""Sending one signed webhook delivery over HTTP.

Signatures follow Standard Webhooks and are computed by the `standardwebhooks` package (the
reference implementation merchants verify with): `webhook-id` is the event id,
`webhook-timestamp` the send time in Unix seconds (real time: receivers compare it with their
own clock), `webhook-signature` one `v1,<base64 HMAC-SHA256>` per active secret, separated by
spaces, so a receiver holding either secret verifies during a rotation.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

USER_AGENT = "billing-engine-webhooks/1"


@dataclass(frozen=True, slots=True)
class SendResult:
    status_code: int | None  # None: no HTTP answer (timeout, refused, TLS error)
    latency_ms: int
    error: str | None
    body_excerpt: str | None


def signature_header(secrets: list[str], *, message_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` value: one signature per secret, space separated."""
    return " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets)


CONNECTIONS_PER_CLIENT = 16
"""httpx's pool looks at each of its connections for every request it places, so one pool of
hundreds of connections spends more CPU choosing a connection than sending; several small
pools, each URL always on the same one (its connections stay warm), keep that cost flat."""


class WebhookSender:
    """The HTTP clients of a worker process's deliveries: `max_connections` spread over small pools."""

    def __init__(self, *, timeout: float, max_connections: int, excerpt_bytes: int) -> None:
        self._timeout = timeout
        self._excerpt = excerpt_bytes
        pools = max(1, -(-max_connections // CONNECTIONS_PER_CLIENT))
        per_pool = max(1, -(-max_connections // pools))
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(timeout),
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                follow_redirects=False,
                headers={"user-agent": USER_AGENT, "content-type": "application/json"},
            )
            for _ in range(pools)
        ]

    def _client_for(self, url: str) -> httpx.AsyncClient:
        return self._clients[zlib.crc32(url.encode()) % len(self._clients)]

    async def send(self, url: str, *, message_id: str, secrets: list[str], body: str) -> SendResult:
        now = datetime.now(UTC)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(secrets, message_id=message_id, timestamp=now, body=body),
        }
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._timeout),
                self._client_for(url).stream("POST", url, content=body.encode(), headers=headers) as answer,
            ):
                excerpt = await _read_excerpt(answer, self._excerpt)
                status = answer.status_code
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(None, _ms(started), f"no answer within {self._timeout:g} s", None)
        except httpx.HTTPError as exc:
            return SendResult(None, _ms(started), f"connection failed: {type(exc).__name__}", None)
        return SendResult(status, _ms(started), None if 200 <= status < 300 else f"HTTP {status}", excerpt)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


async def _read_excerpt(answer: httpx.Response, limit: int) -> str | None:
    """The first `limit` bytes of the receiver's body, decoded leniently (the rest is not read)."""
    kept = b""
    async for chunk in answer.aiter_raw():
        kept += chunk
        if len(kept) >= limit:
            break
    if not kept:
        return None
    return kept[:limit].decode("utf-8", errors="replace")


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
