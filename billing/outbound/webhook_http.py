"""Sending one signed webhook delivery over HTTP.

Signatures follow Standard Webhooks and are computed by the `standardwebhooks` package (the
reference implementation merchants verify with): `webhook-id` is the event id,
`webhook-timestamp` the send time in Unix seconds (real time: receivers compare it with their
own clock), `webhook-signature` one `v1,<base64 HMAC-SHA256>` per active secret, separated by
spaces, so a receiver holding either secret verifies during a rotation.
"""

from __future__ import annotations

import asyncio
import ssl
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


CONNECTIONS_PER_LANE = 4
"""httpcore's pool checks each of its connections (free? expired?) for every request it places
and every answer it returns, so one pool of hundreds of connections spends more CPU choosing a
connection than sending (docs/benchmarks.md, "The cost of httpx"); lanes of a few connections
keep that cost flat at any number of deliveries in flight."""

_URL_CACHE = 4096


class _Lane:
    """One httpx transport of a few keep-alive connections and a semaphore as wide: a send waits
    for a free connection here, never in httpcore's own queue."""

    def __init__(self, size: int, tls: ssl.SSLContext) -> None:
        self.slots = asyncio.Semaphore(size)
        self.transport = httpx.AsyncHTTPTransport(
            verify=tls, limits=httpx.Limits(max_connections=size, max_keepalive_connections=size)
        )


class WebhookSender:
    """The HTTP side of a worker process's deliveries: `max_connections` spread over small lanes.

    A URL starts at its own lane (by hash, so its connections stay warm) and moves to the next
    lane with a free connection when that one is busy. Requests go straight to the lane's
    transport: redirects are never followed, and there are no cookies or auth to apply.
    """

    def __init__(self, *, timeout: float, max_connections: int, excerpt_bytes: int) -> None:
        self._timeout = timeout
        self._excerpt = excerpt_bytes
        tls = httpx.create_ssl_context()  # one for every lane (each transport would build its own)
        count = max(1, -(-max_connections // CONNECTIONS_PER_LANE))
        self._lanes = [_Lane(CONNECTIONS_PER_LANE, tls) for _ in range(count)]
        self._urls: dict[str, httpx.URL] = {}

    def _lane_for(self, url: str) -> _Lane:
        count = len(self._lanes)
        first = zlib.crc32(url.encode()) % count
        for step in range(count):
            lane = self._lanes[(first + step) % count]
            if not lane.slots.locked():
                return lane
        return self._lanes[first]

    def _url(self, url: str) -> httpx.URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = httpx.URL(url)
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            self._urls[url] = parsed
        return parsed

    async def send(self, url: str, *, message_id: str, secrets: list[str], body: str) -> SendResult:
        now = datetime.now(UTC)
        headers = {
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(secrets, message_id=message_id, timestamp=now, body=body),
        }
        lane = self._lane_for(url)
        async with lane.slots:
            started = time.perf_counter()
            try:
                request = httpx.Request("POST", self._url(url), headers=headers, content=body.encode())
                async with asyncio.timeout(self._timeout):
                    answer = await lane.transport.handle_async_request(request)
                    try:
                        excerpt = await _read_excerpt(answer, self._excerpt)
                    finally:
                        await answer.aclose()
                    status = answer.status_code
            except (TimeoutError, httpx.TimeoutException):
                return SendResult(None, _ms(started), f"no answer within {self._timeout:g} s", None)
            except httpx.HTTPError as exc:
                return SendResult(None, _ms(started), f"connection failed: {type(exc).__name__}", None)
        return SendResult(status, _ms(started), None if 200 <= status < 300 else f"HTTP {status}", excerpt)

    async def aclose(self) -> None:
        for lane in self._lanes:
            await lane.transport.aclose()


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
