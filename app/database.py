"""Declarative base, the request-path database, and the migration engine.

- Requests run every statement in AUTOCOMMIT through a `Database`: each request issues
  single, self-contained statements, so a BEGIN/ROLLBACK pair around every read would
  be pure overhead. On PostgreSQL that is an asyncpg pool, on SQLite SQLAlchemy's
  async engine over aiosqlite.
- The migration engine is sync (sqlite3 / psycopg) and, on SQLite, runs with
  foreign keys OFF and real transactional DDL (see `create_migration_engine`).
"""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import Engine, MetaData, NullPool, create_engine, event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql import Executable

# Every constraint and index gets a predictable name, so a revision can drop it on
# SQLite too (where unnamed constraints cannot be addressed).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_SECONDS = 15


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_sqlite_engine(url: URL | str, *, pool_timeout: float = 5) -> AsyncEngine:
    """The request-path engine on SQLite: async (aiosqlite), AUTOCOMMIT, foreign keys ON."""
    engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_timeout=pool_timeout,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "connect", _sqlite_app_connection)
    return engine


def _sqlite_app_connection(dbapi_connection: Any, _record: Any) -> None:
    # Without this pragma SQLite ignores ON DELETE CASCADE (and every foreign key).
    # WAL lets readers proceed while one connection writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
    # SQLite's own lower() and LIKE fold ASCII only; searches use this (see queries.py).
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)


def _casefold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def include_object(
    obj: Any, _name: str | None, _type: str, _reflected: bool, _compare_to: Any, *, dialect: str
) -> bool:
    """Autogenerate filter: leave out what a model marks for another database only.

    `Index(..., info={"only_on": "postgresql"})` is created by its revision on
    PostgreSQL alone (e.g. a trigram index), so on SQLite it must not count as missing.
    """
    only_on = getattr(obj, "info", {}).get("only_on")
    return only_on is None or only_on == dialect


def create_migration_engine(url: URL | str) -> Engine:
    """The engine Alembic runs on: sync, no pool, SQLite made safe for batch rebuilds.

    On SQLite, two things differ from the application engine:
    - foreign keys are OFF: a batch rebuild drops and recreates a table, and with
      them ON, dropping `users` would cascade-delete every post and vote;
    - DDL is transactional: the driver's own implicit transactions are switched off
      and we emit BEGIN ourselves, so a step that fails rolls back completely instead
      of leaving `_alembic_tmp_*` tables behind.
    """
    url = make_url(url)
    engine = create_engine(url, poolclass=NullPool)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_migration_connection)
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    return engine


