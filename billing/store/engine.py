"""Engines and sessions for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

Session = AsyncSession
Engine = AsyncEngine
SessionFactory = async_sessionmaker[AsyncSession]


def _sqlite_pragmas(first_connection_sets_wal: bool) -> Any:
    """A ``connect`` listener: per-connection PRAGMAs; ``journal_mode=WAL`` on the first connection only.

    WAL is a property of the database file (it persists), so asking every new connection to
    switch is a wasted round trip; foreign keys, synchronous and the busy timeout are per connection.
    """
    wal_pending = [first_connection_sets_wal]

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if wal_pending[0]:
            cursor.execute("PRAGMA journal_mode=WAL")
            wal_pending[0] = False
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return on_connect


def create_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An async engine with a connection pool.

    SQLite: pooled connections (each one an aiosqlite thread) with foreign keys, WAL and a
    generous busy timeout, set when the connection is made rather than per session.
    PostgreSQL: no pre-ping round trip per checkout; a connection the server dropped fails the
    statement, SQLAlchemy recognises the disconnect and empties the pool, and the API answers
    503 7019 (``database_unavailable``) so the caller retries on a fresh connection.
    """
    if url.startswith("sqlite"):
        memory = ":memory:" in url or "mode=memory" in url
        options: dict[str, Any] = {} if memory else {"pool_size": pool_size, "max_overflow": pool_size}
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30}, hide_parameters=True, **options
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(not memory))
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        # Parameters may hold tokens or keys: error messages never show them.
        hide_parameters=True,
    )


def session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (no lazy reloads in async code)."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


class ConnectionSlots:
    """How many holders (e.g. the requests of a process) may keep a pooled connection at once.

    ``acquire()`` waits for a free slot as long as the pool would wait for a free connection, then
    fails like the pool does (``sqlalchemy.exc.TimeoutError``: the API answers 503 7019).
    """

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.size = size
        timeout = getattr(engine.pool, "timeout", None)
        self.timeout: float = float(timeout()) if callable(timeout) else 30.0
        self._free = asyncio.Semaphore(size)

    async def acquire(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._free.acquire()
        except TimeoutError:
            raise SATimeoutError(
                f"no free connection slot within {self.timeout:g} s ({self.size} in use)"
            ) from None

    def release(self) -> None:
        self._free.release()


class _LeasedSession(AsyncSession):
    """A session on a ``SharedConnection``; closing it frees the connection for the next session."""

    shared_connection: SharedConnection | None = None

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            owner, self.shared_connection = self.shared_connection, None
            if owner is not None:
                owner.leased = False


class _SharedSessions(async_sessionmaker[AsyncSession]):
    """Sessions bound to one connection, one at a time; a nested one gets a pooled connection."""

    def __init__(self, owner: SharedConnection, connection: AsyncConnection) -> None:
        super().__init__(bind=connection, class_=_LeasedSession, expire_on_commit=False)
        self._owner = owner

    def __call__(self, **local_kw: Any) -> AsyncSession:
        owner = self._owner
        if owner.leased:
            return owner.fallback(**local_kw)
        session = super().__call__(**local_kw)
        assert isinstance(session, _LeasedSession)
        session.shared_connection = owner
        owner.leased = True
        return session


class SharedConnection:
    """One pooled connection shared by sessions that run one after the other (e.g. one API request).

    ``await shared.sessions()`` checks the connection out (the first time) and answers a session
    factory bound to it. The connection is in no transaction when a session starts, so each
    session runs its own transaction: ``commit()`` commits for real and closing a session rolls
    back what it left open, exactly as with sessions on pooled connections. A session asked for
    while another one is still open gets its own pooled connection from ``fallback`` instead of
    joining the open transaction. ``aclose()`` returns the connection to the pool.

    ``reads_only=True`` (a request that writes nothing, e.g. an HTTP GET) runs the connection in
    autocommit on PostgreSQL: no ``BEGIN`` and ``ROLLBACK`` round trips around each session's
    reads. Each statement still sees one consistent snapshot, as every statement of a READ
    COMMITTED transaction does; the pool sets the connection back to transactions when it returns.
    SQLite needs nothing: its driver begins a transaction only before a write.
    """

    def __init__(self, engine: AsyncEngine, fallback: SessionFactory, *, reads_only: bool = False) -> None:
        self.engine = engine
        self.fallback = fallback
        self.reads_only = reads_only and engine.dialect.name == "postgresql"
        self.leased = False
        self._connection: AsyncConnection | None = None
        self._sessions: SessionFactory | None = None

    async def sessions(self) -> SessionFactory:
        if self._sessions is None:
            connection = self.engine.connect()
            await connection.start()
            if self.reads_only:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
            self._sessions = _SharedSessions(self, connection)
        return self._sessions

    async def aclose(self) -> None:
        connection, self._connection, self._sessions = self._connection, None, None
        if connection is not None:
            await connection.close()


@asynccontextmanager
async def transaction(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on error."""
    async with factory() as session, session.begin():
        yield session


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database cannot answer a trivial query."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) means the database cannot be reached right now.

    A refused or dropped connection, a pool with no free connection, a locked SQLite file:
    retrying later can succeed, so the API answers 503 instead of 500.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError | DisconnectionError | SATimeoutError):
            return True
        current = current.__cause__ or current.__context__
    return False
