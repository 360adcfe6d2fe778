"""Running the Alembic chain: its engine, its autogenerate filter, and upgrades from Python.

The migration engine is sync (sqlite3 / psycopg) and, on SQLite, runs with foreign keys
OFF and real transactional DDL (see `create_migration_engine`). The run command and
the tests upgrade through `upgrade_to_head`; /ready compares with `head_revision`.
Revisions use the helpers at the end (`build_indexes_concurrently`, ...) for changes
to tables that may be large and serving traffic (README, "Writing a new revision").
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alembic import command, op
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, NullPool, create_engine, event, text
from sqlalchemy.engine import URL, make_url

from app.config import REPO_ROOT
from app.db.base import SQLITE_BUSY_TIMEOUT_SECONDS

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
ALEMBIC_DIR = REPO_ROOT / "alembic"

# The migration context option through which env.py tells revisions the session's
# lock_timeout (in ms), to restore it after a step that switched it off.
LOCK_TIMEOUT_OPTION = "agora_lock_timeout_ms"


def alembic_config(database_url: str | URL | None = None) -> Config:
    """An Alembic Config for this repo, optionally aimed at another database.

    Without a URL, env.py uses `Settings.DATABASE_URL`, exactly like the CLI.
    Logging is left alone: the caller (uvicorn, pytest) owns it.
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["configure_logger"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str | URL | None = None) -> None:
    """Bring the database up to the newest revision (a no-op when it is already there)."""
    command.upgrade(alembic_config(database_url), "head")


def head_revision() -> str:
    """The newest revision of the chain (what /ready expects the database to be at)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migration chain is empty"
    return head


def create_migration_engine(url: URL | str) -> Engine:
    """The engine Alembic runs on: sync, no pool, SQLite made safe for batch rebuilds.

    On SQLite, two things differ from the application's connections:
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


def include_object(
    obj: Any, _name: str | None, _type: str, _reflected: bool, _compare_to: Any, *, dialect: str
) -> bool:
    """Autogenerate filter: leave out what a model marks for another database only.

    `Index(..., info={"only_on": "postgresql"})` is created by its revision on
    PostgreSQL alone (e.g. a trigram index), so on SQLite it must not count as missing.
    """
    only_on = getattr(obj, "info", {}).get("only_on")
    return only_on is None or only_on == dialect


# --- helpers for revisions: changes that do not stop the application's traffic ----------


@dataclass(frozen=True)
class ConcurrentIndex:
    """An index built with CREATE INDEX CONCURRENTLY: `columns` is the SQL between the parentheses."""

    name: str
    table: str
    columns: str
    unique: bool = False
    using: str | None = None
    storage: str | None = None  # storage parameters, SQL between the parentheses of WITH
    where: str | None = None  # a partial index's predicate

    def create_sql(self) -> str:
        unique = "UNIQUE " if self.unique else ""
        using = f" USING {self.using}" if self.using else ""
        storage = f" WITH ({self.storage})" if self.storage else ""
        where = f" WHERE {self.where}" if self.where else ""
        return (
            f"CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table}{using} ({self.columns})"
            f"{storage}{where}"
        )


def build_indexes_concurrently(*indexes: ConcurrentIndex) -> None:
    """PostgreSQL: build each index without blocking reads or writes of its table.

    CREATE INDEX CONCURRENTLY cannot run in a transaction, so this commits what the
    revision did so far and runs outside one (Alembic's autocommit block); the revision
    continues in a new transaction afterwards. Safe to run again: an index left INVALID
    by a failed or interrupted build is dropped and built again, a valid one is kept
    (IF NOT EXISTS). The build waits for older transactions without blocking anyone, so
    lock_timeout is off meanwhile.
    """
    context = op.get_context()
    with context.autocommit_block(), _no_lock_timeout():
        for index in indexes:
            if context.as_sql:
                # A script is run from a known revision, where the index does not exist
                # yet: anything by that name is what an interrupted run left.
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
            elif _invalid_index(index.name):
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
            op.execute(index.create_sql())


def drop_indexes_concurrently(*names: str) -> None:
    """PostgreSQL: DROP INDEX CONCURRENTLY IF EXISTS each, outside the revision's transaction."""
    with op.get_context().autocommit_block(), _no_lock_timeout():
        for name in names:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def validate_constraints(table: str, *names: str) -> None:
    """PostgreSQL: VALIDATE CONSTRAINT each (added NOT VALID) in its own transaction.

    Validation scans the table under SHARE UPDATE EXCLUSIVE, which lets reads and writes
    through; the transaction that added the constraint has committed by then, so its
    brief stronger lock is not held during the scan.
    """
    with op.get_context().autocommit_block(), _no_lock_timeout():
        for name in names:
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def constraint_exists(table: str, name: str) -> bool:
    """Online PostgreSQL only (False in offline mode: the script adds it)."""
    if op.get_context().as_sql:
        return False
    query = text(
        "SELECT 1 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = :table AND con.conname = :name"
    )
    return op.get_bind().execute(query, {"table": table, "name": name}).first() is not None


def _invalid_index(name: str) -> bool:
    query = text(
        "SELECT NOT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = :name"
    )
    return bool(op.get_bind().execute(query, {"name": name}).scalar())


@contextmanager
def _no_lock_timeout() -> Iterator[None]:
    """lock_timeout off for waits that block nobody (concurrent builds and validations), then back."""
    restore = op.get_context().opts.get(LOCK_TIMEOUT_OPTION)
    op.execute("SET lock_timeout = 0")
    try:
        yield
    finally:
        op.execute(f"SET lock_timeout = {int(restore)}" if restore is not None else "RESET lock_timeout")
