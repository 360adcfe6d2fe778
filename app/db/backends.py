"""The request path's database: one `fetch` per statement, each in AUTOCOMMIT.

Every request issues single, self-contained statements (app/db/statements.py), so a
connection is held only while one runs, and no BEGIN/ROLLBACK pair wraps a read. On
PostgreSQL that is asyncpg's own pool; on SQLite, SQLAlchemy's async engine over
aiosqlite. Both translate driver errors through one table (app/db/errors.py).
"""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import TextClause

from app.db.base import INT32_MAX, SQLITE_BUSY_TIMEOUT_SECONDS
from app.db.errors import DatabaseUnavailable, rule_for, translate

_ASYNCPG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# A result row, read by column name: `row["title"]` (an asyncpg Record or a SQLAlchemy RowMapping).
Row = Mapping[str, Any]


# What `Viewer.fetch` binds: who the caller is, and which token they presented.
VIEWER_PARAMETERS = ("viewer_id", "viewer_generation", "viewer_jti")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once at import, with its SQL compiled for asyncpg too.

    PostgreSQL runs `asyncpg_sql` straight on a pooled asyncpg connection; SQLite runs
    `statement` through SQLAlchemy. Either way the request path only binds parameters.
    """

    statement: Executable
    asyncpg_sql: str
    parameter_names: tuple[str, ...]
    # Every parameter named `*_id` is an id, compared with an INTEGER column.
    id_parameters: tuple[str, ...]
    # True when the statement returns no row (and changes nothing) unless the caller's
    # token still counts: the account `viewer_id` names exists, at token generation
    # `viewer_generation`, and token `viewer_jti` was not logged out. `Viewer.fetch`
    # (app/domain/viewer.py) runs only these.
    proves_viewer: bool
    # True for INSERT, UPDATE and DELETE: they may use the connections kept for writes.
    writes: bool

    @classmethod
    def of(
        cls, statement: Executable, postgresql_statement: Executable | None = None, *, proves_viewer: bool = False
    ) -> "Prepared":
        """`postgresql_statement`: where the dialects need different constructs (ON CONFLICT)."""
        for_asyncpg = statement if postgresql_statement is None else postgresql_statement
        compiled = for_asyncpg.compile(dialect=_ASYNCPG_DIALECT)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ())
        if proves_viewer and not set(VIEWER_PARAMETERS) <= set(names):
            raise ValueError(f"a statement that proves the viewer's token must take {', '.join(VIEWER_PARAMETERS)}")
        ids = tuple(dict.fromkeys(name for name in names if name.endswith("_id")))
        writes = isinstance(statement, UpdateBase) or (
            isinstance(statement, TextClause) and not statement.text.lstrip().upper().startswith("SELECT")
        )
        return cls(statement, str(compiled), names, ids, proves_viewer, writes)

    def names_no_row(self, params: Mapping[str, Any]) -> bool:
        """True when an id parameter is beyond INTEGER: no row can have it."""
        for name in self.id_parameters:
            value = params.get(name)
            if value is not None and value > INT32_MAX:
                return True
        return False


class Database(ABC):
    """Where requests run their statements."""

    dialect: str

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """Run one statement; its rows (none for a statement without RETURNING).

        An id beyond the column's range finds nothing, on every database (PostgreSQL
        would refuse the parameter). Failures arrive as `DatabaseConflict` or
        `DatabaseUnavailable` (app/db/errors.py), or as the bug they are.
        """
        if params and prepared.names_no_row(params):
            return []
        return await self._run(prepared, params or {})

    @abstractmethod
    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]: ...

    @abstractmethod
    async def close(self) -> None: ...


class PostgresDatabase(Database):
    """asyncpg's own pool, with no SQLAlchemy layer between a request and its connection.

    Measured on the feed and single-post reads: checking a connection out through
    SQLAlchemy's async engine (greenlet hand-offs, pool events, a FastAPI generator
    dependency to give it back) cost more than running the statement.
    """

    dialect = "postgresql"

    def __init__(self, pool: asyncpg.Pool, pool_timeout: float, *, write_reserve: int = 0) -> None:
        self._pool = pool
        self._pool_timeout = pool_timeout
        # Reads may hold at most this many connections at once; the rest are kept for
        # writes. Slow reads (a database without the feed's indexes, a search that runs
        # to its timeout) then queue among themselves while posts and votes still go in.
        self._read_slots = asyncio.Semaphore(max(1, pool.get_max_size() - write_reserve))

    @classmethod
    async def open(
        cls,
        url: URL,
        *,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float,
        statement_timeout_ms: int,
        write_reserve: int = 0,
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
        return cls(pool, pool_timeout, write_reserve=write_reserve)

    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        if prepared.writes:
            return await self._run_on_connection(prepared, params)
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._read_slots.acquire()
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"no database connection within {self._pool_timeout} s: every connection reads may use is busy"
            ) from exc
        try:
            return await self._run_on_connection(prepared, params)
        finally:
            self._read_slots.release()

    async def _run_on_connection(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        args = [params[name] for name in prepared.parameter_names]
        try:
            # asyncio.timeout rather than acquire(timeout=...), which runs every checkout
            # as a task of its own (measured: a few percent of a feed request).
            async with asyncio.timeout(self._pool_timeout):
                connection = await self._pool.acquire()
        except Exception as exc:
            if rule_for(exc) is None:
                raise
            raise DatabaseUnavailable(f"no database connection within {self._pool_timeout} s: {exc!r}") from exc
        try:
            rows: Sequence[Row] = await connection.fetch(prepared.asyncpg_sql, *args)
        except Exception as exc:
            rule = rule_for(exc)
            if rule is not None and rule.reconnect:
                # Do not hand a connection in an unknown state back to the pool (its reset
                # would wait for a server that may have stopped answering); the server
                # restarted or went away, so its other connections are as dead as this
                # one: they are reconnected as they are next used. A connection the server
                # closed under the statement is already back in the pool, and says so.
                with contextlib.suppress(asyncpg.InterfaceError):
                    connection.terminate()
                await self._pool.expire_connections()
            error = translate(exc)
            if error is None:
                raise
            raise error from exc
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


class SQLiteDatabase(Database):
    """SQLite (the embedded default): SQLAlchemy's async engine over aiosqlite."""

    dialect = "sqlite"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        try:
            async with self._engine.connect() as connection:
                result = await connection.execute(prepared.statement, dict(params))
                if not result.returns_rows:
                    return []
                return cast(Sequence[Row], result.mappings().all())
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    async def close(self) -> None:
        await self._engine.dispose()


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


async def open_database(
    url: URL | str,
    *,
    pool_size: int = 4,
    pool_timeout: float = 5,
    connect_timeout: float = 5,
    statement_timeout_ms: int = 5000,
    write_reserve: int = 0,
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
            write_reserve=write_reserve,
        )
    return SQLiteDatabase(create_sqlite_engine(url, pool_timeout=pool_timeout))
