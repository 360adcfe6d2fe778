"""Adopting a database the course app built, and handing it back (app/db/adoption.py).

A course database is built here from the facts of issue 14, with plain SQL in the order
of the course's own revisions (PostgreSQL names the constraints, as it did for the
course): users with passlib-style bcrypt hashes, posts and votes, alembic_version at
c47ecbf163d4. `alembic upgrade head` must adopt it with every row, the course's
passwords must log in through the API, and `alembic downgrade 936002196a31` must give
back a database the course's own Alembic accepts.
"""

import functools
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from conftest import needs_postgresql
from fastapi.testclient import TestClient
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import Engine, text

from app.config import Settings, driver_urls
from app.db import models  # noqa: F401  (puts every table on Base.metadata)
from app.db.adoption import (
    ADOPT_REVISION,
    ADOPTION_POINT,
    COURSE_COLUMNS,
    COURSE_HEAD,
    COURSE_REVISIONS,
    course_schema_differences,
)
from app.db.base import Base
from app.db.migrations import alembic_config, create_migration_engine, head_revision, include_object, upgrade_to_head
from app.main import create_app

FEED_INDEXES = "208054a49a86"  # index the feed and votes per post

# The course app's chain, step by step, as PostgreSQL runs it (names left to PostgreSQL,
# except the one the course gives: post_users_fk).
COURSE_SCHEMA_SQL = (
    "CREATE TABLE posts (id SERIAL NOT NULL, title VARCHAR NOT NULL, PRIMARY KEY (id))",
    "ALTER TABLE posts ADD COLUMN content VARCHAR NOT NULL",
    "CREATE TABLE users (id SERIAL NOT NULL, email VARCHAR NOT NULL, password VARCHAR NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL, PRIMARY KEY (id), UNIQUE (email))",
    "ALTER TABLE posts ADD COLUMN owner_id INTEGER NOT NULL",
    "ALTER TABLE posts ADD CONSTRAINT post_users_fk FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE",
    "ALTER TABLE posts ADD COLUMN published BOOLEAN DEFAULT 'TRUE' NOT NULL",
    "ALTER TABLE posts ADD COLUMN created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW() NOT NULL",
    "CREATE TABLE votes (user_id INTEGER NOT NULL, post_id INTEGER NOT NULL, "
    "FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE, "
    "FOREIGN KEY(post_id) REFERENCES posts (id) ON DELETE CASCADE, PRIMARY KEY (user_id, post_id))",
    "ALTER TABLE users ADD COLUMN phone_number VARCHAR",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
)

COURSE_USERS = {
    "ann@example.com": "ann's course password",
    "Bob@Example.com": "bob's course password",
    "cy@example.com": "cy's course password",
}
COURSE_POSTS = (
    # title, owner, published, voters
    ("Hello from the course", "ann@example.com", True, ("ann@example.com", "Bob@Example.com", "cy@example.com")),
    ("Bob's thoughts", "Bob@Example.com", True, ("ann@example.com",)),
    ("Cy's draft", "cy@example.com", False, ("cy@example.com",)),
    ("Nobody voted", "ann@example.com", True, ()),
)


def migration_engine(url: str) -> Engine:
    return create_migration_engine(driver_urls(url)[0])


def build_course_database(url: str, *, version: str = COURSE_HEAD, rounds: int = 4) -> None:
    """The course app's database at `version`, with its users, posts and votes."""
    hasher = BcryptHasher(rounds=rounds)  # passlib's format: $2b$<rounds>$...
    engine = migration_engine(url)
    with engine.begin() as connection:
        for statement in COURSE_SCHEMA_SQL:
            connection.exec_driver_sql(statement)
        connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": version})
        ids: dict[str, int] = {}
        for email, password in COURSE_USERS.items():
            ids[email] = connection.execute(
                text("INSERT INTO users (email, password) VALUES (:email, :hash) RETURNING id"),
                {"email": email, "hash": hasher.hash(password)},
            ).scalar_one()
        connection.execute(
            text("INSERT INTO users (email, password, phone_number) VALUES ('dee@example.com', :hash, '+441234567')"),
            {"hash": hasher.hash("dee's course password")},
        )
        for title, owner, published, voters in COURSE_POSTS:
            post_id = connection.execute(
                text(
                    "INSERT INTO posts (title, content, owner_id, published) "
                    "VALUES (:title, :content, :owner, :published) RETURNING id"
                ),
                {"title": title, "content": f"content of {title}", "owner": ids[owner], "published": published},
            ).scalar_one()
            for voter in voters:
                connection.execute(
                    text("INSERT INTO votes (user_id, post_id) VALUES (:u, :p)"), {"u": ids[voter], "p": post_id}
                )
    engine.dispose()


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = migration_engine(url)
    with engine.connect() as connection:
        # The course's columns (later revisions may add others, with their own values).
        tables = {
            table: sorted(tuple(row) for row in connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}")))
            for table, columns in COURSE_COLUMNS.items()
        }
    engine.dispose()
    return tables


