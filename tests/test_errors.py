"""One table from database exceptions to HTTP answers (app/db/errors.py, app/api/errors.py).

Each row of the table is checked with the exceptions it names, and the two outcomes are
produced for real on the database under test (SQLite or PostgreSQL), through `Database.fetch`
and through the app. A conflict is never answered 503.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import pytest
from conftest import IS_POSTGRESQL, TEST_DATABASE_URL, Account, assert_error, needs_postgresql
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa
from sqlalchemy import text

from app.api.errors import HTTP_ANSWERS
from app.config import driver_urls
from app.db.backends import PostgresDatabase, Prepared, open_database
from app.db.errors import ERROR_TABLE, DatabaseConflict, DatabaseError, DatabaseUnavailable, rule_for, translate
from app.domain.errors import NotAuthenticated
from app.domain.viewer import Viewer

T = TypeVar("T")


def example(kind: type[BaseException]) -> BaseException:
    """An instance of `kind`, built the way its library builds it."""
    if issubclass(kind, sa.DBAPIError):
        return kind("SELECT 1", {}, Exception("driver says no"))
    return kind("it failed")


# Each exception the table names, with the outcome it must have and the HTTP status it ends in.
EXPECTED: list[tuple[type[BaseException], type[DatabaseError] | None, int | None]] = [
    (asyncpg.UniqueViolationError, DatabaseConflict, 409),
    (asyncpg.ForeignKeyViolationError, DatabaseConflict, 409),
    (sqlite3.IntegrityError, DatabaseConflict, 409),
    (sa.IntegrityError, DatabaseConflict, 409),
    (asyncpg.DataError, None, None),
    (asyncpg.exceptions.NumericValueOutOfRangeError, None, None),
    (sqlite3.DataError, None, None),
    (sa.DataError, None, None),
    (sqlite3.ProgrammingError, None, None),
    (sa.ProgrammingError, None, None),
    (ConnectionRefusedError, DatabaseUnavailable, 503),
    (TimeoutError, DatabaseUnavailable, 503),
    (asyncpg.InterfaceError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.ConnectionDoesNotExistError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.AdminShutdownError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.InternalClientError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.QueryCanceledError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.TooManyConnectionsError, DatabaseUnavailable, 503),
    (asyncpg.exceptions.UndefinedTableError, DatabaseUnavailable, 503),
    (sa.TimeoutError, DatabaseUnavailable, 503),
    (sqlite3.OperationalError, DatabaseUnavailable, 503),
    (sa.OperationalError, DatabaseUnavailable, 503),
]


@pytest.mark.parametrize(("kind", "outcome", "status"), EXPECTED, ids=[k.__name__ for k, _, _ in EXPECTED])
def test_each_exception_has_one_outcome_and_one_answer(
    kind: type[BaseException], outcome: type[DatabaseError] | None, status: int | None
) -> None:
    error = translate(example(kind))
    if outcome is None:
        assert error is None, "a bug must propagate as it is (a logged 500), not become a retryable 503"
        return
    assert type(error) is outcome
    assert HTTP_ANSWERS[outcome].status_code == status


def test_every_row_of_the_table_is_checked_above() -> None:
    named = {kind for rule in ERROR_TABLE for kind in rule.exceptions}
    checked = {kind for kind, _, _ in EXPECTED}
    assert {kind for kind in named if not any(issubclass(c, kind) for c in checked)} == set()


def test_only_connection_failures_drop_the_pool() -> None:
    reconnecting = {kind for kind, _, _ in EXPECTED if (rule := rule_for(example(kind))) and rule.reconnect}
    assert asyncpg.exceptions.QueryCanceledError not in reconnecting  # a timed-out statement: the connection is fine
    assert {ConnectionRefusedError, asyncpg.exceptions.AdminShutdownError} <= reconnecting


def test_a_conflict_is_409_and_unavailability_503_with_retry_after() -> None:
    assert HTTP_ANSWERS[DatabaseConflict].status_code == 409
    unavailable = HTTP_ANSWERS[DatabaseUnavailable]
    assert (unavailable.status_code, unavailable.headers) == (503, {"Retry-After": "1"})


# --- for real, on the database under test ---------------------------------------------------


def run(client: TestClient, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the app's event loop (where its connection pool lives)."""
    assert client.portal is not None

    async def call() -> T:
        return await coroutine

    return client.portal.call(call)


