"""A search is stopped after SEARCH_TIMEOUT_MS (app/db/backends.py): 503 saying so, and the pool free at once.

The slow search is a real one, on both databases: a long search no index narrows, over
titles that hold each of its pieces but not the search itself (written here by SQL, without
grams: PostgreSQL's planner walks them all), so the LIKE matcher compares it at every
position of every title (about 25 µs a title on PostgreSQL here, 45 µs on SQLite). On
PostgreSQL also a search that waits for a lock another session holds: the server must stop
waiting once the search is cancelled.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg
import pytest
from conftest import IS_POSTGRESQL, TEST_DATABASE_URL, Account, needs_postgresql
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Connection, text

from app.config import Settings, driver_urls
from app.db import statements
from app.db.backends import Database, Prepared, SearchTimedOut, open_database
from app.db.folding import fold

T = TypeVar("T")

SEARCH_TIMEOUT_MS = 100
# What a cut-off request may take beyond the timeout: the request itself, the viewer's check,
# the search among the newest posts first (500 titles, about 20 ms) and a loaded machine.
REQUEST_SLACK_SECONDS = 0.25
# Titles of one letter but for one "aab" (every 3 characters of the search), and the search: 99 a's and a b.
SLOW_TITLE = "aab" + "a" * 297
SLOW_SEARCH = "a" * 99 + "b"
SLOW_POSTS = 40_000 if IS_POSTGRESQL else 30_000  # about 1 s of matching here, on either


def run(client: TestClient, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the app's event loop (where its connection pool lives)."""
    assert client.portal is not None

    async def call() -> T:
        return await coroutine

    return client.portal.call(call)


@pytest.fixture
def slow_titles(make_account: Callable[..., Account], sql: Connection) -> Account:
    """SLOW_POSTS posts that a SLOW_SEARCH must compare with in full; returns their author."""
    author = make_account()
    values = {"title": SLOW_TITLE, "owner_id": author.id, "count": SLOW_POSTS}
    if IS_POSTGRESQL:
        sql.execute(
            text(
                "INSERT INTO posts (title, title_folded, content, published, owner_id) "
                "SELECT :title, :title, 'c', true, :owner_id FROM generate_series(1, :count)"
            ),
            values,
        )
        sql.exec_driver_sql("ANALYZE posts")
    else:
        sql.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO posts (title, title_folded, content, published, owner_id) "
                "SELECT :title, :title, 'c', 1, :owner_id FROM n"
            ),
            values,
        )
    return author


def search_for(api: TestClient, account: Account, search: str, **params: Any) -> tuple[int, Any, float, dict[str, str]]:
    """Status, body, seconds taken and headers of a search through the API."""
    started = time.monotonic()
    response = api.get("/posts/", params={"search": search, **params}, headers=account.headers)
    return response.status_code, response.json(), time.monotonic() - started, dict(response.headers)


def assert_stopped(status: int, body: Any, took: float, headers: dict[str, str], timeout_ms: int) -> None:
    assert status == 503, body
    assert headers["retry-after"] == "1"
    assert body["detail"].startswith(f"The search took longer than {timeout_ms} ms and was stopped."), body
    assert "more specific words" in body["detail"]
    assert took < timeout_ms / 1000 + REQUEST_SLACK_SECONDS, took


def active_searches(sql: Connection) -> int:
    """Statements matching titles that this PostgreSQL database runs right now (`sql`'s own aside)."""
    return int(
        sql.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
            "AND query LIKE '%%title_folded LIKE%%' AND pid <> pg_backend_pid()"
        ).scalar_one()
    )


def test_a_slow_search_is_stopped_at_the_timeout_and_the_pool_serves_on(
    app_with: Callable[..., TestClient],
    make_account: Callable[..., Account],
    slow_titles: Account,
    sql: Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """503 with the reason after about SEARCH_TIMEOUT_MS, again and again, and every other request still served."""
    # One connection for reads, one kept for writes, and a short wait for them: a read slot or
    # connection the cut-off search kept would show as a 503 (or a wait) in the requests after it.
    api = app_with(
        SEARCH_TIMEOUT_MS=SEARCH_TIMEOUT_MS,
        DATABASE_POOL_SIZE=2,
        DATABASE_WRITE_RESERVE=1,
        DATABASE_POOL_TIMEOUT_SECONDS=1,
    )
    reader = make_account()
    needle = api.post("/posts/", json={"title": "A normal needle", "content": "c"}, headers=reader.headers).json()

    with caplog.at_level(logging.WARNING, logger="agora"):
        for _ in range(3):
            assert_stopped(*search_for(api, reader, SLOW_SEARCH), timeout_ms=SEARCH_TIMEOUT_MS)
            if IS_POSTGRESQL:  # the server stopped it too, long before it would have finished
                deadline = time.monotonic() + 0.2
                while active_searches(sql):
                    assert time.monotonic() < deadline, "the stopped search still runs on the server"
                    time.sleep(0.01)
    logged = [r.getMessage() for r in caplog.records if r.name == "agora" and "search timeout" in r.getMessage()]
    assert logged == [f"search timeout: stopped after SEARCH_TIMEOUT_MS ({SEARCH_TIMEOUT_MS} ms)"] * 3

    # Right after: a normal search, the feed, one post, a write; each at once.
    status, body, took, _ = search_for(api, reader, "NEEDLE", limit=1)
    assert (status, [item["Post"]["id"] for item in body]) == (200, [needle["id"]]), body
    assert took < 0.5, took
    assert api.get("/posts/?limit=5", headers=reader.headers).status_code == 200
    assert api.get(f"/posts/{needle['id']}", headers=reader.headers).status_code == 200
    assert api.post("/vote/", json={"post_id": needle["id"], "dir": 1}, headers=reader.headers).status_code == 201

    # The statement itself is cut at the timeout (measured on the app's event loop, without HTTP).
    database: Database = api.app.state.database  # type: ignore[attr-defined]
    params = {
        "viewer_id": reader.id,
        "viewer_generation": 0,
        "viewer_jti": "x" * 22,
        "limit": 10,
        "skip": 0,
        "pattern": statements.like_pattern(fold(SLOW_SEARCH)),
    }

    async def timed() -> float:
        started = time.monotonic()
        with pytest.raises(SearchTimedOut):
            await database.fetch(statements.LIST_POSTS[True, False], params)
        return time.monotonic() - started

    took = run(api, timed())
    assert SEARCH_TIMEOUT_MS / 1000 <= took < SEARCH_TIMEOUT_MS / 1000 + 0.1, took


def test_without_the_timeout_the_same_search_runs_for_far_longer(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account], slow_titles: Account
) -> None:
    """What the test above stops is slow for real: given time, it answers 200, well past the timeout and its slack."""
    patient = app_with(SEARCH_TIMEOUT_MS=10_000, DATABASE_STATEMENT_TIMEOUT_MS=20_000)
    status, body, took, _ = search_for(patient, make_account(), SLOW_SEARCH)
    assert (status, body) == (200, [])
    assert took > 1.5 * (SEARCH_TIMEOUT_MS / 1000 + REQUEST_SLACK_SECONDS), took


# A statement as slow as the test needs, without any table: 0.6 s or more.
if IS_POSTGRESQL:
    SLOW_SQL = "SELECT true AS done FROM pg_sleep(0.6)"
else:
    SLOW_SQL = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
        "SELECT count(*) > 0 AS done FROM n"
    )
SLOW = Prepared.of(text(SLOW_SQL))
# The same, bound to a search pattern as the searches are, and so marked as one.
SLOW_SEARCH_STATEMENT = Prepared.of(text(f"{SLOW_SQL} WHERE CAST(:pattern AS TEXT) IS NOT NULL"), searches=True)
BACKEND_PID = Prepared.of(text("SELECT pg_backend_pid() AS pid"))


def test_only_searches_get_the_search_timeout() -> None:
    """Unmarked, a slow statement runs to its end; marked a search, it stops and its connection serves on at once."""

    async def scenario() -> None:
        database = await open_database(driver_urls(TEST_DATABASE_URL)[1], pool_size=1, search_timeout_ms=100)
        try:
            started = time.monotonic()
            assert [dict(row) for row in await database.fetch(SLOW)] == [{"done": True}]
            assert time.monotonic() - started >= 0.3  # ran to its end, well past 100 ms

            pid = (await database.fetch(BACKEND_PID))[0]["pid"] if IS_POSTGRESQL else None
            started = time.monotonic()
            with pytest.raises(SearchTimedOut) as stopped:
                await database.fetch(SLOW_SEARCH_STATEMENT, {"pattern": "%a%"})
            assert 0.1 <= time.monotonic() - started < 0.2
            assert stopped.value.timeout_ms == 100
            assert "took longer than 100 ms" in str(stopped.value)

            started = time.monotonic()
            if IS_POSTGRESQL:
                # One connection in the pool: it came back once the server had ended the search.
                assert (await database.fetch(BACKEND_PID))[0]["pid"] == pid, "the connection was dropped"
            else:
                assert await database.fetch(Prepared.of(text("SELECT 1 AS one")))
            assert time.monotonic() - started < 0.2  # not after the rest of the 0.6 s
        finally:
            await database.close()

    asyncio.run(scenario())


@needs_postgresql
def test_a_search_waiting_for_a_lock_is_cancelled_and_other_reads_keep_the_statement_timeout(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    """Behind a lock, a search is cancelled on the server after SEARCH_TIMEOUT_MS; the feed waits on, and is served."""
    api = app_with(SEARCH_TIMEOUT_MS=200, DATABASE_POOL_SIZE=2, DATABASE_WRITE_RESERVE=1)
    reader = make_account()
    api.post("/posts/", json={"title": "behind the lock", "content": "c"}, headers=reader.headers)
    feed: dict[str, Any] = {}

    def read_feed() -> None:
        started = time.monotonic()
        feed["status"] = api.get("/posts/", headers=reader.headers).status_code
        feed["took"] = time.monotonic() - started

    with psycopg.connect(TEST_DATABASE_URL) as locker:
        locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        assert_stopped(*search_for(api, reader, "lock"), timeout_ms=200)
        deadline = time.monotonic() + 1
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        while locker.execute(waiting).fetchone() != (0,):
            assert time.monotonic() < deadline, "the stopped search still waits for the lock on the server"
            time.sleep(0.02)
        # A feed page is no search: it waits for the lock past 200 ms, and gets its page.
        reader_thread = threading.Thread(target=read_feed)
        reader_thread.start()
        time.sleep(0.6)
        assert "status" not in feed, feed
    reader_thread.join(timeout=10)
    assert feed["status"] == 200 and feed["took"] >= 0.6, feed
    status, body, _, _ = search_for(api, reader, "lock")
    assert status == 200 and [item["Post"]["title"] for item in body] == ["behind the lock"]


def test_the_search_timeout_is_positive_and_shorter_than_the_statement_timeout() -> None:
    assert Settings().SEARCH_TIMEOUT_MS == 500
    assert Settings(SEARCH_TIMEOUT_MS=4999).SEARCH_TIMEOUT_MS == 4999
    for refused in ({"SEARCH_TIMEOUT_MS": 0}, {"SEARCH_TIMEOUT_MS": -1}):
        with pytest.raises(ValidationError, match="greater than 0"):
            Settings(**refused)  # type: ignore[arg-type]
    for refused in ({"SEARCH_TIMEOUT_MS": 5000}, {"SEARCH_TIMEOUT_MS": 300, "DATABASE_STATEMENT_TIMEOUT_MS": 200}):
        with pytest.raises(ValidationError, match=r"SEARCH_TIMEOUT_MS .* must be shorter than DATABASE_STATEMENT"):
            Settings(**refused)  # type: ignore[arg-type]
