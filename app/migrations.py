"""Run the Alembic chain from Python: the run command and the tests use this."""

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from app.config import REPO_ROOT

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
