"""Fixtures for processor tests: a localstripe server on loopback.

localstripe is started through a tiny launcher rather than its `localstripe` script for two
reasons: the script binds every interface (`::`) and pickles its state to the fixed path
/tmp/localstripe.pickle after every write, which concurrent test runs on one machine would share.
The launcher binds 127.0.0.1 only and keeps the state in memory.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from billing.processors.sandbox_server import stop_service
from billing.processors.stripe import StripeProcessor
from tests.processors.sandbox_service import sandbox_server  # noqa: F401  (the sandbox behind HTTP)

TEST_KEY = "sk_test_processor_suite_0123456789"

_LAUNCHER = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, deadline_s: float) -> bool:
    """Poll until localstripe answers HTTP; False if it died or never answered."""
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if process.poll() is not None:
            return False
        try:
            httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return True
    return False


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """Base URL of a localstripe process started for this test session and stopped after it."""
    # A file, not a pipe: a pipe nobody reads would eventually block the server.
    with tempfile.TemporaryFile() as stderr:
        process = None
        for _attempt in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(port)], stdout=subprocess.DEVNULL, stderr=stderr
            )
            if _wait_until_answering(process, url, deadline_s=30):
                break
            process.kill()
            process.wait(timeout=10)
            process = None
        if process is None:
            stderr.seek(0)
            raise RuntimeError(
                f"localstripe did not start:\n{stderr.read()[-2000:].decode(errors='replace')}"
            )
        try:
            yield url
        finally:
            stop_service(process)


@pytest.fixture
def localstripe_admin(localstripe_url: str) -> Iterator[httpx.Client]:
    """A plain client for inspecting localstripe directly; the store is emptied before each test."""
    with httpx.Client(base_url=localstripe_url, headers={"Authorization": f"Bearer {TEST_KEY}"}) as client:
        client.delete("/_config/data").raise_for_status()
        yield client


@pytest.fixture
async def stripe_processor(
    localstripe_url: str, localstripe_admin: httpx.Client
) -> AsyncIterator[StripeProcessor]:
    """A StripeProcessor pointed at the session's localstripe, in localstripe mode."""
    processor = StripeProcessor(TEST_KEY, base_url=localstripe_url, localstripe=True)
    try:
        yield processor
    finally:
        await processor.aclose()
