"""Declarative base, and the two kinds of engine Agora uses.

- The application engine is async (aiosqlite / asyncpg) and runs every statement in
  AUTOCOMMIT: each request issues single, self-contained statements, so a
  BEGIN/ROLLBACK pair around every read would be pure overhead.
- The migration engine is sync (sqlite3 / psycopg) and, on SQLite, runs with
  foreign keys OFF and real transactional DDL (see `create_migration_engine`).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import Engine, MetaData, NullPool, create_engine, event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
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


def create_app_engine(
    url: URL | str,
    *,
    pool_size: int = 20,
    max_overflow: int = 10,
    pool_timeout: float = 5,
    connect_timeout: float = 5,
    statement_timeout_ms: int = 5000,
) -> AsyncEngine:
    """The request-path engine: async, AUTOCOMMIT, bounded waits, SQLite foreign keys ON."""
    url = make_url(url)
    # No pre-ping (it would cost a round trip per request): a connection that turns
    # out dead fails its request with 503 and SQLAlchemy then recycles the whole pool.
    kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_timeout": pool_timeout}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
        kwargs["connect_args"] = {
            "timeout": connect_timeout,
            # The server cancels a statement running longer than this; the client gives
            # up a second later (covers a server that stopped answering altogether).
            "server_settings": {"statement_timeout": str(statement_timeout_ms)},
            "command_timeout": statement_timeout_ms / 1000 + 1,
        }
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A read statement compiled once more for asyncpg, for the hottest endpoints.

    On PostgreSQL, `fetch_all` runs the SQL straight on the pooled asyncpg connection,
    skipping SQLAlchemy's execution and result layers (measured: about a third of the
    time of a feed request); on other databases it executes the statement normally.
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


async def fetch_all(
    connection: AsyncConnection, prepared: Prepared, params: dict[str, Any]
) -> Sequence[Mapping[str, Any]]:
    """Run a prepared read; rows support `row["column"]` on every database."""
    if connection.dialect.driver != "asyncpg":
        return cast(
            Sequence[Mapping[str, Any]], (await connection.execute(prepared.statement, params)).mappings().all()
        )
    raw = await connection.get_raw_connection()
    try:
        rows: Sequence[Mapping[str, Any]] = await raw.driver_connection.fetch(  # type: ignore[union-attr]
            prepared.asyncpg_sql, *(params[name] for name in prepared.parameter_names)
        )
    except asyncpg.IntegrityConstraintViolationError as exc:
        # A constraint said no (e.g. the post was deleted mid-statement): the caller decides.
        raise IntegrityError(prepared.asyncpg_sql, params, exc) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        # SQLAlchemy did not see this error, so tell its pool to discard the connection
        # (others that died with it are discarded as they fail, or by SQLAlchemy's own
        # disconnect handling on the next statement it runs).
        await connection.invalidate(exc)
        raise DatabaseUnavailable(str(exc)) from exc
    return rows
