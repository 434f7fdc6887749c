"""A real webhook receiver on loopback: an HTTP server that verifies every delivery with
`standardwebhooks` (as a merchant would) and records what it got.

Each path has a behaviour: a list of answers used in turn (the last one repeats), each an HTTP
status or ("hang", seconds). Unknown paths answer 200.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified_with: list[int]  # indexes of the secrets that verified the signature
    status: int
    at: float


@dataclass
class Receiver:
    host: str = "127.0.0.1"
    port: int = 0
    secrets: dict[str, list[str]] = field(default_factory=dict)  # path -> secrets to try
    behaviours: dict[str, list[Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    arrivals: list[tuple[str, str]] = field(default_factory=list)  # (path, webhook-id) as requests come in
    _server: ThreadingHTTPServer | None = None
    _calls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                path = self.path
                with receiver._lock:
                    n = receiver._calls.get(path, 0)
                    receiver._calls[path] = n + 1
                    receiver.arrivals.append((path, self.headers.get("webhook-id", "")))
                answers = receiver.behaviours.get(path, [200])
                answer = answers[min(n, len(answers) - 1)]
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = []
                for index, secret in enumerate(receiver.secrets.get(path, [])):
                    try:
                        Webhook(secret).verify(raw, headers)
                        verified.append(index)
                    except WebhookVerificationError:
                        pass
                status = 200
                if isinstance(answer, tuple) and answer[0] == "hang":
                    time.sleep(answer[1])
                    status = 200
                else:
                    status = int(answer)
                with receiver._lock:
                    receiver.received.append(
                        Received(path, headers, json.loads(raw), verified, status, time.monotonic())
                    )
                try:
                    self.send_response(status)
                    self.send_header("content-type", "text/plain")
                    text = f"answer {status} to {headers.get('webhook-id')}".encode()
                    self.send_header("content-length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass  # the sender gave up waiting

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def on(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
