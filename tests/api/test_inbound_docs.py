"""The wiring check in docs/processors.md signs a body the way the engine verifies it."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from billing.services.inbound.signatures import sign
from tests.api.conftest import data_of
from tests.api.inbound_helpers import VOLCAN_SECRET, inbound_settings
from tests.conftest import test_settings

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "processors.md"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(db_url, tmp_path, **inbound_settings())


@pytest.fixture
async def app(settings: Any, clock: Any) -> AsyncIterator[Any]:
    from api.app import create_app

    return create_app(settings, clock=clock)


def _snippet() -> tuple[str, str]:
    block = DOC.read_text().split("```sh", 1)[1].split("```", 1)[0]
    body = re.search(r"BODY='([^']*)'", block)
    pipeline = re.search(r"SIG=\$\((.*)\)\n", block)
    assert body is not None
    assert pipeline is not None
    return body.group(1), pipeline.group(1)


async def test_the_documented_signature_pipeline_is_accepted(client: Any, clock: Any) -> None:
    body, pipeline = _snippet()
    timestamp = str(int(clock.now().timestamp()))
    signed = subprocess.run(
        ["/bin/sh", "-c", f'SIG=$({pipeline}); printf %s "$SIG"'],
        env={"TS": timestamp, "BODY": body, "SECRET": VOLCAN_SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert signed == sign(VOLCAN_SECRET, int(timestamp), body.encode())
    answer = await client.post(
        "/webhooks/volcan",
        content=body.encode(),
        headers={
            "Content-Type": "application/json",
            "X-Notification-Timestamp": timestamp,
            "X-Notification-Signature": f"v1={signed}",
        },
    )
    assert data_of(answer)["resolution"] == "unmatched"
