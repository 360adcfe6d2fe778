"""What a revision may do to a table that has rows and serves traffic (PostgreSQL).

README, "Writing a new revision", lists the rules. Here:
- the rules, checked on the PostgreSQL script (`--sql`) of every revision, up and down:
  a statement on a table the revision did not create must not build an index without
  CONCURRENTLY, add a foreign key or a check without NOT VALID (nor validate it in the
  same transaction), add a unique or primary key without USING INDEX, change a column's
  type, add a NOT NULL column without a constant default, or SET NOT NULL without a
  validated check; and the rules catch a revision that breaks them;
- live: no revision rewrites a table (PostgreSQL >= 11 keeps constant defaults in the
  catalog), an index revision lets INSERTs and SELECTs through while another
  transaction holds the table, and an index left INVALID by an interrupted build is
  built again.
"""

import io
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from conftest import needs_postgresql
from sqlalchemy import text

from app.config import REPO_ROOT, driver_urls
from app.db.migrations import alembic_config, create_migration_engine

OFFLINE_URL = "postgresql://user@localhost/offline_test"

# Defaults PostgreSQL (>= 11) stores once, without rewriting the table: literals, and
# now() / CURRENT_TIMESTAMP (the time of the ALTER, the same for every existing row).
CONSTANT_DEFAULT = re.compile(
    r"DEFAULT\s+('(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false|NULL|now\(\)|CURRENT_TIMESTAMP)(?:::[\w ]+)?",
    re.IGNORECASE,
)


def chain(config: Config | None = None) -> list[str]:
    scripts = ScriptDirectory.from_config(config or alembic_config(OFFLINE_URL))
    return [script.revision for script in reversed(list(scripts.walk_revisions("base", "heads")))]


def offline_sql(config: Config, start: str | None, end: str | None, *, up: bool = True) -> str:
    config.output_buffer = io.StringIO()
    if up:
        command.upgrade(config, f"{start}:{end}" if start else str(end), sql=True)
    else:
        command.downgrade(config, f"{start}:{end or 'base'}", sql=True)
    return config.output_buffer.getvalue()


def statements(sql: str) -> list[str]:
    """The script's statements, comments dropped, whitespace flattened."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [" ".join(part.split()) for part in "\n".join(lines).split(";\n") if part.strip()]


def violations(sql: str) -> list[str]:
    """Where a revision's PostgreSQL script would block traffic on a table that has rows."""
    found: list[str] = []
    created: set[str] = set()
    in_transaction = False
    not_valid_here: set[str] = set()  # constraints added NOT VALID in the open transaction
    validated = False
    for statement in statements(sql):
        upper = statement.upper().rstrip(";")
        if upper == "BEGIN":
            in_transaction, not_valid_here = True, set()
            continue
        if upper == "COMMIT":
            in_transaction = False
            continue
        if match := re.match(r"CREATE TABLE (\w+)", statement, re.IGNORECASE):
            created.add(match[1].lower())
            continue
        table_match = re.match(r"(?:CREATE (?:UNIQUE )?INDEX .*? ON|ALTER TABLE) (?:ONLY )?(\w+)", statement, re.I)
        if table_match is None or table_match[1].lower() in created:
            continue
        table = table_match[1]
        if re.match(r"CREATE (UNIQUE )?INDEX", upper) and "CONCURRENTLY" not in upper:
            found.append(f"index built without CONCURRENTLY on {table}: {statement}")
        for added in re.finditer(r"ADD (?:CONSTRAINT (\w+) )?(FOREIGN KEY|CHECK|UNIQUE|PRIMARY KEY)", upper):
            kind = added[2]
            if kind in ("FOREIGN KEY", "CHECK"):
                if "NOT VALID" not in upper:
                    found.append(f"{kind.lower()} added without NOT VALID on {table}: {statement}")
                elif added[1]:
                    not_valid_here.add(added[1])
            elif "USING INDEX" not in upper:
                found.append(f"{kind.lower()} built under an exclusive lock on {table}: {statement}")
        if validate := re.search(r"VALIDATE CONSTRAINT (\w+)", upper):
            validated = True
            if in_transaction and validate[1] in not_valid_here:
                found.append(f"{validate[1]} validated in the transaction that added it: {statement}")
        if re.search(r"ALTER COLUMN \w+ (SET DATA )?TYPE ", upper):
            found.append(f"column type changed (rewrites {table}): {statement}")
        for column in re.finditer(r"ADD COLUMN (?:IF NOT EXISTS )?(\w+) ([^,]*)", statement, re.IGNORECASE):
            definition = column[2]
            default = re.search(r"DEFAULT\s+\S", definition, re.IGNORECASE)
            if default and not CONSTANT_DEFAULT.search(definition):
                found.append(f"column {column[1]} with a volatile default (rewrites {table}): {statement}")
            elif "NOT NULL" in definition.upper() and not default:
                found.append(f"NOT NULL column {column[1]} without a constant default on {table}: {statement}")
        if "SET NOT NULL" in upper and not validated:
            found.append(f"SET NOT NULL without a validated CHECK (scans {table} under its lock): {statement}")
    return found


