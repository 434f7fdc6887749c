"""docs/ondemand.md is executable: its `sh` blocks run, in order, against a live `billing serve`."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_engine import running_engine

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "ondemand.md"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`billing serve` (API and worker) on a free port with a fresh SQLite file."""
    with running_engine(
        tmp_path,
        # The worker wakes often, so the walkthrough's polling loops finish in a second or two.
        BILLING_WORKER__INTERVAL_SECONDS="0.5",
    ) as running:
        yield running


@pytest.mark.slow
def test_the_ondemand_walkthrough_runs_as_written(engine: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = engine
    blocks = re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) == 6, "the walkthrough lost its commands"
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(blocks)],
        cwd=tmp_path,
        env={**env, "BASE": base},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"batch bat_\w+: 2 accepted, 2 rejected", lines[0]), lines
    assert re.fullmatch(r"batch bat_\w+: 1 succeeded, 1 failed", lines[1]), lines
    assert re.fullmatch(r"upload [\w-]{21}: 2 accepted, 1 rejected", lines[2]), lines
    assert re.fullmatch(r"upload [\w-]{21}: 1 succeeded, 1 failed, 1 rejected", lines[3]), lines
    assert lines[4] == "latest charge: on_demand succeeded 2.5", lines
    results = (tmp_path / "results.csv").read_text().splitlines()
    assert results[0] == "line,subscriptionId,amount,metadata,chargeId,state,code,message"
    assert re.fullmatch(r'2,sub_\w+,2\.50,"\{""sku"": ""add-on-1""\}",chg_\w+,succeeded,,', results[1])
    assert re.fullmatch(r"3,sub_\w+,abc,,,rejected,7002,Invalid amount format for the currency\.", results[2])
    assert re.fullmatch(r"4,sub_\w+,7\.00,,chg_\w+,failed,7201,The card was declined\.", results[3])
