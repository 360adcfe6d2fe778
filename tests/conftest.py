"""Test configuration.

The suite runs on SQLite by default, and on the database named by TEST_DATABASE_URL
when it is set (PostgreSQL in CI). The schema is always built by the Alembic chain.
The environment is set here, before `app` is imported: `app.main.app` is built from it
at import.
"""

import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url

_SQLITE_DIR = Path(tempfile.mkdtemp(prefix="agora-tests-"))
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{_SQLITE_DIR / 'test.db'}"


def _looks_like_a_test_database(url: URL) -> bool:
    if url.get_backend_name() == "sqlite":
        return True
    return "test" in (url.database or "")


if not _looks_like_a_test_database(make_url(TEST_DATABASE_URL)):
    raise pytest.UsageError(
        f"Refusing to run: the tests wipe their database, and {make_url(TEST_DATABASE_URL).database!r} "
        "does not look like a test database (its name must contain 'test')."
    )

os.environ.update(
    ENVIRONMENT="test",
    DATABASE_URL=TEST_DATABASE_URL,
    SECRET_KEY="test-secret-key-that-is-long-enough-for-hs256-0123456789",
    # Cheap hashing: real Argon2id, minimal cost.
    ARGON2_TIME_COST="1",
    ARGON2_MEMORY_COST_KIB="8",
    ARGON2_PARALLELISM="1",
    # Tests of other things log in many times from one address; tests/test_hardening.py
    # builds apps with the limits on.
    RATE_LIMIT_ENABLED="false",
)

from app.config import driver_urls  # noqa: E402
from app.db.backends import Prepared  # noqa: E402
from app.db.grams import as_array_literal, title_grams  # noqa: E402
from app.db.migrations import create_migration_engine, upgrade_to_head  # noqa: E402

IS_POSTGRESQL = make_url(TEST_DATABASE_URL).get_backend_name() == "postgresql"
needs_postgresql = pytest.mark.skipif(not IS_POSTGRESQL, reason="needs TEST_DATABASE_URL=postgresql://...")

# Children first, so deleting never trips a foreign key.
TABLES = ("votes", "posts", "users", "revoked_tokens")


def _admin_url() -> URL:
    return driver_urls(TEST_DATABASE_URL)[0]


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of brand-new empty databases on the backend under test (dropped afterwards)."""
    created: list[str] = []

    def make() -> str:
        if not IS_POSTGRESQL:
            return f"sqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        base = make_url(TEST_DATABASE_URL)
        name = f"{base.database}_{uuid.uuid4().hex[:8]}"
        engine = create_migration_engine(_admin_url()).execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        created.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    yield make

    if created:
        engine = create_migration_engine(_admin_url()).execution_options(isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for name in created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


def reset_schema() -> None:
    """Drop everything in the test database, then build it with the Alembic chain."""
    engine = create_migration_engine(_admin_url())
    with engine.begin() as connection:
        if IS_POSTGRESQL:
            connection.exec_driver_sql("DROP SCHEMA public CASCADE")
            connection.exec_driver_sql("CREATE SCHEMA public")
        else:
            for table in (*TABLES, "alembic_version"):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()
    upgrade_to_head(TEST_DATABASE_URL)


def empty_tables() -> None:
    engine = create_migration_engine(_admin_url())
    with engine.begin() as connection:
        if IS_POSTGRESQL:
            connection.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        else:
            for table in TABLES:
                connection.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture(scope="session")
def migrated_database() -> str:
    """The test database, built from nothing by the migration chain, once per run."""
    reset_schema()
    return TEST_DATABASE_URL


# --- the API -------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def _session_client(migrated_database: str) -> Iterator[TestClient]:
    # One client (one event loop, one connection pool) for the whole run.
    from app.main import app

    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(_session_client: TestClient) -> Iterator[TestClient]:
    """The API over HTTP, on a database that is empty again after each test."""
    yield _session_client
    empty_tables()


@pytest.fixture
def live_server(client: TestClient) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, on the suite's test database; yields its base URL.

    It runs with the protocol options of `python -m app` (app/serving.py) and serves a fresh
    app from the same factory as `app.main.app`: that object's lifespan is already running
    under the session's TestClient, and a second one would replace its engine. Depending on
    `client` means the tables are emptied after the test, once the server is gone.
    """
    from app.http.serving import UVICORN_OPTIONS
    from app.main import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound before the server starts: no race for the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(),
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        **UVICORN_OPTIONS,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn-e2e", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            pytest.fail("the uvicorn server did not start (see the log above)")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "the uvicorn server did not stop"


@pytest.fixture
def app_with(client: TestClient) -> Iterator[Callable[..., TestClient]]:
    """A factory of apps with other settings, on the same test database as `client`."""
    from app.config import Settings
    from app.main import create_app

    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(DATABASE_URL=overrides.pop("DATABASE_URL", TEST_DATABASE_URL), **overrides)
        other = TestClient(create_app(settings))
        other.__enter__()
        opened.append(other)
        return other

    yield make
    for other in opened:
        other.__exit__(None, None, None)