# --- the rules, on every revision ---------------------------------------------------------


@pytest.mark.parametrize("direction", ["upgrade", "downgrade"])
def test_no_revision_blocks_traffic_on_an_existing_table(direction: str) -> None:
    config = alembic_config(OFFLINE_URL)
    revisions = chain(config)
    broken = {}
    for previous, revision in zip([None, *revisions], revisions, strict=False):
        if direction == "upgrade":
            sql = offline_sql(config, previous, revision)
        else:
            sql = offline_sql(config, revision, previous, up=False)
        if found := violations(sql):
            broken[revision] = found
    assert broken == {}


@pytest.mark.parametrize(
    ("statement", "complaint"),
    [
        ("CREATE INDEX ix_posts_title ON posts (title)", "without CONCURRENTLY"),
        ("CREATE UNIQUE INDEX ix_users_phone ON users (phone_number)", "without CONCURRENTLY"),
        (
            "ALTER TABLE votes ADD CONSTRAINT fk_x FOREIGN KEY(post_id) REFERENCES posts (id)",
            "foreign key added without NOT VALID",
        ),
        ("ALTER TABLE posts ADD CONSTRAINT ck_x CHECK (length(title) > 0)", "check added without NOT VALID"),
        ("ALTER TABLE users ADD CONSTRAINT uq_x UNIQUE (phone_number)", "under an exclusive lock"),
        ("ALTER TABLE posts ALTER COLUMN title TYPE TEXT", "column type changed"),
        ("ALTER TABLE posts ADD COLUMN rank INTEGER NOT NULL", "NOT NULL column rank without a constant default"),
        ("ALTER TABLE posts ADD COLUMN seen TIMESTAMP DEFAULT clock_timestamp()", "volatile default"),
        ("ALTER TABLE posts ALTER COLUMN content SET NOT NULL", "SET NOT NULL without a validated CHECK"),
        (
            "ALTER TABLE posts ADD CONSTRAINT fk_y FOREIGN KEY(owner_id) REFERENCES users (id) NOT VALID;\n"
            "ALTER TABLE posts VALIDATE CONSTRAINT fk_y",
            "validated in the transaction that added it",
        ),
    ],
)
def test_the_rules_catch_what_blocks(statement: str, complaint: str) -> None:
    script = f"BEGIN;\n\n{statement};\n\nCOMMIT;\n"
    found = violations(script)
    assert any(complaint in message for message in found), found


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE notes (id SERIAL NOT NULL, PRIMARY KEY (id));\n\nCREATE INDEX ix_notes_id ON notes (id)",
        "ALTER TABLE posts ADD COLUMN rank INTEGER DEFAULT 0 NOT NULL",
        "ALTER TABLE posts ADD COLUMN seen TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL",
        "ALTER TABLE posts ADD COLUMN note VARCHAR",
        "ALTER TABLE users ADD CONSTRAINT uq_x UNIQUE USING INDEX uq_x",
    ],
)
def test_the_rules_let_harmless_changes_through(statement: str) -> None:
    assert violations(f"BEGIN;\n\n{statement};\n\nCOMMIT;\n") == []


BAD_REVISION = '''\
"""index titles (test only)

How it was made: hand-written.
"""

from alembic import op

revision = "ba0000000001"
down_revision = {down_revision!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_posts_title", "posts", ["title"])


def downgrade() -> None:
    op.drop_index("ix_posts_title", table_name="posts")
'''


