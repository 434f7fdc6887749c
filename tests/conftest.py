"""Shared fixtures. Database tests are written once and run on SQLite and PostgreSQL.

PostgreSQL comes from ``BILLING_TEST_POSTGRES_URL`` (default: the local server, database
``test``). Each test session creates its own scratch database next to it and drops it at the
end. Without a reachable server the PostgreSQL half is reported loudly as not run; with
``BILLING_TEST_REQUIRE_POSTGRES=1`` (CI) its absence fails the run.
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]

# Hermetic settings: nothing from the developer's shell leaks into tests.
for _name in list(os.environ):
    if _name.startswith("BILLING_") and not _name.startswith("BILLING_TEST_"):
        del os.environ[_name]
os.environ["BILLING_CONFIG"] = str(ROOT / "config" / "billing.toml")

PG_URL = os.environ.get("BILLING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("BILLING_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = [b for b in os.environ.get("BILLING_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]

_pg_missing_reason: list[str] = []


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    from billing.store.migrations import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A scratch PostgreSQL database for this test session, migrated to head."""
    try:
        admin = psycopg.connect(_libpq(PG_URL), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {PG_URL} is not reachable ({exc.__class__.__name__})"
        if REQUIRE_PG:
            pytest.fail(f"{reason}; BILLING_TEST_REQUIRE_POSTGRES=1 makes it mandatory", pytrace=False)
        _pg_missing_reason.append(reason)
        warnings.warn(f"!!! {reason}: PostgreSQL tests NOT RUN", stacklevel=1)
        pytest.skip(f"!!! {reason}: PostgreSQL tests NOT RUN")
    name = f"billing_test_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # The scratch database does not outlive the session and no test crashes the server, so a
        # commit need not wait for its WAL flush: every guarantee a test checks (visibility,
        # locks, constraints) is unchanged, and commit-heavy tests stop waiting on the disk.
        admin.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit TO off").format(sql.Identifier(name)))
    url = _with_database(PG_URL, name)
    try:
        from billing.store.migrations import upgrade

        upgrade(url)
        yield url
    finally:
        with psycopg.connect(_libpq(PG_URL), autocommit=True) as admin2:
            admin2.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _truncate_all(url: str) -> None:
    from billing.store.models import ALL_TABLES

    names = ", ".join(f'"{model.__tablename__}"' for model in ALL_TABLES)
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        # A connection left behind by an earlier test (a killed worker, a leaked session) must not
        # make TRUNCATE wait on its locks: end every other session on this scratch database first.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute("SET lock_timeout = '30s'")
        conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database on each backend (async driver URL)."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "billing.db"
        shutil.copyfile(template, path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_all(url)
    return url


@pytest.fixture
def backend(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def start_time() -> datetime:
    return datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(start_time: datetime) -> Any:
    from tests.clock import FixedClock

    return FixedClock(start_time)


def empty_database(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[str]:
    """Yield the sync URL of an empty database of its own (for tests that migrate from an older revision):
    a SQLite file, or a PostgreSQL database next to the session's, dropped afterwards."""
    from billing.settings import DatabaseSettings

    if request.param == "sqlite":
        yield DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/{prefix}.db").sync_url
        return
    base_url: str = request.getfixturevalue("postgres_database")
    base, _, _name = _libpq(base_url).rpartition("/")
    name = f"{prefix}_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield DatabaseSettings(url=f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}").sync_url
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(drop)


def test_settings(db_url: str, tmp_path: Path, **sections: Any) -> Any:
    """The settings of a test's app: its database, a fresh JWT secret, no worker; `sections` add more."""
    from billing.settings import load_settings

    # A test app logs dozens of merchants in from one address within a second; the strict login
    # budgets are exercised by tests/api/test_rate_limits.py, which passes its own `rate_limits`.
    sections.setdefault("rate_limits", {"login_per_ip": 10_000, "login_per_client": 10_000})
    return load_settings(
        database={"url": db_url, "pool_size": 5},
        data_dir=tmp_path,
        auth={"jwt_secret": "test-only-" + secrets.token_hex(16)},
        worker={"enabled": False, "interval_seconds": 0.2, "lease_seconds": 30},
        **sections,
    )


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(db_url, tmp_path)


@pytest.fixture
async def app(settings: Any, clock: Any) -> Any:
    from api.app import create_app

    return create_app(settings, clock=clock)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[Any]:
    """An HTTP client bound to the app on the test's own event loop (lifespan included)."""
    from litestar.testing import AsyncTestClient

    async with AsyncTestClient(app=app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def runtime(app: Any, client: Any) -> Any:
    """The app's runtime (engine, sessions, processors, clock), available once the client started."""
    return app.state.runtime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests first, so parallel runs (`-n auto --dist worksteal`) do not end waiting on one of them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under xdist the test processes find PostgreSQL missing; the controlling process says so loudly."""
    if "postgresql" not in BACKENDS or hasattr(session.config, "workerinput"):
        return
    if getattr(session.config.option, "numprocesses", None) in (None, 0):
        return
    try:
        psycopg.connect(_libpq(PG_URL), connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        _pg_missing_reason.append(f"PostgreSQL at {PG_URL} is not reachable ({exc.__class__.__name__})")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_missing_reason:
        terminalreporter.section("PostgreSQL NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.write_line(_pg_missing_reason[0], red=True, bold=True)
        terminalreporter.write_line(
            "Database tests ran on SQLite only. Start PostgreSQL or set BILLING_TEST_POSTGRES_URL."
        )


class Merchant:
    """A merchant's API client for tests: logged in, signing the exact bytes it sends.

    ``await merchant.post("/v1/plans", json={...})`` serialises the body once, signs the canonical
    v2 request (timestamp, method, path with query, Idempotency-Key, body) with the merchant's
    Ed25519 key and sends those bytes. Headers given by the test win over the computed ones.
    """

    def __init__(self, http: Any, runtime: Any, client_id: str, private_key_pem: str, key_id: str) -> None:
        self.http = http
        self.runtime = runtime
        self.id = client_id
        self.private_key_pem = private_key_pem
        self.key_id = key_id
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.scheme = "v2"  # the client's signature scheme (new clients sign with v2)
        self._signed: set[bytes] = set()

    def sign(self, message: bytes) -> str:
        from billing.domain.signatures import sign

        return sign(self.private_key_pem, message)

    def timestamp(self) -> str:
        return str(int(self.runtime.clock.now().timestamp()))

    def _fresh_timestamp(self, message_of: Any) -> tuple[str, bytes]:
        """A timestamp whose message was never signed: each signature is accepted once, and the
        test clock stands still, so an identical message steps the timestamp back a second."""
        ts = int(self.timestamp())
        while (message := message_of(str(ts))) in self._signed:
            ts -= 1
        self._signed.add(message)
        return str(ts), message

    async def login(self) -> Any:
        ts, message = self._fresh_timestamp(lambda t: f"{self.id}.{t}".encode())
        response = await self.http.post(
            "/v1/auth/login",
            json={"clientId": self.id, "timestamp": ts, "signature": self.sign(message)},
        )
        if response.status_code == 200:
            data = response.json()["data"]
            self.access_token, self.refresh_token = data["accessToken"], data["refreshToken"]
        return response

    def signed_headers(
        self,
        body: bytes,
        *,
        method: str = "POST",
        target: str = "/",
        idempotency_key: str | None = None,
        scheme: str | None = None,
    ) -> dict[str, str]:
        """X-Timestamp, X-Signature (and X-Signature-Version for v2) for this exact request."""
        from billing.domain.signatures import canonical_request

        scheme = scheme or self.scheme
        ts, message = self._fresh_timestamp(
            lambda t: canonical_request(
                scheme, timestamp=t, method=method, target=target, idempotency_key=idempotency_key, body=body
            )
        )
        headers = {"X-Timestamp": ts, "X-Signature": self.sign(message)}
        if scheme == "v2":
            headers["X-Signature-Version"] = "2"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        files: Any = None,
        data: Any = None,
        sign: bool = True,
    ) -> Any:
        import json as jsonlib

        all_headers: dict[str, str] = {}
        if self.access_token:
            all_headers["Authorization"] = f"Bearer {self.access_token}"
        body = content
        if json is not None:
            body = jsonlib.dumps(json, default=str).encode()
            all_headers["Content-Type"] = "application/json"
        if files is not None or data is not None:
            # Multipart: build the exact bytes first so the signature covers what is sent.
            import httpx

            built = httpx.Request(method, "http://x" + path, files=files, data=data)
            body = built.read()
            all_headers["Content-Type"] = built.headers["Content-Type"]
        all_headers.update(headers or {})
        if sign and method.upper() in {"POST", "PUT", "PATCH", "DELETE"}:
            import httpx

            target = httpx.Request(method, "http://x" + path, params=params).url.raw_path.decode()
            key = next((v for k, v in all_headers.items() if k.lower() == "idempotency-key"), None)
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            signed = self.signed_headers(
                body or b"", method=method.upper(), target=target, idempotency_key=key
            )
            all_headers = {**signed, **all_headers}
        return await self.http.request(method, path, content=body, params=params, headers=all_headers)

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)


async def new_merchant(
    http: Any,
    runtime: Any,
    *,
    name: str = "Merchant",
    timezone: str = "America/Guatemala",
    environment: str = "sandbox",
    signing_required: bool = True,
    signature_scheme: str = "v2",
) -> Merchant:
    """Create a client with a fresh key pair and log it in through ``http``."""
    from billing.services.auth import create_client

    async with runtime.sessions() as session, session.begin():
        created, key = await create_client(
            session,
            runtime.clock,
            name=name,
            timezone=timezone,
            environment=environment,
            settings=runtime.settings.auth,
            signing_required=signing_required,
            signature_scheme=signature_scheme,
        )
    assert key.private_key_pem is not None
    merchant = Merchant(http, runtime, created.id, key.private_key_pem, key.key.id)
    merchant.scheme = signature_scheme
    response = await merchant.login()
    assert response.status_code == 200, response.text
    return merchant


@pytest.fixture
def merchant_factory(client: Any, runtime: Any) -> Any:
    """``await merchant_factory(name=..., timezone=..., environment=...)``: a new client, logged in."""

    async def make(
        name: str = "Merchant",
        timezone: str = "America/Guatemala",
        environment: str = "sandbox",
        signing_required: bool = True,
    ) -> Merchant:
        return await new_merchant(
            client,
            runtime,
            name=name,
            timezone=timezone,
            environment=environment,
            signing_required=signing_required,
        )

    return make


@pytest.fixture
async def served_app(app: Any) -> AsyncIterator[Any]:
    """An httpx client for the app running on the test's own event loop (lifespan + ASGITransport).

    ``client`` (Litestar's AsyncTestClient) runs the app behind a blocking portal in another
    thread and handles one request at a time, so ``asyncio.gather`` over it never overlaps
    requests. Use this (through ``concurrent_merchant_factory``) to test real concurrency.
    Do not combine with ``client``/``runtime``/``merchant`` in one test: each starts the app.
    """
    import httpx

    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def concurrent_merchant_factory(served_app: Any, app: Any) -> Any:
    """Like ``merchant_factory``, over ``served_app``: ``asyncio.gather`` of its requests interleaves."""

    async def make(
        name: str = "Merchant",
        timezone: str = "America/Guatemala",
        environment: str = "sandbox",
        signing_required: bool = True,
    ) -> Merchant:
        return await new_merchant(
            served_app,
            app.state.runtime,
            name=name,
            timezone=timezone,
            environment=environment,
            signing_required=signing_required,
        )

    return make


@pytest.fixture
async def merchant(merchant_factory: Any) -> Merchant:
    """A logged-in sandbox merchant in America/Guatemala."""
    result: Merchant = await merchant_factory(name="Acme")
    return result
