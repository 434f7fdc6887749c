"""docs/api.md is executable: its `sh` blocks run, in order, against a live `billing serve`."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live_engine import running_engine

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"


def _sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", markdown, flags=re.S | re.M)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`billing serve` on a free port with a fresh SQLite file; yields its URL and the environment."""
    with running_engine(tmp_path) as running:
        yield running


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(engine: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = engine
    blocks = _sh_blocks(DOC.read_text())
    assert len(blocks) >= 8, "the walkthrough lost its commands"
    script = "set -euo pipefail\n" + "\n".join(blocks)

    run = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**env, "BASE": base},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    assert re.fullmatch(r"plan pln_\w+ charges 29\.9 USD", lines[0]), lines
    # Enrolled "now" in New York: the anniversary renewal is due at local midnight one month on.
    assert re.fullmatch(
        r"subscription sub_\w+ is active, next renewal \d{4}-\d\d-\d\dT00:00:00-0[45]:00", lines[1]
    )
    assert lines[2] == "first charge: enrolment succeeded 29.9"
    assert lines[3] == "refund succeeded: 10.0 of 29.9 given back"
    assert re.fullmatch(r"subscription sub_\w+ is now cancelled", lines[4])
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("billing.db*"))
    assert stored
    assert b"4242424242424242" not in stored
