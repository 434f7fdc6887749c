"""docs/webhooks.md is executable: its Python example registers a receiver with a live `billing serve`,
enrols a cardholder, and verifies every delivery it gets with `standardwebhooks`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.live_engine import running_engine

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "webhooks.md"


@pytest.mark.slow
def test_the_python_example_registers_and_verifies_deliveries(tmp_path: Path) -> None:
    [example] = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    script = tmp_path / "webhooks_example.py"
    script.write_text(example)
    with running_engine(
        tmp_path, BILLING_WORKER__INTERVAL_SECONDS="0.2", BILLING_WEBHOOKS__INTERVAL_SECONDS="0.2"
    ) as (base, env):
        made = subprocess.run(
            [sys.executable, "-m", "billing.cli", "clients", "create", "--name", "Docs", "--json",
             "--private-key-out", str(tmp_path / "key.pem")],
            env=env, cwd=tmp_path, capture_output=True, text=True, check=True,
        )  # fmt: skip
        run = subprocess.run(
            [sys.executable, str(script)],
            env={
                **env,
                "API_URL": base,
                "CLIENT_ID": json.loads(made.stdout)["clientId"],
                "PRIVATE_KEY_FILE": str(tmp_path / "key.pem"),
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    verified = re.findall(r"^verified (\S+) (evt_\S+)$", run.stdout, flags=re.M)
    assert sorted(kind for kind, _ in verified) == ["charge.succeeded", "subscription.created"], run.stdout
    assert "('subscription.created', 'delivered', 204)" in run.stdout
    assert "('charge.succeeded', 'delivered', 204)" in run.stdout