def test_a_plain_create_index_in_a_new_revision_is_caught(tmp_path: Path) -> None:
    scripts = tmp_path / "alembic"
    shutil.copytree(REPO_ROOT / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = chain()[-1]
    (scripts / "versions" / "ba0000000001_index_titles.py").write_text(BAD_REVISION.format(down_revision=head))
    config = alembic_config(OFFLINE_URL)
    config.set_main_option("script_location", str(scripts))
    found = violations(offline_sql(config, head, "ba0000000001"))
    assert found == ["index built without CONCURRENTLY on posts: CREATE INDEX ix_posts_title ON posts (title)"]


# --- live, on PostgreSQL -------------------------------------------------------------------


def dsn_of(url: str) -> str:
    return driver_urls(url)[0].set(drivername="postgresql").render_as_string(hide_password=False)


@needs_postgresql
def test_no_revision_rewrites_a_table(empty_database: Callable[[], str]) -> None:
    """Each table keeps its file (relfilenode) through every later revision: columns with
    defaults are added in the catalog only, SET NOT NULL uses a validated check."""
    url = empty_database()
    config = alembic_config(url)
    engine = create_migration_engine(driver_urls(url)[0])
    rewritten = []
    for revision in chain():
        with engine.begin() as connection:
            before: dict[str, int] = dict(
                connection.execute(
                    text("SELECT relname, relfilenode FROM pg_class WHERE relname IN ('posts', 'users', 'votes')")
                ).all()
            )
            if "users" in before and "posts" in before:
                columns = {
                    row[0]
                    for row in connection.execute(
                        text("SELECT attname FROM pg_attribute WHERE attrelid = 'posts'::regclass")
                    )
                }
                if "owner_id" in columns:
                    user = connection.execute(
                        text("INSERT INTO users (email, password) VALUES (:e, '!') RETURNING id"),
                        {"e": f"{revision}@example.com"},
                    ).scalar_one()
                    connection.execute(
                        text("INSERT INTO posts (title, content, owner_id) VALUES ('t', 'c', :u)"), {"u": user}
                    )
        command.upgrade(config, revision)
        with engine.connect() as connection:
            after: dict[str, int] = dict(
                connection.execute(
                    text("SELECT relname, relfilenode FROM pg_class WHERE relname IN ('posts', 'users', 'votes')")
                ).all()
            )
        rewritten += [f"{revision} rewrote {table}" for table in before if after.get(table) != before[table]]
    engine.dispose()
    assert rewritten == []


@needs_postgresql
@pytest.mark.parametrize(
    "start",
    ["936002196a31", "097be2068e8f", "38ab528790a7"],
    ids=["before-feed-indexes", "before-email-index", "before-trigram-index"],
)
def test_index_revisions_let_traffic_through_a_held_table(empty_database: Callable[[], str], start: str) -> None:
    """Another transaction has written to `posts` and stays open for 2.5 s while the upgrade
    runs. A plain CREATE INDEX would queue for its lock and every INSERT behind it; built
    concurrently, INSERTs and SELECTs go on (the build waits for that transaction alone)."""
    url = empty_database()
    config = alembic_config(url)
    command.upgrade(config, start)
    dsn = dsn_of(url)
    with psycopg.connect(dsn, autocommit=True) as setup:
        user = setup.execute(
            "INSERT INTO users (email, password) VALUES ('a@example.com', '!') RETURNING id"
        ).fetchone()
        assert user is not None
        setup.execute(
            "INSERT INTO posts (title, content, owner_id) "
            "SELECT 'title ' || i, '', %s FROM generate_series(1, 20000) i",
            (user[0],),
        )
    holding = 2.5
    latencies: dict[str, list[float]] = {"insert": [], "select": []}
    stop = threading.Event()
    errors: list[BaseException] = []

    def hold_the_table() -> None:
        with psycopg.connect(dsn) as held:
            held.execute("INSERT INTO posts (title, content, owner_id) VALUES ('held', '', %s)", (user[0],))
            time.sleep(holding)
            held.commit()

    def traffic(kind: str, sql: str) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as connection:
                while not stop.is_set():
                    started = time.perf_counter()
                    connection.execute(sql, (user[0],) if "%s" in sql else None)
                    latencies[kind].append(time.perf_counter() - started)
                    time.sleep(0.02)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=hold_the_table),
        threading.Thread(
            target=traffic, args=("insert", "INSERT INTO posts (title, content, owner_id) VALUES ('x', '', %s)")
        ),
        threading.Thread(
            target=traffic,
            args=("select", "SELECT count(*) FROM users JOIN posts ON posts.owner_id = users.id WHERE posts.id < 100"),
        ),
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.perf_counter()
    command.upgrade(config, "head")
    took = time.perf_counter() - started
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert took > holding - 0.5  # the build did wait for the open transaction
    assert latencies["insert"] and latencies["select"]
    assert max(latencies["insert"]) < 1.0, sorted(latencies["insert"])[-3:]
    assert max(latencies["select"]) < 1.0, sorted(latencies["select"])[-3:]
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,)


@needs_postgresql
def test_an_index_left_invalid_by_an_interrupted_build_is_built_again(empty_database: Callable[[], str]) -> None:
    url = empty_database()
    config = alembic_config(url)
    command.upgrade(config, "936002196a31")
    with psycopg.connect(dsn_of(url), autocommit=True) as connection:
        connection.execute("INSERT INTO users (email, password) VALUES ('a@example.com', '!')")
        connection.execute("INSERT INTO posts (title, content, owner_id) VALUES ('a', '', 1), ('b', '', 1)")
        # A concurrent build that fails (here: not unique) leaves an INVALID index with the name.
        with pytest.raises(psycopg.errors.UniqueViolation):
            connection.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_posts_owner_id ON posts (owner_id)")
        assert connection.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_posts_owner_id'::regclass"
        ).fetchone() == (False,)
    command.upgrade(config, "head")
    with psycopg.connect(dsn_of(url)) as connection:
        row = connection.execute(
            "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = 'ix_posts_owner_id'::regclass"
        ).fetchone()
    assert row == (True, False)
    command.check(config)
