"""A real `billing serve` subprocess on a free loopback port, for tests that run documented commands."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_engine(
    workdir: Path,
    *serve_args: str,
    start_seconds: float = 30,
    processes: list[subprocess.Popen[str]] | None = None,
    **settings: str,
) -> Iterator[tuple[str, dict[str, str]]]:
    """Serve on a fresh SQLite file in ``workdir``; yield the base URL and the environment it runs with.

    ``serve_args`` are extra options of ``billing serve``; ``settings`` are extra environment
    variables (``BILLING_...``) for the server and for the commands a test runs against it. The
    server's log is ``workdir / "serve.log"``. The server process is appended to ``processes``
    when given (tests that kill it).
    """
    port = free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir),
        "BILLING_CONFIG": str(ROOT / "config" / "billing.toml"),
        "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{workdir / 'billing.db'}",
        "BILLING_DATA_DIR": str(workdir),
        "BILLING_LOG_LEVEL": "WARNING",
        **settings,
    }
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server's logging.
    log_path = workdir / "serve.log"
    log_file = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--port", str(port), *serve_args],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
        text=True,
    )
    if processes is not None:
        processes.append(server)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"billing serve exited:\n{log_path.read_text()}")
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, env
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log_file.close()
