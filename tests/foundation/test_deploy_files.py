"""The deploy files, checked without a Docker engine: the compose file against the Compose
Specification's JSON Schema (tests/foundation/data/compose-spec.json, from compose-spec/compose-spec,
Apache-2.0), what each service needs, the Dockerfile's shape and the build context's exclusions;
and `billing worker --check`, the workers' healthcheck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "foundation" / "data" / "compose-spec.json").read_text())
    validator = jsonschema_rs.validator_for(schema)
    errors = [f"{list(e.instance_path)}: {e.message}" for e in validator.iter_errors(_compose())]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    schema = json.loads((ROOT / "tests" / "foundation" / "data" / "compose-spec.json").read_text())
    broken = _compose()
    broken["services"]["worker"]["stop_grace_periode"] = "60s"
    assert not jsonschema_rs.validator_for(schema).is_valid(broken)


def test_only_the_api_keeps_the_images_http_healthcheck() -> None:
    services = _compose()["services"]
    billing = {name: s for name, s in services.items() if "billing" in " ".join(s.get("command", []))}
    assert set(billing) == {"migrate", "api", "worker"}
    assert "healthcheck" not in billing["api"]  # the image's check of :8000/health
    assert billing["migrate"]["healthcheck"] == {"disable": True}
    assert billing["worker"]["healthcheck"]["test"] == ["CMD", "billing", "worker", "--check"]


def test_the_api_and_workers_wait_for_the_one_shot_migration() -> None:
    services = _compose()["services"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert "stop_grace_period" in services["worker"]


def test_the_image_is_built_from_a_wheel_and_runs_unprivileged() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert any("pip wheel" in line for line in lines)
    assert not any("pip install -e" in line or "pip install ." in line for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")


def test_the_build_context_leaves_out_secrets_databases_and_the_repository() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "jwt.secret", "*.pem", "*.db", ".env"} <= ignored


def _worker(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_DATA_DIR": str(data_dir), "BILLING_CONFIG": ""}
    return subprocess.run(
        [sys.executable, "-m", "billing.cli", "worker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=data_dir,
        timeout=60,
        check=False,
    )


def test_worker_check_follows_the_liveness_file(tmp_path: Path) -> None:
    missing = _worker("--check", data_dir=tmp_path)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr

    alive = tmp_path / "worker.alive"
    alive.touch()
    assert _worker("--check", data_dir=tmp_path).returncode == 0

    stale = time.time() - 600
    os.utime(alive, (stale, stale))
    old = _worker("--check", data_dir=tmp_path)
    assert old.returncode == 1
    assert "last touched" in old.stderr


@pytest.mark.slow
def test_a_running_worker_keeps_its_liveness_file_fresh_and_removes_it_on_exit(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BILLING_DATA_DIR": str(tmp_path),
        "BILLING_CONFIG": "",
        "BILLING_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}",
        "BILLING_WORKER__INTERVAL_SECONDS": "1",
    }
    proc = subprocess.Popen([sys.executable, "-m", "billing.cli", "worker"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "worker.alive").exists():
            assert proc.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "no liveness file after 60 s"
            time.sleep(0.2)
        assert _worker("--check", data_dir=tmp_path).returncode == 0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert not (tmp_path / "worker.alive").exists()
