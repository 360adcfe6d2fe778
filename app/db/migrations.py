"""Running the Alembic chain: its engine, its autogenerate filter, and upgrades from Python.

The migration engine is sync (sqlite3 / psycopg) and, on SQLite, runs with foreign keys
OFF and real transactional DDL (see `create_migration_engine`). The run command and
the tests upgrade through `upgrade_to_head`; /ready compares with `head_revision`.
"""

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, NullPool, create_engine, event
from sqlalchemy.engine import URL, make_url

from app.config import REPO_ROOT
from app.db.base import SQLITE_BUSY_TIMEOUT_SECONDS

ALEMBIC_INI = REPO_ROOT / "alembic.ini"
ALEMBIC_DIR = REPO_ROOT / "alembic"


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