def _sqlite_migration_connection(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")


class DatabaseUnavailable(Exception):
    """The database could not answer (down, restarting, timed out): the client gets a 503."""


_ASYNCPG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# A result row, read by column name: `row["title"]` (an asyncpg Record or a SQLAlchemy RowMapping).
Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once at import, with its SQL compiled for asyncpg too.

    PostgreSQL runs `asyncpg_sql` straight on a pooled asyncpg connection; SQLite runs
    `statement` through SQLAlchemy. Either way the request path only binds parameters.
    """

    statement: Executable
    asyncpg_sql: str
    parameter_names: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable, postgresql_statement: Executable | None = None) -> "Prepared":
        """`postgresql_statement`: where the dialects need different constructs (ON CONFLICT)."""
        for_asyncpg = statement if postgresql_statement is None else postgresql_statement
        compiled = for_asyncpg.compile(dialect=_ASYNCPG_DIALECT)  # type: ignore[attr-defined]
        return cls(statement, str(compiled), tuple(compiled.positiontup or ()))


class Database(ABC):
    """Where requests run their statements: one `fetch` per statement, each in AUTOCOMMIT.

    Every request issues single, self-contained statements (see app/queries.py), so a
    connection is held only while one runs, and no transaction wraps a request.
    """

    dialect: str

    @abstractmethod
    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """Run one statement; its rows (none for a statement without RETURNING).

        A constraint violation raises SQLAlchemy's `IntegrityError` on every database (the
        caller decides what it means); trouble reaching the database ends in a 503.
        """

    @abstractmethod
    async def close(self) -> None: ...


class PostgresDatabase(Database):
    """asyncpg's own pool, with no SQLAlchemy layer between a request and its connection.

    Measured on the feed and single-post reads: checking a connection out through
    SQLAlchemy's async engine (greenlet hand-offs, pool events, a FastAPI generator
    dependency to give it back) cost more than running the statement.
    """

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, pool_timeout: float) -> None:
        self._pool = pool
        self._pool_timeout = pool_timeout

    @classmethod
    async def open(
        cls,
        url: URL,
        *,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float,
        statement_timeout_ms: int,
    ) -> "PostgresDatabase":
        """A pool that connects lazily (the app starts while PostgreSQL is down) and fails fast."""
        query = dict(url.query)
        if "ssl" in query:  # back to libpq's spelling, which asyncpg's own DSN parser reads
            query["sslmode"] = query.pop("ssl")
        pool = await asyncpg.create_pool(
            url.set(drivername="postgresql", query=query).render_as_string(hide_password=False),
            min_size=0,
            max_size=max_connections,
            timeout=connect_timeout,
            # The server cancels a statement running longer than this; the client gives
            # up a second later (covers a server that stopped answering altogether).
            server_settings={"statement_timeout": str(statement_timeout_ms)},
            command_timeout=statement_timeout_ms / 1000 + 1,
            reset=_keep_session,
        )
        return cls(pool, pool_timeout)

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        args = [params[name] for name in prepared.parameter_names] if params else []
        try:
            # asyncio.timeout rather than acquire(timeout=...), which runs every checkout
            # as a task of its own (measured: a few percent of a feed request).
            async with asyncio.timeout(self._pool_timeout):
                connection = await self._pool.acquire()
        except (*_CONNECTION_TROUBLE, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(f"no database connection within {self._pool_timeout} s: {exc!r}") from exc
        try:
            rows: Sequence[Row] = await connection.fetch(prepared.asyncpg_sql, *args)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise IntegrityError(prepared.asyncpg_sql, params, exc) from exc
        except asyncpg.DataError:
            # A value PostgreSQL (or asyncpg, encoding it) rejects: inputs are validated
            # before they get here, so this is a bug to see, not an outage to retry.
            raise
        except _CONNECTION_TROUBLE as exc:
            # Do not hand a connection in an unknown state back to the pool (its reset
            # would wait for a server that may have stopped answering); and the server
            # restarted or went away, so its other connections are as dead as this one:
            # they are reconnected as they are next used. A connection the server closed
            # under the statement is already back in the pool, and terminate() says so.
            with contextlib.suppress(asyncpg.InterfaceError):
                connection.terminate()
            await self._pool.expire_connections()
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except asyncpg.PostgresError as exc:  # e.g. statement_timeout: the connection is fine
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            await self._pool.release(connection)
        return rows

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Give a connection back as it is, after asyncpg's own check for an open transaction.

    asyncpg's default reset (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlock) is a round
    trip on every release; the request path never changes session state, so there is
    nothing to reset (measured: about 8 % of a feed request, and PostgreSQL's CPU besides).
    """


# Errors that say the connection (not the statement) failed: refused, reset, closed by
# the server (restart, admin shutdown), or no answer in time. InternalClientError is
# asyncpg's connection in a state it did not expect: e.g. the server's farewell has
# arrived but the socket has not closed yet (a millisecond or so while the backend
# exits), and a statement on it finds another "operation in progress". Nothing was sent,
# and only a new connection helps.
_CONNECTION_TROUBLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,
)


class SQLAlchemyDatabase(Database):
    """SQLite (the embedded default): SQLAlchemy's async engine over aiosqlite."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.dialect = engine.dialect.name

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        async with self._engine.connect() as connection:
            result = await connection.execute(prepared.statement, dict(params or {}))
            if not result.returns_rows:
                return []
            return cast(Sequence[Row], result.mappings().all())

    async def close(self) -> None:
        await self._engine.dispose()


async def open_database(
    url: URL | str,
    *,
    pool_size: int = 4,
    pool_timeout: float = 5,
    connect_timeout: float = 5,
    statement_timeout_ms: int = 5000,
) -> Database:
    """The request-path database for an async URL (postgresql+asyncpg:// or sqlite+aiosqlite://)."""
    url = make_url(url)
    if url.get_backend_name() == "postgresql":
        return await PostgresDatabase.open(
            url,
            max_connections=pool_size,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
            statement_timeout_ms=statement_timeout_ms,
        )
    return SQLAlchemyDatabase(create_sqlite_engine(url, pool_timeout=pool_timeout))
