"""Declarative base, and the two kinds of engine Agora uses.

- The application engine is async (aiosqlite / asyncpg) and runs every statement in
  AUTOCOMMIT: each request issues single, self-contained statements, so a
  BEGIN/ROLLBACK pair around every read would be pure overhead.
- The migration engine is sync (sqlite3 / psycopg) and, on SQLite, runs with
  foreign keys OFF and real transactional DDL (see `create_migration_engine`).
"""

from typing import Any

from sqlalchemy import Engine, MetaData, NullPool, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

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


def create_app_engine(url: URL | str, *, pool_size: int = 20, max_overflow: int = 10) -> AsyncEngine:
    """The request-path engine: async, AUTOCOMMIT, SQLite foreign keys ON."""
    url = make_url(url)
    kwargs: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
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