def catalog(url: str) -> list[tuple[Any, ...]]:
    """Every relation, column and constraint, and the version: what "nothing changed" compares."""
    engine = migration_engine(url)
    with engine.connect() as connection:
        rows = [
            *connection.execute(
                text(
                    "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                    "FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1, 3"
                )
            ),
            *connection.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint ORDER BY 1, 2")),
            *connection.execute(text("SELECT version_num FROM alembic_version")),
        ]
    engine.dispose()
    return [tuple(row) for row in rows]


def current(url: str) -> list[str]:
    engine = migration_engine(url)
    with engine.connect() as connection:
        heads = sorted(MigrationContext.configure(connection).get_current_heads())
    engine.dispose()
    return heads


def constraint_names(url: str) -> set[str]:
    engine = migration_engine(url)
    with engine.connect() as connection:
        names = {
            row[0]
            for row in connection.execute(
                text(
                    "SELECT conname FROM pg_constraint WHERE conrelid IN "
                    "('posts'::regclass, 'users'::regclass, 'votes'::regclass)"
                )
            )
        }
    engine.dispose()
    return names


def assert_models_match(url: str) -> None:
    engine = migration_engine(url)
    with engine.connect() as connection:
        opts = {
            "compare_server_default": True,
            "compare_type": True,
            "include_object": functools.partial(include_object, dialect=connection.dialect.name),
        }
        assert compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata) == []
    engine.dispose()
    command.check(alembic_config(url))


@pytest.fixture
def course_database(empty_database: Callable[[], str]) -> str:
    url = empty_database()
    build_course_database(url)
    return url


# --- adoption ----------------------------------------------------------------------


@needs_postgresql
def test_a_course_database_is_adopted_with_every_row_and_its_passwords(course_database: str) -> None:
    url = course_database
    before = dump(url)
    upgrade_to_head(url)  # what `python -m app` and `alembic upgrade head` run

    assert current(url) == [head_revision()]
    assert dump(url) == before  # every user (hashes too), post and vote, as they were
    assert constraint_names(url) == {
        "pk_posts",
        "pk_users",
        "pk_votes",
        "fk_posts_owner_id_users",
        "fk_votes_user_id_users",
        "fk_votes_post_id_posts",
    }
    assert_models_match(url)  # `alembic check` is clean

    settings = Settings(DATABASE_URL=url)
    with TestClient(create_app(settings)) as client:
        tokens = {}
        for email, password in COURSE_USERS.items():
            response = client.post("/login", data={"username": email, "password": password})
            assert response.status_code == 200, response.text
            tokens[email] = response.json()["access_token"]
        assert client.post("/login", data={"username": "ann@example.com", "password": "wrong"}).status_code == 401

        feed = client.get("/posts/", headers={"Authorization": f"Bearer {tokens['cy@example.com']}"})
        assert feed.status_code == 200, feed.text
        seen = {item["Post"]["title"]: (item["Post"]["owner"]["email"], item["votes"]) for item in feed.json()}
        # Cy sees the published posts and their own draft, with the course's vote counts.
        assert seen == {title: (owner, len(voters)) for title, owner, _published, voters in COURSE_POSTS}
        ann = client.get("/posts/", headers={"Authorization": f"Bearer {tokens['ann@example.com']}"})
        assert "Cy's draft" not in {item["Post"]["title"] for item in ann.json()}

    # A successful login replaced the course's bcrypt hash by Argon2id; the others kept theirs.
    hashes = {email: password for _id, email, password, *_ in dump(url)["users"]}
    assert hashes["ann@example.com"].startswith("$argon2id$")
    assert hashes["dee@example.com"].startswith("$2b$04$")