@dataclass
class Account:
    id: int
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_account(client: TestClient) -> Callable[..., Account]:
    """Register and log in a new account through the API."""
    counter = iter(range(1, 1_000_000))

    def make(email: str | None = None, password: str = PASSWORD) -> Account:
        email = email or f"user{next(counter)}@example.com"
        created = client.post("/users/", json={"email": email, "password": password})
        assert created.status_code == 201, created.text
        login = client.post("/login", data={"username": email, "password": password})
        assert login.status_code == 200, login.text
        return Account(created.json()["id"], email, password, login.json()["access_token"])

    return make


@pytest.fixture
def sql() -> Iterator[Connection]:
    """A direct connection to the test database, to arrange or inspect rows behind the API's back."""
    engine = create_engine(driver_urls(TEST_DATABASE_URL)[0], isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        if not IS_POSTGRESQL:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        yield connection
    engine.dispose()


def write_title_grams(sql: Connection) -> None:
    """PostgreSQL: give every folded post the `title_grams` the API would have written, with the
    bucket of its `created_at` as it is now (for posts a test wrote or re-dated by SQL)."""
    if not IS_POSTGRESQL:
        return
    rows = sql.execute(text("SELECT id, title_folded, created_at FROM posts WHERE title_folded IS NOT NULL")).all()
    sql.execute(
        text(
            "UPDATE posts SET title_grams = CAST(written.grams AS INTEGER[]) "
            "FROM unnest(CAST(:ids AS INTEGER[]), CAST(:grams AS VARCHAR[])) AS written(id, grams) "
            "WHERE posts.id = written.id"
        ),
        {
            "ids": [row[0] for row in rows],
            "grams": [as_array_literal(title_grams(row[1], row[2])) for row in rows],
        },
    )


def plans_made(sql: Connection, prepared: Prepared, executions: Iterable[Mapping[str, object]]) -> tuple[int, int]:
    """PostgreSQL: prepare `prepared` on one connection, execute it once for each of `executions`
    (SQL literals by parameter name), and say how many generic and custom plans it was run on."""
    connection = sql.connection.driver_connection  # psycopg itself: no parameters, so "%" is plain text
    assert connection is not None
    connection.execute(f"PREPARE counted AS {prepared.asyncpg_sql}")
    try:
        for values in executions:
            arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
            connection.execute(f"EXECUTE counted ({arguments})").fetchall()
        found = connection.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'counted'"
        ).fetchone()
    finally:
        connection.execute("DEALLOCATE counted")
    assert found is not None
    return int(found[0]), int(found[1])


def explain_execute(sql: Connection, prepared: Prepared, values: Mapping[str, object], mode: str) -> list[str]:
    """PostgreSQL: EXPLAIN of the plan of `prepared` for `values` (SQL literals by parameter name)
    under plan_cache_mode `mode` (force_generic_plan or force_custom_plan), line by line."""
    connection = sql.connection.driver_connection  # psycopg itself: no parameters, so "%" is plain text
    assert connection is not None
    arguments = ", ".join(str(values[name]) for name in prepared.parameter_names)
    connection.execute(f"SET plan_cache_mode = {mode}")
    connection.execute(f"PREPARE explained AS {prepared.asyncpg_sql}")
    try:
        return [row[0] for row in connection.execute(f"EXPLAIN EXECUTE explained ({arguments})")]
    finally:
        connection.execute("DEALLOCATE explained")
        connection.execute("RESET plan_cache_mode")


def plan_estimates(plan: list[str]) -> list[str]:
    """What a plan (EXPLAIN's lines) expects, node by node: its kind and rows, without costs."""
    nodes = [re.match(r"\s*(?:->\s*)?([^(]+?)\s*\(cost=[^ ]+ rows=(\d+)", line) for line in plan]
    return [f"{node[1]} rows={node[2]}" for node in nodes if node]


@pytest.fixture
def statements(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[Prepared]:
    """The statements the app runs from now on, in order."""
    seen: list[Prepared] = []
    database = client.app.state.database  # type: ignore[attr-defined]
    fetch = database.fetch

    def recording_fetch(prepared: Prepared, params: Any = None) -> Any:
        seen.append(prepared)
        return fetch(prepared, params)

    monkeypatch.setattr(database, "fetch", recording_fetch)
    return seen


# --- shared assertions --------------------------------------------------------------


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"detail"}


def misanswered(status: int, responses: dict[str, httpx.Response]) -> dict[str, str]:
    """The responses, by label, that are not `status` with the JSON error shape."""
    wrong = {}
    for label, response in responses.items():
        try:
            assert_error(response, status)
        except AssertionError:
            wrong[label] = f"{response.status_code} {response.text[:200]}"
    return wrong
