"""When PostgreSQL goes away, stalls, or runs a migration, the API answers fast and loses nothing.

These tests own their PostgreSQL: a throwaway cluster started with the server
binaries of this machine, so they can stop, freeze and restart it. They run in the
PostgreSQL pass of the suite (TEST_DATABASE_URL), where those binaries exist.
"""

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import asyncpg
import psycopg
import pytest
from conftest import PASSWORD, needs_postgresql
from fastapi.testclient import TestClient
from own_servers import OwnPostgres, new_primary, remove
from sqlalchemy import text

from app.config import Settings, driver_urls
from app.db.backends import PostgresDatabase, Prepared, open_database
from app.db.errors import DatabaseUnavailable
from app.main import create_app

pytestmark = needs_postgresql

TIMEOUT_SECONDS = 2  # connect and statement timeouts of the app under test


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    server = new_primary("agora-outage-")
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture
def api(own_postgres: OwnPostgres) -> Iterator[TestClient]:
    settings = Settings(
        DATABASE_URL=own_postgres.url,
        DATABASE_CONNECT_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
        DATABASE_POOL_TIMEOUT_SECONDS=TIMEOUT_SECONDS,
        DATABASE_STATEMENT_TIMEOUT_MS=TIMEOUT_SECONDS * 1000,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _token(api: TestClient) -> dict[str, str]:
    assert api.post("/users/", json={"email": "writer@example.com", "password": PASSWORD}).status_code == 201
    login = api.post("/login", data={"username": "writer@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@dataclass
class Writer:
    """Creates posts one after another, remembering what each request answered and how long it took."""

    api: TestClient
    headers: dict[str, str]
    answers: list[tuple[int, float, int | None]] = field(default_factory=list)  # (status, seconds, post id)
    stop: threading.Event = field(default_factory=threading.Event)
    # What the app raised instead of answering (a 500 in production); the client re-raises it.
    crash: BaseException | None = None

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            started = time.perf_counter()
            try:
                response = self.api.post("/posts/", json={"title": f"post {n}", "content": "x"}, headers=self.headers)
            except Exception as exc:
                self.crash = exc
                return
            post_id = response.json()["id"] if response.status_code == 201 else None
            self.answers.append((response.status_code, time.perf_counter() - started, post_id))
            time.sleep(0.02)

    def statuses(self) -> set[int]:
        return {status for status, _, _ in self.answers}


def _run_while(writer: Writer, trouble: Callable[[], None]) -> None:
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        time.sleep(0.5)
        trouble()
        deadline = time.monotonic() + 20
        # The service must recover by itself: wait for fresh successes after the trouble.
        seen = len(writer.answers)
        while time.monotonic() < deadline:
            if sum(1 for status, _, _ in writer.answers[seen:] if status == 201) >= 5:
                break
            time.sleep(0.1)
    finally:
        writer.stop.set()
        thread.join()
    assert writer.crash is None, f"a request got no answer but an exception: {writer.crash!r}"


def _stored_post_ids(url: str) -> set[int]:
    with psycopg.connect(url) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM posts")}


def test_a_restart_gives_fast_503s_then_recovers_and_loses_no_acknowledged_write(
    own_postgres: OwnPostgres, api: TestClient
) -> None:
    writer = Writer(api, _token(api))

    def restart() -> None:
        own_postgres.stop()
        time.sleep(2)  # long enough for many requests to meet a dead database
        own_postgres.start()

    _run_while(writer, restart)

    assert writer.statuses() <= {201, 503}, writer.statuses()
    assert 503 in writer.statuses(), "the outage was not observed"
    assert writer.answers[-1][0] == 201, "the service did not recover by itself"
    slowest = max(seconds for _, seconds, _ in writer.answers)
    assert slowest < TIMEOUT_SECONDS * 2 + 1, f"a request hung for {slowest:.1f} s"
    acknowledged = {post_id for status, _, post_id in writer.answers if status == 201}
    assert acknowledged <= _stored_post_ids(own_postgres.url)


def test_a_stalled_server_gives_503_within_the_timeout_then_recovers(
    own_postgres: OwnPostgres, api: TestClient
) -> None:
    writer = Writer(api, _token(api))

    def stall() -> None:
        frozen = own_postgres.processes()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(TIMEOUT_SECONDS * 2)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)

    _run_while(writer, stall)

    assert writer.statuses() <= {201, 503}, writer.statuses()
    assert 503 in writer.statuses(), "the stall was not observed"
    assert writer.answers[-1][0] == 201
    slowest = max(seconds for _, seconds, _ in writer.answers)
    assert slowest < TIMEOUT_SECONDS * 2 + 1, f"a request hung for {slowest:.1f} s"
    acknowledged = {post_id for status, _, post_id in writer.answers if status == 201}
    assert acknowledged <= _stored_post_ids(own_postgres.url)


@needs_postgresql
def test_a_request_that_finds_no_free_connection_gets_503_after_the_pool_timeout(migrated_database: str) -> None:
    """Every pooled connection busy for longer than DATABASE_POOL_TIMEOUT_SECONDS: 503, not a wait without end."""

    async def scenario() -> tuple[float, DatabaseUnavailable | None]:
        database = await open_database(driver_urls(migrated_database)[1], pool_size=1, pool_timeout=0.5)
        try:
            assert isinstance(database, PostgresDatabase)
            busy = asyncio.create_task(database.fetch(Prepared.of(text("SELECT pg_sleep(2)"))))
            await asyncio.sleep(0.2)  # the only connection is now taken
            started = time.monotonic()
            try:
                await database.fetch(Prepared.of(text("SELECT 1")))
                failure = None
            except DatabaseUnavailable as exc:
                failure = exc
            waited = time.monotonic() - started
            await busy  # the busy statement itself was not disturbed
            assert (await database.fetch(Prepared.of(text("SELECT 1 AS one"))))[0]["one"] == 1  # the pool recovers
            return waited, failure
        finally:
            await database.close()

    waited, failure = asyncio.run(scenario())
    assert failure is not None and "no database connection within 0.5 s" in str(failure)
    assert 0.4 < waited < 1.5, waited


@needs_postgresql
def test_slow_reads_never_take_the_connections_kept_for_writes(migrated_database: str) -> None:
    """Reads that hold every read slot make other reads wait; a write still runs at once."""

    async def scenario() -> tuple[float, float, DatabaseUnavailable | None]:
        database = await open_database(
            driver_urls(migrated_database)[1], pool_size=3, pool_timeout=0.5, write_reserve=1
        )
        try:
            slow = [asyncio.create_task(database.fetch(Prepared.of(text("SELECT pg_sleep(1.5)")))) for _ in range(2)]
            await asyncio.sleep(0.2)  # both read slots are taken
            started = time.monotonic()
            write = Prepared.of(text("UPDATE alembic_version SET version_num = version_num"))
            assert write.writes
            await database.fetch(write)
            write_took = time.monotonic() - started
            started = time.monotonic()
            try:
                await database.fetch(Prepared.of(text("SELECT 1")))
                failure = None
            except DatabaseUnavailable as exc:
                failure = exc
            read_waited = time.monotonic() - started
            await asyncio.gather(*slow)
            return write_took, read_waited, failure
        finally:
            await database.close()

    write_took, read_waited, failure = asyncio.run(scenario())
    assert write_took < 0.2, f"the write waited {write_took:.2f} s behind slow reads"
    # The third connection is free, yet the read may not take it: it waits for a read slot.
    assert failure is not None and "every connection reads may use is busy" in str(failure)
    assert 0.4 < read_waited < 1.2, read_waited


@needs_postgresql
def test_a_parameter_the_driver_cannot_encode_is_a_bug_not_an_outage(migrated_database: str) -> None:
    """A value the database rejects surfaces as the bug it is: no 503 telling clients to retry, no pool expiry."""

    async def scenario() -> None:
        database = await open_database(driver_urls(migrated_database)[1], pool_size=2)
        try:
            assert isinstance(database, PostgresDatabase)
            await database.fetch(Prepared.of(text("SELECT 1")))  # one pooled connection, now idle
            with pytest.raises(asyncpg.DataError, match="int32"):
                await database.fetch(Prepared.of(text("SELECT CAST(:n AS integer) AS n")), {"n": 2**40})
            assert database._pool.get_idle_size() == 1  # still connected: the pool was not expired
        finally:
            await database.close()

    asyncio.run(scenario())


@needs_postgresql
def test_a_connection_the_server_ended_while_idle_gives_503_never_an_unclassified_error(
    migrated_database: str,
) -> None:
    """The server ends a pooled connection (restart, admin, idle timeout) while it sits idle.

    Depending on when the next statement comes, asyncpg sees it close under the statement
    (and has already put it back in the pool), or sees it between the server's farewell
    and the socket's close (the backend's exit, about a millisecond), where the statement
    fails with InternalClientError. Both are connection trouble like any other: a 503.
    """

    async def scenario() -> tuple[int, int]:
        database = await open_database(driver_urls(migrated_database)[1], pool_size=1)
        admin = await asyncpg.connect(migrated_database)
        served = unavailable = 0
        try:
            assert isinstance(database, PostgresDatabase)
            for attempt in range(40):
                (row,) = await database.fetch(Prepared.of(text("SELECT pg_backend_pid() AS pid")))
                await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
                await asyncio.sleep((attempt % 4) * 0.0005)  # 0 to 1.5 ms: before, in and after the window
                try:
                    await database.fetch(Prepared.of(text("SELECT 1")))
                    served += 1
                except DatabaseUnavailable:
                    unavailable += 1
            assert (await database.fetch(Prepared.of(text("SELECT 1 AS one"))))[0]["one"] == 1  # the pool recovers
        finally:
            await admin.close()
            await database.close()
        return served, unavailable

    served, unavailable = asyncio.run(scenario())
    assert served + unavailable == 40
    assert unavailable > 0, "no attempt met an ended connection: the scenario tested nothing"
