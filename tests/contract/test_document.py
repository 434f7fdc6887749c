"""The published document itself: wire names, examples that fit, and a docs page that needs no internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.contract.conftest import PublishedSchemas

pytestmark = pytest.mark.anyio


async def _document(client: Any) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _properties(value: Any) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "properties" and isinstance(item, dict):
                found += list(item)
            found += _properties(item)
    elif isinstance(value, list):
        for item in value:
            found += _properties(item)
    return found


async def test_every_published_field_is_named_as_on_the_wire(client: Any) -> None:
    """camelCase everywhere: a generated client reads the keys the engine writes."""
    document = await _document(client)
    snake = sorted({name for name in _properties(document["components"]) if "_" in name})
    assert snake == []


async def test_every_operation_has_an_example_that_fits_its_schema(client: Any) -> None:
    document = await _document(client)
    schemas = PublishedSchemas(document)
    problems: list[str] = []
    for operations in document["paths"].values():
        for operation in operations.values():
            name = operation["operationId"]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                assert "example" in body, f"{name}: no request example"
                problems += [
                    f"{name} request: {p}" for p in schemas.validate(body["schema"], body["example"])
                ]
            for status, answer in operation["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if media != "application/json":
                        continue
                    assert "example" in content, f"{name} {status}: no example"
                    found = schemas.validate(content["schema"], content["example"])
                    problems += [f"{name} {status}: {p}" for p in found]
    assert problems == []


async def test_money_is_published_as_decimal_string_or_number(client: Any) -> None:
    document = await _document(client)
    plan = document["components"]["schemas"]["PlanIn"]["properties"]["amount"]
    assert {branch["type"] for branch in plan["anyOf"]} == {"string", "number"}
    assert "decimals" in plan["description"]
    out = document["components"]["schemas"]["PlanOut"]["properties"]["amount"]
    assert out["type"] == "number"


async def test_writes_publish_security_signing_and_error_answers(client: Any) -> None:
    document = await _document(client)
    create = document["paths"]["/v1/plans"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    headers = {p["name"] for p in create["parameters"] if p["in"] == "header"}
    assert {"X-Timestamp", "X-Signature", "X-Signature-Version", "Idempotency-Key"} <= headers
    assert {"400", "401", "409", "413", "415", "500"} <= set(create["responses"])
    listing = document["paths"]["/v1/subscriptions"]["get"]
    assert {p["name"]: p["required"] for p in listing["parameters"]} == {"userId": True, "clientId": True}
    csv = document["paths"]["/v1/subscriptions/charges/upload-csv/{tracking_id}"]["get"]
    assert set(csv["responses"]["200"]["content"]) == {"application/json", "text/csv"}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


async def test_the_docs_page_loads_everything_from_this_host(client: Any) -> None:
    """/schema renders offline: every script, style and icon it references is served by the engine."""
    page = await client.get("/schema")
    assert page.status_code == 200
    parser = _Assets()
    parser.feed(page.text)
    assert any(url.endswith(".js") for url in parser.urls)
    for url in parser.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), f"{url} is not on this host"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert not re.search(r"https?://", page.text.split("<body>")[0]), "the page head links elsewhere"