# A plain INSERT, without the ON CONFLICT and the existence checks of the app's own statements.
# A vote with no check at all, marked proves_viewer so a Viewer runs it (it binds the token's
# parameters, as such statements must, without looking at them).
RAW_VOTE = Prepared.of(
    text(
        "INSERT INTO votes (user_id, post_id) SELECT CAST(:viewer_id AS INTEGER), CAST(:post_id AS INTEGER) "
        "WHERE CAST(:viewer_generation AS INTEGER) >= 0 AND CAST(:viewer_jti AS VARCHAR) <> '' RETURNING post_id"
    ),
    proves_viewer=True,
)


def test_a_constraint_violation_is_a_conflict_on_this_database(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    account = make_account()
    post_id = client.post("/posts/", json={"title": "t", "content": "c"}, headers=account.headers).json()["id"]
    database = client.app.state.database  # type: ignore[attr-defined]
    params = {"viewer_id": account.id, "post_id": post_id, "viewer_generation": 0, "viewer_jti": "any"}
    assert run(client, database.fetch(RAW_VOTE, params))
    with pytest.raises(DatabaseConflict):
        run(client, database.fetch(RAW_VOTE, params))  # the same vote again: the primary key refuses it


def test_a_conflict_from_an_account_deleted_meanwhile_is_401(client: TestClient) -> None:
    """A foreign key to the viewer's account fails once the account is gone: that is a 401, never a 503."""
    database = client.app.state.database  # type: ignore[attr-defined]
    viewer = Viewer(10**6, database, generation=0, jti="A" * 22, expires_at=2**32)
    with pytest.raises(NotAuthenticated):
        run(client, viewer.fetch(RAW_VOTE, {"post_id": 1}))


def unreachable_url() -> str:
    if IS_POSTGRESQL:
        return driver_urls(TEST_DATABASE_URL)[1].set(port=1).render_as_string(hide_password=False)
    return "sqlite+aiosqlite:////nonexistent-directory/agora.db"


def test_an_unreachable_database_is_unavailable_on_this_database() -> None:
    async def scenario() -> None:
        database = await open_database(unreachable_url(), pool_timeout=2, connect_timeout=2)
        try:
            with pytest.raises(DatabaseUnavailable):
                await database.fetch(Prepared.of(text("SELECT 1")))
        finally:
            await database.close()

    asyncio.run(scenario())


def test_the_app_and_ready_answer_503_from_the_same_table(
    client: TestClient, make_account: Callable[..., Account]
) -> None:
    from app.main import create_app

    account = make_account()  # on the real database, so the token is valid
    app: FastAPI = client.app  # type: ignore[assignment]
    settings = app.state.settings.model_copy(update={"DATABASE_URL": "sqlite:////nonexistent-directory/agora.db"})
    if IS_POSTGRESQL:
        settings = app.state.settings.model_copy(
            update={"DATABASE_URL": unreachable_url().replace("+asyncpg", ""), "DATABASE_CONNECT_TIMEOUT_SECONDS": 2}
        )
    settings.__dict__.pop("async_database_url", None)  # a cached property of the copied settings
    with TestClient(create_app(settings)) as down:
        response = down.get("/posts/", headers=account.headers)
        assert_error(response, 503)
        assert response.headers["retry-after"] == "1"
        ready = down.get("/ready")
        assert ready.status_code == 503 and "database unreachable" in ready.json()["detail"]


@needs_postgresql
def test_a_statement_timeout_is_503_and_keeps_the_connection() -> None:
    """statement_timeout cancels the statement, not the connection: the pool must not be dropped for it."""

    async def scenario() -> None:
        database = await open_database(driver_urls(TEST_DATABASE_URL)[1], pool_size=1, statement_timeout_ms=100)
        try:
            assert isinstance(database, PostgresDatabase)
            (row,) = await database.fetch(Prepared.of(text("SELECT pg_backend_pid() AS pid")))
            with pytest.raises(DatabaseUnavailable, match="QueryCanceledError"):
                await database.fetch(Prepared.of(text("SELECT pg_sleep(1)")))
            (again,) = await database.fetch(Prepared.of(text("SELECT pg_backend_pid() AS pid")))
            assert again["pid"] == row["pid"], "the connection was dropped for a statement timeout"
        finally:
            await database.close()

    asyncio.run(scenario())
