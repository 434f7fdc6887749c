"""schemathesis over every published operation of a live engine, on SQLite and PostgreSQL.

`st run` (the schemathesis CLI a merchant or operator would use) runs its examples, coverage,
fuzzing and stateful phases against `billing serve` on loopback, with valid and invalid data and
every check enabled: server errors, status codes, content types, response schemas and headers,
valid data accepted, invalid data rejected, missing headers, authentication, unsupported methods.
Requests are authenticated, half of them signed (tests/contract/schemathesis_hooks.py). The run
must end with zero failures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from billing.domain.signatures import sign
from tests.contract.conftest import LiveEngine

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 25
SEED = 20261101


def _merchant(engine: LiveEngine, name: str, *, signing: bool) -> dict[str, object]:
    client_id, pem = engine.create_client(name, signing=signing)
    timestamp = str(int(time.time()))
    body = {
        "clientId": client_id,
        "timestamp": timestamp,
        "signature": sign(pem, f"{client_id}.{timestamp}".encode()),
    }
    answer = httpx.post(f"{engine.base_url}/v1/auth/login", json=body, timeout=30)
    answer.raise_for_status()
    return {"token": answer.json()["data"]["accessToken"], "privateKey": pem, "signing": signing}


@pytest.mark.slow
def test_schemathesis_finds_no_failure(live_engine: LiveEngine) -> None:
    merchants = live_engine.workdir / "merchants.json"
    merchants.write_text(
        json.dumps(
            [
                _merchant(live_engine, "Signed", signing=True),
                _merchant(live_engine, "Unsigned", signing=False),
            ]
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "BILLING_TEST_SCHEMATHESIS_MERCHANTS": str(merchants),
    }
    command = [str(Path(sys.executable).parent / "st"), "run", f"{live_engine.base_url}/schema/openapi.json"]
    command += ["--checks", "all", "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED)]
    command += ["--generation-deterministic", "--workers", "1", "--no-color", "--request-timeout", "10"]
    command += ["--report", "junit", "--report-dir", str(live_engine.workdir / "schemathesis")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    output = done.stdout + done.stderr
    summary = re.findall(r"^.*(?:Selected|Tested|generated|Seed).*$", output, flags=re.MULTILINE)
    print("\n".join(summary))
    assert done.returncode == 0, output[-20000:]
