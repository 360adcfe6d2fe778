"""The Alembic chain, exercised on the backend under test.

- shape: one head, a linear chain, the course's seven steps first, each file saying how it was made;
- stairway: every step upgrades, downgrades and upgrades again on an empty database;
- walk with data: rows written at every step survive every later step, up and down,
  and the foreign keys cascade at head;
- the models match head (`alembic check`);
- concurrent `alembic upgrade head` processes (PostgreSQL);
- a step that fails on SQLite leaves the previous revision intact;
- offline `--sql` output is a PostgreSQL script, and is refused on SQLite;
- a revision that cannot get its table's lock gives up cleanly (PostgreSQL).
Adoption of course app databases: tests/test_adoption.py; what a revision may do to a
table with rows and traffic: tests/test_zero_downtime.py.

Every database here is built by the chain itself (never `create_all`).
"""

import functools
import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from conftest import IS_POSTGRESQL, needs_postgresql
from sqlalchemy import Connection, Engine, NullPool, create_engine, event, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.config import REPO_ROOT, Settings, driver_urls
from app.db import models  # noqa: F401  (puts every table on Base.metadata)
from app.db.base import Base
from app.db.folding import fold
from app.db.grams import title_grams
from app.db.migrations import alembic_config, create_migration_engine, include_object

# The course's seven steps, in order. Their ids are part of every deployed database
# (alembic_version), so they are pinned too.
CREATE_POSTS = "44dc769ca3fd"
ADD_CONTENT = "99a1e2df9afa"
ADD_USERS = "94c629164130"
ADD_OWNER = "3773dca6c5dc"
ADD_PUBLISHED = "f537ca5b8316"
ADD_VOTES = "dba4d212a1fc"
ADD_PHONE = "936002196a31"
UNIQUE_EMAILS_IGNORING_CASE = "38ab528790a7"
# Issue 16 (token generations, revoked tokens): its columns and table, when the chain has it.
REVOCABLE_TOKENS = "b470f026aa90"
# Issue 15 (one case folding for search): the folded title.
FOLDED_TITLES = "0790f43abbfb"
# Issue 15 (search): the grams of titles, a column on PostgreSQL only (never on SQLite).
TITLE_GRAMS = "8c3f1b6e2a90"
# Issue 15 (search after a burst): autovacuum takes posts after every 1,000 new posts.
VACUUM_AFTER_NEW_POSTS = "e41b7c9d0a52"
NEVER = "(not on this database)"

FIRST_REVISIONS = (
    (CREATE_POSTS, "create posts table"),
    (ADD_CONTENT, "add content column to posts table"),
    (ADD_USERS, "add user table"),
    (ADD_OWNER, "add foreign-key to posts table"),
    (ADD_PUBLISHED, "add last few columns to posts table"),
    (ADD_VOTES, "auto-vote"),
    (ADD_PHONE, "add phone number"),
)

PLACEHOLDER_EMAIL = "ownerless-posts@agora.invalid"

# Which revision brings each table and each column. A later revision that adds or
# removes a table or a column must be recorded here (and given rows in STEPS).
SCHEMA_HISTORY: dict[str, tuple[str, dict[str, str]]] = {
    "posts": (
        CREATE_POSTS,
        {
            "id": CREATE_POSTS,
            "title": CREATE_POSTS,
            "content": ADD_CONTENT,
            "owner_id": ADD_OWNER,
            "published": ADD_PUBLISHED,
            "created_at": ADD_PUBLISHED,
            "title_folded": FOLDED_TITLES,
            "title_grams": TITLE_GRAMS if IS_POSTGRESQL else NEVER,
        },
    ),
    "users": (
        ADD_USERS,
        {
            "id": ADD_USERS,
            "email": ADD_USERS,
            "password": ADD_USERS,
            "created_at": ADD_USERS,
            "phone_number": ADD_PHONE,
            "token_generation": REVOCABLE_TOKENS,
        },
    ),
    "votes": (ADD_VOTES, {"user_id": ADD_VOTES, "post_id": ADD_VOTES}),
    "revoked_tokens": (REVOCABLE_TOKENS, {"jti": REVOCABLE_TOKENS, "expires_at": REVOCABLE_TOKENS}),
}
AUTOINCREMENT_TABLES = ("posts", "users")


# --- helpers -------------------------------------------------------------------


def script_directory(config: Config | None = None) -> ScriptDirectory:
    return ScriptDirectory.from_config(config or alembic_config())


def chain() -> list[str]:
    """Every revision id, base first."""
    return [script.revision for script in reversed(list(script_directory().walk_revisions("base", "heads")))]


def migration_engine(url: str) -> Engine:
    return create_migration_engine(driver_urls(url)[0])


def current_revisions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(MigrationContext.configure(connection).get_current_heads())


def sqlite_table_sql(connection: Connection, table: str) -> str:
    return str(
        connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": table}
        ).scalar_one()
    )


def column_dump(connection: Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}"))
    return sorted((tuple(row) for row in rows), key=repr)


def table_dump(connection: Connection, table: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))), key=repr)


def foreign_keys_on_engine(url: str) -> Engine:
    """An engine like the application's as far as foreign keys go: ON, so cascades fire."""
    sync_url = driver_urls(url)[0]
    engine = create_engine(sync_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    if sync_url.get_backend_name() == "sqlite":

        def foreign_keys_on(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        event.listen(engine, "connect", foreign_keys_on)
    return engine


# --- 1. the shape of the chain ---------------------------------------------------


def test_one_head_and_a_linear_chain_starting_with_the_course_steps() -> None:
    scripts = script_directory()
    assert len(scripts.get_heads()) == 1, scripts.get_heads()
    assert len(scripts.get_bases()) == 1, scripts.get_bases()

    walked = list(reversed(list(scripts.walk_revisions("base", "heads"))))
    # Every revision file is on the one line from base to head: no branch, no merge.
    assert len(walked) == len(list(scripts.walk_revisions()))
    for previous, script in zip([None, *walked], walked, strict=False):
        assert not script.is_merge_point and not script.is_branch_point, script.revision
        assert script.down_revision == (previous.revision if previous else None), script.revision

    first = [(script.revision, script.doc) for script in walked[: len(FIRST_REVISIONS)]]
    assert first == list(FIRST_REVISIONS)

    for script in walked:
        docstring = script.longdoc
        how = re.search(r"How it was made:(.*?)(?:\n\s*\n|What it does:|\Z)", docstring, re.DOTALL)
        assert how, f"{script.path}: the docstring must say 'How it was made: hand-written / autogenerated'"
        made = " ".join(how.group(1).split())
        # "started with autogenerate, finished by hand" (38ab528790a7) counts as stating it.
        assert "hand-written" in made or "autogenerated" in made or ("autogenerate" in made and "by hand" in made), (
            f"{script.path}: {made!r} says neither hand-written nor autogenerated"
        )


# --- 2. stairway -----------------------------------------------------------------


def test_stairway_every_step_upgrades_downgrades_and_upgrades_again(
    empty_database: Callable[[], str],
) -> None:
    url = empty_database()
    config = alembic_config(url)
    engine = migration_engine(url)
    previous: list[str] = []
    for revision in chain():
        command.upgrade(config, revision)
        assert current_revisions(engine) == [revision]
        command.downgrade(config, "-1")
        assert current_revisions(engine) == previous
        command.upgrade(config, revision)
        assert current_revisions(engine) == [revision]
        previous = [revision]

    # No posts existed before owner_id: no placeholder owner was invented.
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar_one() == 0
    engine.dispose()


# --- 3. a walk with data -----------------------------------------------------------


@dataclass
class Row:
    values: dict[str, Any]
    # The row exists only while this revision is applied (the placeholder owner).
    needs: str | None = None


@dataclass
class Ledger:
    """What the database must hold: every row written so far, with its values at head."""

    rows: dict[str, list[Row]] = field(default_factory=lambda: {table: [] for table in SCHEMA_HISTORY})

    def add(self, table: str, needs: str | None = None, **values: Any) -> Row:
        row = Row(dict(values), needs)
        self.rows[table].append(row)
        return row

    def find(self, table: str, **match: Any) -> Row:
        (row,) = (row for row in self.rows[table] if all(row.values.get(k) == v for k, v in match.items()))
        return row

    def id_of(self, table: str, **match: Any) -> int:
        return int(self.find(table, **match).values["id"])


def check_state(engine: Engine, applied: list[str], ledger: Ledger) -> None:
    """The database holds exactly the tables, columns and rows the applied revisions call for."""
    done = set(applied)
    with engine.connect() as connection:
        assert sorted(MigrationContext.configure(connection).get_current_heads()) == applied[-1:]
        inspector = inspect(connection)
        expected_tables = {table for table, (since, _) in SCHEMA_HISTORY.items() if since in done}
        assert set(inspector.get_table_names()) - {"alembic_version"} == expected_tables, applied[-1:]
        for table in sorted(expected_tables):
            columns = sorted(column for column, since in SCHEMA_HISTORY[table][1].items() if since in done)
            assert sorted(column["name"] for column in inspector.get_columns(table)) == columns, (table, applied[-1])
            actual = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            expected = [
                tuple(row.values[column] for column in columns)
                for row in ledger.rows[table]
                if row.needs is None or row.needs in done
            ]
            normalised = [tuple(_normalise(c, v) for c, v in zip(columns, row, strict=True)) for row in actual]
            assert sorted(normalised, key=repr) == sorted(expected, key=repr), (table, applied[-1])
            if not IS_POSTGRESQL and table in AUTOINCREMENT_TABLES:
                assert "AUTOINCREMENT" in sqlite_table_sql(connection, table), (table, applied[-1])


def _normalise(column: str, value: Any) -> Any:
    # SQLite hands booleans back as 0/1 to plain SQL.
    return bool(value) if column == "published" else value


def _insert(connection: Connection, table: str, returning: str, **values: Any) -> Any:
    columns = ", ".join(values)
    params = ", ".join(f":{column}" for column in values)
    return connection.execute(
        text(f"INSERT INTO {table} ({columns}) VALUES ({params}) RETURNING {returning}"), values
    ).one()


def _step_create_posts(connection: Connection, ledger: Ledger) -> None:
    for title in ("first post", "second post"):
        (post_id,) = _insert(connection, "posts", "id", title=title)
        ledger.add("posts", id=post_id, title=title)


def _step_add_content(connection: Connection, ledger: Ledger) -> None:
    for row in ledger.rows["posts"]:
        row.values["content"] = ""  # posts that existed before the column
    (post_id,) = _insert(connection, "posts", "id", title="third post", content="some text")
    ledger.add("posts", id=post_id, title="third post", content="some text")


def _step_add_users(connection: Connection, ledger: Ledger) -> None:
    for email in ("alice@example.com", "bob@example.com"):
        user_id, created_at = _insert(connection, "users", "id, created_at", email=email, password=f"hash-of-{email}")
        assert created_at is not None
        ledger.add("users", id=user_id, email=email, password=f"hash-of-{email}", created_at=created_at)


def _step_add_owner(connection: Connection, ledger: Ledger) -> None:
    placeholders = connection.execute(
        text("SELECT id, password, created_at FROM users WHERE email = :email"), {"email": PLACEHOLDER_EMAIL}
    ).all()
    assert len(placeholders) == 1, placeholders
    ((placeholder_id, password, created_at),) = placeholders
    assert password == "!"  # not a hash of anything: nobody can log in as the placeholder
    ledger.add(
        "users", needs=ADD_OWNER, id=placeholder_id, email=PLACEHOLDER_EMAIL, password=password, created_at=created_at
    )
    for row in ledger.rows["posts"]:
        row.values["owner_id"] = placeholder_id  # posts that existed before they could have an owner
    alice = ledger.id_of("users", email="alice@example.com")
    (post_id,) = _insert(connection, "posts", "id", title="alice's post", content="hello", owner_id=alice)
    ledger.add("posts", id=post_id, title="alice's post", content="hello", owner_id=alice)


def _step_add_published(connection: Connection, ledger: Ledger) -> None:
    for row in ledger.rows["posts"]:
        created_at = connection.execute(
            text("SELECT created_at FROM posts WHERE id = :id"), {"id": row.values["id"]}
        ).scalar_one()
        assert created_at is not None
        row.values.update(published=True, created_at=created_at)  # existing posts count as published
    bob = ledger.id_of("users", email="bob@example.com")
    post_id, created_at = _insert(
        connection, "posts", "id, created_at", title="bob's draft", content="wip", owner_id=bob, published=False
    )
    ledger.add(
        "posts", id=post_id, title="bob's draft", content="wip", owner_id=bob, published=False, created_at=created_at
    )


def _vote(connection: Connection, ledger: Ledger, email: str, title: str) -> None:
    user_id = ledger.id_of("users", email=email)
    post_id = ledger.id_of("posts", title=title)
    _insert(connection, "votes", "user_id", user_id=user_id, post_id=post_id)
    ledger.add("votes", user_id=user_id, post_id=post_id)


def _step_add_votes(connection: Connection, ledger: Ledger) -> None:
    _vote(connection, ledger, "alice@example.com", "first post")
    _vote(connection, ledger, "bob@example.com", "alice's post")


def _add_user(connection: Connection, ledger: Ledger, email: str, phone_number: str | None) -> None:
    password = f"hash-of-{email}"
    user_id, created_at = _insert(
        connection, "users", "id, created_at", email=email, password=password, phone_number=phone_number
    )
    ledger.add("users", id=user_id, email=email, password=password, created_at=created_at, phone_number=phone_number)


def _step_add_phone(connection: Connection, ledger: Ledger) -> None:
    for row in ledger.rows["users"]:
        row.values["phone_number"] = None  # users that existed before the column
    _add_user(connection, ledger, "carol@example.com", "+44 20 7946 0000")


def _step_unique_emails_ignoring_case(connection: Connection, ledger: Ledger) -> None:
    _add_user(connection, ledger, "Dave@Example.com", None)


def _step_revocable_tokens(connection: Connection, ledger: Ledger) -> None:
    for row in ledger.rows["users"]:
        row.values["token_generation"] = 0  # users that existed before the column
    _insert(connection, "revoked_tokens", "jti", jti="a-revoked-token", expires_at=4_102_444_800)
    ledger.add("revoked_tokens", jti="a-revoked-token", expires_at=4_102_444_800)


def _step_folded_titles(connection: Connection, ledger: Ledger) -> None:
    for row in ledger.rows["posts"]:
        row.values["title_folded"] = fold(row.values["title"])  # the backfill: every existing title, folded
    alice = ledger.id_of("users", email="alice@example.com")
    values: dict[str, Any] = {"title": "Straße", "title_folded": "strasse", "content": "c", "owner_id": alice}
    values["published"] = True
    post_id, created_at = _insert(connection, "posts", "id, created_at", **values)
    ledger.add("posts", id=post_id, created_at=created_at, **values)


def _step_title_grams(connection: Connection, ledger: Ledger) -> None:
    if not IS_POSTGRESQL:
        return  # SQLite has no such column
    created: dict[int, datetime] = dict(connection.execute(text("SELECT id, created_at FROM posts")).all())
    for row in ledger.rows["posts"]:  # the backfill: the folded title's grams, and the post's time bucket
        row.values["title_grams"] = title_grams(fold(row.values["title"]), created[row.values["id"]])
    alice = ledger.id_of("users", email="alice@example.com")
    values: dict[str, Any] = {"title": "Kotlin Nectar", "title_folded": "kotlin nectar", "content": "c"}
    values |= {"owner_id": alice, "published": True, "created_at": datetime(2026, 12, 4, 22, tzinfo=UTC)}
    values["title_grams"] = title_grams(values["title_folded"], values["created_at"])
    (post_id,) = _insert(connection, "posts", "id", **values)
    ledger.add("posts", id=post_id, **values)


# Rows written right after each step (a later revision needs no entry unless it changes the schema).
STEPS: dict[str, Callable[[Connection, Ledger], None]] = {
    CREATE_POSTS: _step_create_posts,
    ADD_CONTENT: _step_add_content,
    ADD_USERS: _step_add_users,
    ADD_OWNER: _step_add_owner,
    ADD_PUBLISHED: _step_add_published,
    ADD_VOTES: _step_add_votes,
    ADD_PHONE: _step_add_phone,
    UNIQUE_EMAILS_IGNORING_CASE: _step_unique_emails_ignoring_case,
    REVOCABLE_TOKENS: _step_revocable_tokens,
    FOLDED_TITLES: _step_folded_titles,
    TITLE_GRAMS: _step_title_grams,
}


def test_walk_with_data_up_and_down_then_cascades_at_head(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    config = alembic_config(url)
    engine = migration_engine(url)
    revisions = chain()
    ledger = Ledger()
    applied: list[str] = []

    # Up one step at a time, writing rows shaped for each step; nothing written earlier may change.
    for revision in revisions:
        command.upgrade(config, revision)
        applied.append(revision)
        if revision in STEPS:
            # Records what the step did to existing rows (backfills), then writes new ones.
            with engine.begin() as connection:
                STEPS[revision](connection, ledger)
        check_state(engine, applied, ledger)

    # Spot checks of the backfill rules, on top of the full comparison above.
    placeholder = ledger.find("users", email=PLACEHOLDER_EMAIL).values["id"]
    for title in ("first post", "second post", "third post"):
        post = ledger.find("posts", title=title).values
        assert post["owner_id"] == placeholder and post["published"] is True
    assert ledger.find("posts", title="first post").values["content"] == ""

    with engine.begin() as connection:
        _vote(connection, ledger, "carol@example.com", "bob's draft")
        _vote(connection, ledger, "Dave@Example.com", "first post")
        _vote(connection, ledger, "alice@example.com", "second post")
    check_state(engine, applied, ledger)

    # Down one step at a time: what the lower revision still has room for survives.
    for _ in revisions:
        command.downgrade(config, "-1")
        applied.pop()
        check_state(engine, applied, ledger)
    assert applied == []

    command.upgrade(config, "head")
    check_state(engine, revisions, Ledger())
    engine.dispose()
    check_cascades_and_fresh_ids(url)


def check_cascades_and_fresh_ids(url: str) -> None:
    engine = foreign_keys_on_engine(url)
    with engine.connect() as connection:
        if not IS_POSTGRESQL:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1

        def user(email: str) -> int:
            return int(
                connection.execute(
                    text("INSERT INTO users (email, password) VALUES (:email, 'x') RETURNING id"), {"email": email}
                ).scalar_one()
            )

        def post(title: str, owner: int) -> int:
            return int(
                connection.execute(
                    text("INSERT INTO posts (title, content, owner_id) VALUES (:title, '', :owner) RETURNING id"),
                    {"title": title, "owner": owner},
                ).scalar_one()
            )

        def vote(user_id: int, post_id: int) -> None:
            connection.execute(
                text("INSERT INTO votes (user_id, post_id) VALUES (:u, :p)"), {"u": user_id, "p": post_id}
            )

        def rows(sql: str) -> set[tuple[Any, ...]]:
            return {tuple(row) for row in connection.execute(text(sql))}

        a, b = user("a@example.com"), user("b@example.com")
        post_a, post_b, post_b2 = post("a", a), post("b", b), post("b2", b)
        for voter, voted in ((a, post_b), (b, post_a), (b, post_b), (a, post_b2), (b, post_b2)):
            vote(voter, voted)

        # A foreign key that is enforced refuses an owner that does not exist.
        with pytest.raises(IntegrityError):
            post("orphan", max(a, b) + 1000)

        # Deleting a post deletes its votes, and nothing else.
        connection.execute(text("DELETE FROM posts WHERE id = :id"), {"id": post_b})
        assert rows("SELECT user_id, post_id FROM votes") == {(b, post_a), (a, post_b2), (b, post_b2)}
        assert rows("SELECT id FROM posts") == {(post_a,), (post_b2,)}

        # Deleting a user deletes their posts, their votes and the votes on their posts.
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": a})
        assert rows("SELECT id FROM users") == {(b,)}
        assert rows("SELECT id FROM posts") == {(post_b2,)}
        assert rows("SELECT user_id, post_id FROM votes") == {(b, post_b2)}

        # Ids are never handed out again, even the highest one after it was deleted.
        connection.execute(text("DELETE FROM posts WHERE id = :id"), {"id": post_b2})
        assert post("later", b) > post_b2
        connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": b})
        assert user("c@example.com") > b
    engine.dispose()


# --- 4. models match head ----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_models_match_head(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    config = alembic_config(url)
    command.upgrade(config, "head")
    engine = migration_engine(url)
    with engine.connect() as connection:
        opts = {
            "compare_server_default": True,
            "compare_type": True,
            # As env.py does: an index the model keeps for PostgreSQL only is not missing on SQLite.
            "include_object": functools.partial(include_object, dialect=connection.dialect.name),
        }
        context = MigrationContext.configure(connection, opts=opts)
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
    command.check(config)  # raises AutogenerateDiffsDetected on any difference


# --- 5. concurrent upgrades ----------------------------------------------------------


@needs_postgresql
def test_concurrent_upgrade_processes_all_succeed(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    env = {**os.environ, "DATABASE_URL": url}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout + stderr

    # Each step ran exactly once, in one of the processes (the others found it done). The CLI logs
    # "Running upgrade" at INFO through alembic.ini's logging section.
    ran = [line for _, stderr in outputs for line in stderr.splitlines() if "Running upgrade" in line]
    assert len(ran) == len(chain()), ran

    engine = migration_engine(url)
    assert current_revisions(engine) == [script_directory().get_current_head()]
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == {"alembic_version", *SCHEMA_HISTORY}
    engine.dispose()


# --- 6. a failing step on SQLite ---------------------------------------------------------

DOOMED_REVISION = '''\
"""doomed step (test only)

How it was made: hand-written.
"""

import sqlalchemy as sa
from alembic import op

revision = "d00med000001"
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    # recreate="always": the rebuild through _alembic_tmp_posts, not a plain ALTER TABLE ADD COLUMN.
    with op.batch_alter_table("posts", recreate="always", table_kwargs={{"sqlite_autoincrement": True}}) as batch_op:
        batch_op.add_column(sa.Column("doomed", sa.String(), {column_options}))
    {after_batch}


def downgrade() -> None:
    pass
'''

FAILURES = {
    # NOT NULL without a default on a table with rows: the copy into _alembic_tmp_posts fails
    # (Alembic drops the temporary table itself; the version must not move, the data not change).
    "inside the batch": ("nullable=False", "pass", IntegrityError),
    # The rebuild has completed (posts was replaced) when the step fails: only a rolled-back
    # transaction puts the old table back (without transactional DDL the retry fails differently).
    "after the batch": ("nullable=True", 'op.execute("SELECT * FROM no_such_table")', OperationalError),
}


@pytest.mark.parametrize("start", ["head", "one below head"])
@pytest.mark.parametrize("failure", list(FAILURES))
def test_sqlite_failed_step_leaves_the_previous_revision(tmp_path: Path, failure: str, start: str) -> None:
    real_head = script_directory().get_current_head()
    assert real_head is not None
    scripts = tmp_path / "alembic"
    shutil.copytree(REPO_ROOT / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    column_options, after_batch, error = FAILURES[failure]
    (scripts / "versions" / "d00med000001_doomed_step.py").write_text(
        DOOMED_REVISION.format(down_revision=real_head, column_options=column_options, after_batch=after_batch)
    )

    url = f"sqlite:///{tmp_path / 'failing.db'}"
    config = alembic_config(url)
    config.set_main_option("script_location", str(scripts))
    command.upgrade(config, real_head if start == "head" else f"{real_head}-1")

    engine = migration_engine(url)
    with engine.begin() as connection:
        user_id = connection.execute(
            text("INSERT INTO users (email, password) VALUES ('a@example.com', 'x') RETURNING id")
        ).scalar_one()
        for title in ("one", "two"):
            post_id = connection.execute(
                text("INSERT INTO posts (title, content, owner_id) VALUES (:title, '', :owner) RETURNING id"),
                {"title": title, "owner": user_id},
            ).scalar_one()
            connection.execute(
                text("INSERT INTO votes (user_id, post_id) VALUES (:u, :p)"), {"u": user_id, "p": post_id}
            )
        # The rows as they stand one below head too: the columns there before the run.
        tables = set(inspect(connection).get_table_names())
        columns = {
            table: [column["name"] for column in inspect(connection).get_columns(table)]
            for table in SCHEMA_HISTORY
            if table in tables
        }
        before = {table: column_dump(connection, table, names) for table, names in columns.items()}

    # Twice: a retry must fail the same way, not on leftovers of the first attempt.
    for _ in range(2):
        with pytest.raises(error) as failed:
            command.upgrade(config, "head")
        assert "already exists" not in str(failed.value)

        assert current_revisions(engine) == [real_head]
        with engine.connect() as connection:
            leftovers = connection.execute(
                text("SELECT name FROM sqlite_master WHERE name LIKE '\\_alembic\\_tmp%' ESCAPE '\\'")
            ).all()
            assert leftovers == []
            assert "doomed" not in {column["name"] for column in inspect(connection).get_columns("posts")}
            assert {table: column_dump(connection, table, names) for table, names in columns.items()} == before
            assert "AUTOINCREMENT" in sqlite_table_sql(connection, "posts")
    engine.dispose()


# --- 7. offline SQL ------------------------------------------------------------------------


def test_offline_sql_is_a_postgresql_script() -> None:
    config = alembic_config("postgresql://user@localhost/offline_test")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    script = config.output_buffer.getvalue()
    flat = " ".join(script.split())

    for table in ("posts", "users", "votes"):
        assert f"CREATE TABLE {table} (" in script
    assert "FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE" in flat
    assert "FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE" in flat
    assert "FOREIGN KEY(post_id) REFERENCES posts (id) ON DELETE CASCADE" in flat
    assert "DEFAULT now()" in flat and "DEFAULT true" in flat  # PostgreSQL spellings

    revisions = chain()
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{revisions[0]}')" in flat
    for previous, revision in itertools.pairwise(revisions):
        assert (
            f"UPDATE alembic_version SET version_num='{revision}' WHERE alembic_version.version_num = '{previous}'"
            in flat
        )
    # Every step in transactions of its own: concurrent index builds and validations run
    # between a COMMIT and the next BEGIN, and each version update is in a transaction.
    assert flat.count("BEGIN;") == flat.count("COMMIT;") >= len(revisions)
    transaction_open = False
    for token in re.findall(
        r"BEGIN;|COMMIT;|CONCURRENTLY|VALIDATE CONSTRAINT|(?:UPDATE|INSERT INTO) alembic_version", flat
    ):
        if token == "BEGIN;":
            assert not transaction_open
            transaction_open = True
        elif token == "COMMIT;":
            assert transaction_open
            transaction_open = False
        elif token in ("CONCURRENTLY", "VALIDATE CONSTRAINT"):
            assert not transaction_open, token
        else:
            assert transaction_open, token


def test_offline_sql_takes_the_same_guards_as_an_online_upgrade() -> None:
    """A script run by hand still waits at most MIGRATION_LOCK_TIMEOUT_MS for a lock, and runs one at a time."""
    config = alembic_config("postgresql://user@localhost/offline_test")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    lines = [line.strip() for line in config.output_buffer.getvalue().splitlines() if line.strip()]
    first_begin = lines.index("BEGIN;")
    assert f"SET lock_timeout = {Settings().MIGRATION_LOCK_TIMEOUT_MS};" in lines[:first_begin]
    assert any(line.startswith("SELECT pg_advisory_lock(") for line in lines[:first_begin])
    last_commit = len(lines) - 1 - lines[::-1].index("COMMIT;")
    assert any(line.startswith("SELECT pg_advisory_unlock(") for line in lines[last_commit:])


def test_offline_sql_is_refused_on_sqlite(tmp_path: Path) -> None:
    config = alembic_config(f"sqlite:///{tmp_path / 'offline.db'}")
    config.output_buffer = io.StringIO()
    with pytest.raises(SystemExit) as refused:
        command.upgrade(config, "head", sql=True)
    assert "PostgreSQL" in str(refused.value.code)
    assert config.output_buffer.getvalue() == ""


# --- ids are never handed out twice, across table rebuilds ------------------------


@pytest.mark.parametrize("emptied", [False, True], ids=["rows-left", "table-emptied"])
def test_deleted_ids_are_not_reused_after_rebuilds(empty_database: Callable[[], str], emptied: bool) -> None:
    url = empty_database()
    config = alembic_config(url)
    revisions = chain()
    command.upgrade(config, "head")
    engine = foreign_keys_on_engine(url)
    with engine.connect() as connection:
        for n in range(1, 4):
            _insert(connection, "users", "id", email=f"u{n}@example.com", password="!")
        top_id = connection.execute(text("SELECT max(id) FROM users")).scalar_one()
        condition = "" if emptied else " WHERE id = :top"
        connection.execute(text(f"DELETE FROM users{condition}"), {"top": top_id})
    # Down past the revision that rebuilds `users` on SQLite, and up again.
    command.downgrade(config, revisions[revisions.index(UNIQUE_EMAILS_IGNORING_CASE) - 1])
    command.upgrade(config, "head")
    with engine.connect() as connection:
        new_id = _insert(connection, "users", "id", email="newcomer@example.com", password="!")[0]
    engine.dispose()
    assert new_id > top_id


def test_case_duplicate_emails_stop_the_upgrade_with_a_message(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    config = alembic_config(url)
    revisions = chain()
    lower_email_revision = revisions.index("38ab528790a7")
    command.upgrade(config, revisions[lower_email_revision - 1])
    engine = migration_engine(url)
    with engine.begin() as connection:
        _insert(connection, "users", "id", email="Ann@example.com", password="!")
        _insert(connection, "users", "id", email="ann@example.com", password="!")
    with pytest.raises(CommandError, match=r"ann@example\.com.*Merge or rename"):
        command.upgrade(config, "head")
    assert current_revisions(engine) == [revisions[lower_email_revision - 1]]
    with engine.connect() as connection:
        assert len(table_dump(connection, "users")) == 2
    engine.dispose()


# --- migrations under traffic: bounded lock waits ---------------------------------


@needs_postgresql
def test_a_migration_blocked_by_a_long_transaction_gives_up_cleanly(empty_database: Callable[[], str]) -> None:
    """A revision that needs a table's exclusive lock (38ab528790a7 drops the old unique
    constraint of `users`) asks for it in short attempts: traffic never queues behind it for
    long, and after MIGRATION_LOCK_TIMEOUT_MS without the lock the revision is rolled back."""
    url = empty_database()
    config = alembic_config(url)
    revisions = chain()
    before = revisions[revisions.index(UNIQUE_EMAILS_IGNORING_CASE) - 1]
    command.upgrade(config, before)
    dsn = driver_urls(url)[0].set(drivername="postgresql").render_as_string(hide_password=False)
    lock_timeout = Settings().MIGRATION_LOCK_TIMEOUT_MS / 1000
    with psycopg.connect(dsn) as long_reader, psycopg.connect(dsn, autocommit=True) as traffic:
        long_reader.execute("SELECT count(*) FROM users")  # holds ACCESS SHARE until it ends
        reader_waited: list[float] = []

        def read_while_the_migration_waits() -> None:
            time.sleep(0.5)
            for _ in range(10):
                started = time.perf_counter()
                traffic.execute("SELECT count(*) FROM users")
                reader_waited.append(time.perf_counter() - started)
                time.sleep(0.1)

        reader = threading.Thread(target=read_while_the_migration_waits)
        reader.start()
        started = time.perf_counter()
        with pytest.raises(CommandError, match="could not lock its table"):
            command.upgrade(config, "head")
        gave_up_after = time.perf_counter() - started
        reader.join()
        long_reader.rollback()
    assert lock_timeout <= gave_up_after < lock_timeout + 2
    # Traffic queued behind one attempt at most (0.2 s), not for as long as the long transaction lasted.
    assert reader_waited and max(reader_waited) < 0.5, reader_waited
    engine = migration_engine(url)
    assert current_revisions(engine) == [before]
    command.upgrade(config, "head")  # nothing in the way any more
    assert current_revisions(engine) == [revisions[-1]]
    engine.dispose()


# --- the grams index's pending list after a burst -----------------------------------


@needs_postgresql
def test_posts_are_vacuumed_after_every_thousand_new_posts(empty_database: Callable[[], str]) -> None:
    """At VACUUM_AFTER_NEW_POSTS and above, autovacuum takes `posts` after 1,000 new posts
    whatever the table's size (the grams index's pending list then goes into the index, which
    every search reads otherwise); one revision down, PostgreSQL's defaults again."""
    url = empty_database()
    config = alembic_config(url)
    engine = migration_engine(url)

    def storage() -> set[str]:
        with engine.connect() as connection:
            options = connection.execute(text("SELECT reloptions FROM pg_class WHERE oid = 'posts'::regclass"))
            return set(options.scalar_one() or [])

    expected = {"autovacuum_vacuum_insert_threshold=1000", "autovacuum_vacuum_insert_scale_factor=0"}
    command.upgrade(config, VACUUM_AFTER_NEW_POSTS)
    assert storage() == expected
    command.downgrade(config, "-1")
    assert storage() == set()
    command.upgrade(config, "head")
    assert expected <= storage()
    engine.dispose()