@needs_postgresql
def test_the_course_cost_of_bcrypt_logs_in_too(empty_database: Callable[[], str]) -> None:
    """One account with the course's real cost ($2b$12$, passlib's default), end to end."""
    url = empty_database()
    build_course_database(url, rounds=12)
    upgrade_to_head(url)
    with TestClient(create_app(Settings(DATABASE_URL=url))) as client:
        response = client.post(
            "/login", data={"username": "ann@example.com", "password": COURSE_USERS["ann@example.com"]}
        )
        assert response.status_code == 200, response.text


@needs_postgresql
def test_stepping_through_an_adoption_shows_one_chain(course_database: str) -> None:
    url = course_database
    config = alembic_config(url)
    # Read only: `alembic current` names Agora's revision with the course's schema, changes nothing.
    before = catalog(url)
    output = config.stdout = io.StringIO()
    command.current(config)
    assert ADOPTION_POINT in output.getvalue()
    assert catalog(url) == before

    command.upgrade(config, "+1")  # the feed's indexes, on the course's names
    assert current(url) == [FEED_INDEXES]
    assert "post_users_fk" in constraint_names(url)
    command.upgrade(config, "+1")
    assert current(url) == [ADOPT_REVISION]
    assert "post_users_fk" not in constraint_names(url)
    command.upgrade(config, "head")
    assert current(url) == [head_revision()]
    assert_models_match(url)


@needs_postgresql
def test_an_adoption_cut_short_is_finished_by_the_next_upgrade(course_database: str) -> None:
    """The feed's indexes are built outside a transaction, which commits the rewritten
    alembic_version first: if the build stops, the database says 936002196a31 with the
    course's names and an INVALID index, and the next upgrade finishes the job."""
    url = course_database
    engine = migration_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '936002196a31'")
        # An interrupted concurrent build leaves an INVALID index behind; this one stands for it.
        connection.exec_driver_sql("CREATE INDEX ix_votes_post_id ON votes (post_id)")
        connection.exec_driver_sql(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_votes_post_id'::regclass"
        )
    engine.dispose()
    before = dump(url)
    upgrade_to_head(url)
    assert current(url) == [head_revision()]
    assert dump(url) == before
    engine = migration_engine(url)
    with engine.connect() as connection:
        invalid = connection.execute(text("SELECT count(*) FROM pg_index WHERE NOT indisvalid")).scalar_one()
    engine.dispose()
    assert invalid == 0
    assert_models_match(url)


# --- the way back ------------------------------------------------------------------

COURSE_ENV = """\
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

COURSE_SCRIPT = '''\
"""{message}"""

revision = {revision!r}
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def course_alembic(tmp_path: Path, url: str) -> Config:
    """The course app's own Alembic, as far as alembic_version goes: its seven revision ids."""
    scripts = tmp_path / "course_alembic"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(COURSE_ENV)
    shutil.copy(Path(__file__).parents[1] / "alembic" / "script.py.mako", scripts / "script.py.mako")
    down = None
    for revision, message in COURSE_REVISIONS:
        (scripts / "versions" / f"{revision}.py").write_text(
            COURSE_SCRIPT.format(message=message, revision=revision, down_revision=down)
        )
        down = revision
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", driver_urls(url)[0].render_as_string(hide_password=False))
    return config


