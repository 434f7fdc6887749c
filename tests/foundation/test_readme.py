"""The README keeps its promises: two set-up commands, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_has_exactly_two_setup_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    assert len(blocks) == 2
    run, test = (block.strip() for block in blocks)
    assert run.startswith("python3 -m venv .venv")
    assert run.endswith("billing serve")
    assert test.startswith("python3 -m venv .venv")
    assert ".venv/bin/pytest" in test.split("&&")[-1]


def test_ci_runs_the_readme_test_command() -> None:
    test_command = re.findall(r"```sh\n(.*?)```", README, flags=re.S)[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_every_linked_doc_exists() -> None:
    links = re.findall(r"\]\((docs/[^)]+)\)", README)
    assert links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []
