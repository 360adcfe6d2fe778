"""The SQL the app runs is readable in one place: docs/statements.sql, printed by `python -m app.db.statements`."""

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.config import REPO_ROOT
from app.db import statements
from app.db.backends import Prepared

STATEMENTS_SQL = REPO_ROOT / "docs" / "statements.sql"


def test_docs_statements_sql_is_what_the_module_prints() -> None:
    assert STATEMENTS_SQL.read_text() == statements.render_statements(), (
        "the statements changed: run `python -m app.db.statements > docs/statements.sql` and review the diff"
    )


def test_the_module_prints_every_statement_for_both_databases() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "app.db.statements"],
        cwd=REPO_ROOT,
        env={**os.environ, "ENVIRONMENT": "development"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed == statements.render_statements()
    for name in statements.named_statements():
        assert f"-- {name}" in printed
    assert printed.count("-- PostgreSQL:") == printed.count("-- SQLite:") == len(statements.named_statements())
    assert printed.count("title_folded LIKE") >= 2  # the search, the same SQL for both databases


def test_inserts_updates_and_deletes_are_writes_and_nothing_else_is() -> None:
    """`Prepared.writes` decides which statements may use the connections kept for writes."""
    for name, prepared in statements.named_statements().items():
        sql = prepared.asyncpg_sql.lstrip().upper()
        is_write = sql.startswith(("INSERT", "UPDATE", "DELETE"))
        assert prepared.writes == is_write, name


def test_the_statements_that_match_a_search_and_only_they_have_the_search_timeout() -> None:
    """`Prepared.searches` decides which statements SEARCH_TIMEOUT_MS stops; a search cannot be built unmarked."""
    named = statements.named_statements()
    matching = {name for name, prepared in named.items() if "title_folded LIKE" in prepared.asyncpg_sql}
    assert matching == {name for name, prepared in named.items() if prepared.searches}
    assert matching == {
        *(f"RECENT_SEARCH[{keyset}]" for keyset in (False, True)),
        *(f"{kind}[True, {keyset}]" for kind in ("LIST_POSTS", "OWNER_POSTS") for keyset in (False, True)),
        *(f"{kind}[{keyset}]" for kind in ("GRAMS_SEARCH", "GRAMS_WALK") for keyset in (False, True)),
    }
    unmarked = select(statements.posts.c.id).where(statements.matches_folded(statements.posts))
    with pytest.raises(ValueError, match="searches"):
        Prepared.of(unmarked)
    with pytest.raises(ValueError, match="searches"):
        Prepared.of(select(statements.posts.c.id), searches=True)