@needs_postgresql
def test_the_way_back_hands_the_database_to_the_course_app(course_database: str, tmp_path: Path) -> None:
    url = course_database
    original = dump(url)
    config = alembic_config(url)
    command.upgrade(config, "head")
    with TestClient(create_app(Settings(DATABASE_URL=url))) as client:
        login = client.post("/login", data={"username": "cy@example.com", "password": COURSE_USERS["cy@example.com"]})
        token = login.json()["access_token"]
        created = client.post(
            "/posts/", json={"title": "Written on Agora", "content": "x"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert created.status_code == 201, created.text

    # Past the course's point is refused before anything runs.
    before = catalog(url)
    with pytest.raises(CommandError, match="no lower than the course's own"):
        command.downgrade(config, "base")
    assert catalog(url) == before

    command.downgrade(config, ADOPTION_POINT)
    assert current(url) == [COURSE_HEAD]
    engine = migration_engine(url)
    with engine.connect() as connection:
        assert course_schema_differences(connection) == []
        marker = connection.execute(
            text("SELECT obj_description('alembic_version'::regclass, 'pg_class')")
        ).scalar_one_or_none()
    engine.dispose()
    assert marker is None
    back = dump(url)
    assert len(back["posts"]) == len(original["posts"]) + 1  # what was written on Agora stays
    assert back["votes"] == original["votes"]

    # The course's own Alembic knows where it stands and has nothing to do.
    course = course_alembic(tmp_path, url)
    output = course.stdout = io.StringIO()
    command.current(course)
    assert COURSE_HEAD in output.getvalue()
    command.upgrade(course, "head")
    assert current(url) == [COURSE_HEAD]

    # Agora goes no lower, and changes nothing trying.
    before = catalog(url)
    with pytest.raises(CommandError, match="no lower than the course's own"):
        command.downgrade(config, "-1")
    assert catalog(url) == before

    # And adopts it again.
    command.upgrade(config, "head")
    assert current(url) == [head_revision()]
    assert_models_match(url)


@needs_postgresql
def test_an_agora_database_goes_down_past_the_adoption_point_as_before(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, ADOPTION_POINT)
    assert current(url) == [ADOPTION_POINT]
    command.downgrade(config, "base")
    assert current(url) == []


# --- refusals --------------------------------------------------------------------------


def refused(url: str, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        upgrade_to_head(url)


@needs_postgresql
@pytest.mark.parametrize("revision", [revision for revision, _ in COURSE_REVISIONS[:-1]])
def test_an_older_course_database_is_sent_to_the_course_app_first(
    empty_database: Callable[[], str], revision: str
) -> None:
    url = empty_database()
    build_course_database(url, version=revision)
    before = catalog(url)
    refused(url, f"revision {revision} .*Bring it to {COURSE_HEAD} with the course app first")
    assert catalog(url) == before


@needs_postgresql
def test_a_course_database_that_differs_is_refused_with_the_differences(course_database: str) -> None:
    url = course_database
    engine = migration_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE INDEX votes_post_id_idx ON votes (post_id)")
        connection.exec_driver_sql("ALTER TABLE users DROP COLUMN phone_number")
        connection.exec_driver_sql("ALTER TABLE posts ALTER COLUMN published DROP DEFAULT")
        connection.exec_driver_sql("ALTER TABLE votes RENAME CONSTRAINT votes_pkey TO votes_key")
    engine.dispose()
    before = catalog(url)
    with pytest.raises(CommandError) as refusal:
        upgrade_to_head(url)
    message = str(refusal.value)
    for expected in (
        "index votes_post_id_idx on votes",
        "column users.phone_number is missing",
        "column posts.published is boolean NOT NULL, the course's is boolean NOT NULL DEFAULT true",
        "constraint votes_pkey on votes (PRIMARY KEY (user_id, post_id)) is missing",
        "constraint votes_key on votes (PRIMARY KEY (user_id, post_id)) is not the course's",
        "changed nothing",
    ):
        assert expected in message, message
    assert catalog(url) == before


@needs_postgresql
def test_an_unknown_revision_is_refused(course_database: str) -> None:
    url = course_database
    engine = migration_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'feedfacecafe'")
    engine.dispose()
    before = catalog(url)
    refused(url, "revision feedfacecafe, which neither Agora's migration chain nor the course app's knows")
    assert catalog(url) == before


def test_tables_without_a_version_are_refused(empty_database: Callable[[], str]) -> None:
    """Any backend: a database with tables Alembic never recorded is nobody's we know."""
    url = empty_database()
    engine = migration_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE posts (id INTEGER PRIMARY KEY, title VARCHAR)")
        connection.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    engine.dispose()
    refused(url, r"tables \(notes, posts\) and no alembic_version table")
    engine = migration_engine(url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM posts").scalar_one() == 0
        tables = set(
            connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                if engine.dialect.name == "sqlite"
                else "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).scalars()
        )
    engine.dispose()
    assert tables == {"posts", "notes"}


@pytest.fixture
def sqlite_course_version(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'course.db'}"
    engine = migration_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.exec_driver_sql(f"INSERT INTO alembic_version VALUES ('{COURSE_HEAD}')")
    engine.dispose()
    yield url


def test_a_course_version_on_sqlite_is_refused(sqlite_course_version: str) -> None:
    refused(sqlite_course_version, "course app databases are PostgreSQL databases")
