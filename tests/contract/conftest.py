"""A live `billing serve` on loopback, on each database, with merchants created by the operator CLI.

The contract tests talk to the engine the way a merchant does: over HTTP, from the published
document, with clients made by `billing clients create`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.conftest import BACKENDS, _truncate_all
from tests.live_engine import running_engine


@dataclass(frozen=True)
class LiveEngine:
    base_url: str
    env: dict[str, str]
    workdir: Path
    backend: str

    def document(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/schema/openapi.json", timeout=30)
        response.raise_for_status()
        loaded: dict[str, Any] = response.json()
        return loaded

    def create_client(self, name: str, *, signing: bool = True) -> tuple[str, str]:
        """(client id, private key PEM) of a new sandbox merchant, as an operator creates one."""
        key_file = self.workdir / f"{name}.pem"
        command = [sys.executable, "-m", "billing.cli", "clients", "create", "--name", name]
        command += ["--private-key-out", str(key_file), "--json"]
        if not signing:
            command.append("--no-signing")
        done = subprocess.run(
            command, env=self.env, cwd=self.workdir, capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)["clientId"], key_file.read_text()


@pytest.fixture(params=BACKENDS)
def live_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveEngine]:
    """`billing serve` (API and worker) on a free loopback port, on SQLite or PostgreSQL."""
    settings: dict[str, str] = {"BILLING_WORKER__INTERVAL_SECONDS": "0.2"}
    # schemathesis sends hundreds of login attempts from one address; the budgets have their own tests.
    settings |= {
        "BILLING_RATE_LIMITS__LOGIN_PER_IP": "100000",
        "BILLING_RATE_LIMITS__LOGIN_PER_CLIENT": "100000",
    }
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_database")
        _truncate_all(url)
        settings["BILLING_DATABASE__URL"] = url
    with running_engine(tmp_path, **settings) as (base_url, env):
        yield LiveEngine(base_url, env, tmp_path, request.param)


class PublishedSchemas:
    """Validates real answers against the response schemas of the published document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.components = document.get("components", {})

    def response_schema(
        self, operation: dict[str, Any], status: int, media_type: str
    ) -> dict[str, Any] | None:
        responses = operation.get("responses", {})
        described = responses.get(str(status)) or responses.get("default")
        if described is None:
            raise AssertionError(f"{operation['operationId']}: status {status} is not published")
        content = described.get("content", {})
        if media_type not in content:
            raise AssertionError(
                f"{operation['operationId']} {status}: {media_type} is not published (only {sorted(content)})"
            )
        schema: dict[str, Any] | None = content[media_type].get("schema")
        return schema

    def validate(self, schema: dict[str, Any], instance: Any) -> list[str]:
        """Every way ``instance`` breaks ``schema`` (refs resolved in the document's components)."""
        root = {**schema, "components": self.components}
        validator = jsonschema_rs.Draft202012Validator(root, validate_formats=True)
        return [
            f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(instance)
        ]
