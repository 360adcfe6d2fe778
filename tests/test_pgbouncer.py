"""Agora behind Debian's PgBouncer in transaction pooling (DATABASE_BEHIND_PGBOUNCER).

The tests' own PostgreSQL and PgBouncer: migrated directly (MIGRATION_DATABASE_URL),
then served through PgBouncer with fewer server connections than the app's pool, so
consecutive statements of one app connection run on different server connections.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from conftest import PASSWORD, needs_postgresql
from fastapi.testclient import TestClient
from own_servers import OwnPgBouncer, OwnPostgres, new_primary, own_pgbouncer, pgbouncer_binary, remove
from pydantic import ValidationError

from app.config import REPO_ROOT, Settings
from app.main import create_app

needs_pgbouncer = pytest.mark.skipif(pgbouncer_binary() is None, reason="needs PgBouncer (apt-get install pgbouncer)")

STATEMENT_TIMEOUT_MS = 1000


@dataclass
class Setup:
    primary: OwnPostgres
    bouncer: OwnPgBouncer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    primary = new_primary("agora-bouncer-", database="bouncer_test", migrate=False)
    try:
        with own_pgbouncer(primary, server_connections=2) as bouncer:
            yield Setup(primary, bouncer)
    finally:
        remove(primary)


def settings(setup: Setup, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": setup.bouncer.url,
        "DATABASE_BEHIND_PGBOUNCER": True,
        "MIGRATION_DATABASE_URL": setup.primary.url,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(setup: Setup) -> Iterator[TestClient]:
    """Migrated as production does it: `alembic upgrade head` with the app's environment, directly to PostgreSQL."""
    environment = {
        **os.environ,
        "DATABASE_URL": setup.bouncer.url,
        "DATABASE_BEHIND_PGBOUNCER": "true",
        "MIGRATION_DATABASE_URL": setup.primary.url,
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=REPO_ROOT, env=environment, capture_output=True
    )
    assert migrated.returncode == 0, migrated.stderr.decode()
    with TestClient(create_app(settings(setup))) as client:
        yield client


@needs_postgresql
@needs_pgbouncer
def test_the_api_serves_through_pgbouncer_in_transaction_pooling(api: TestClient) -> None:
    assert api.get("/ready").json()["status"] == "ok"
    assert api.post("/users/", json={"email": "writer@example.com", "password": PASSWORD}).status_code == 201
    login = api.post("/login", data={"username": "writer@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    post_ids = []
    for n in range(5):
        created = api.post("/posts/", json={"title": f"post {n}", "content": "x"}, headers=headers)
        assert created.status_code == 201, created.text
        post_ids.append(created.json()["id"])
    assert api.post("/vote/", json={"post_id": post_ids[0], "dir": 1}, headers=headers).status_code == 201
    assert api.patch(f"/posts/{post_ids[1]}", json={"title": "edited"}, headers=headers).status_code == 200
    assert api.delete(f"/posts/{post_ids[2]}", headers=headers).status_code == 204

    # Many statements at once on 2 server connections: each runs wherever PgBouncer puts it.
    answers: list[int] = []

    def read() -> None:
        for _ in range(20):
            answers.append(api.get("/posts/?limit=10", headers=headers).status_code)
            answers.append(api.get(f"/posts/{post_ids[0]}", headers=headers).status_code)
            answers.append(api.get("/posts/?search=post", headers=headers).status_code)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 360, sorted(set(answers))

    feed = api.get("/posts/", headers=headers).json()
    assert [post["Post"]["title"] for post in feed] == ["post 4", "post 3", "edited", "post 0"]
    assert feed[-1]["votes"] == 1 and feed[-1]["voted"] is True
    assert api.get(f"/posts/{post_ids[1]}", headers=headers).json()["Post"]["title"] == "edited"
    assert api.post("/logout", headers=headers).status_code == 204
    assert api.get("/posts/", headers=headers).status_code == 401


@needs_postgresql
@needs_pgbouncer
def test_a_statement_timeout_still_applies(setup: Setup, api: TestClient) -> None:
    """A statement stuck behind a lock is cancelled on the server after DATABASE_STATEMENT_TIMEOUT_MS: 503."""
    with TestClient(create_app(settings(setup, DATABASE_STATEMENT_TIMEOUT_MS=STATEMENT_TIMEOUT_MS))) as impatient:
        check_statement_timeout(setup, impatient)


def registered(api: TestClient, email: str) -> dict[str, str]:
    """The Authorization header of a new account's token."""
    assert api.post("/users/", json={"email": email, "password": PASSWORD}).status_code == 201
    login = api.post("/login", data={"username": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def check_statement_timeout(setup: Setup, api: TestClient) -> None:
    headers = registered(api, "waiter@example.com")
    with psycopg.connect(setup.primary.url) as locker:
        locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = api.get("/posts/", headers=headers)
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert STATEMENT_TIMEOUT_MS / 1000 <= took < STATEMENT_TIMEOUT_MS / 1000 + 1.5, took
        # The server stopped running it: nothing of the app's waits on the lock any more.
        deadline = time.monotonic() + 2
        while setup.primary.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") != [(0,)]:
            assert time.monotonic() < deadline, "the timed-out statement still runs on the server"
            time.sleep(0.05)
    assert api.get("/posts/", headers=headers).status_code == 200


@needs_postgresql
@needs_pgbouncer
def test_a_search_is_stopped_at_its_own_shorter_timeout(setup: Setup, api: TestClient) -> None:
    """Behind PgBouncer too, a search is cancelled after SEARCH_TIMEOUT_MS, long before the statement timeout."""
    shorter = settings(setup, DATABASE_STATEMENT_TIMEOUT_MS=STATEMENT_TIMEOUT_MS, SEARCH_TIMEOUT_MS=200)
    with TestClient(create_app(shorter)) as impatient:
        headers = registered(impatient, "seeker@example.com")
        with psycopg.connect(setup.primary.url) as locker:
            locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            response = impatient.get("/posts/?search=anything", headers=headers)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["detail"].startswith("The search took longer than 200 ms and was stopped.")
            assert 0.2 <= took < 0.6, took
            deadline = time.monotonic() + 2
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            while setup.primary.query(waiting) != [(0,)]:
                assert time.monotonic() < deadline, "the stopped search still runs on the server"
                time.sleep(0.05)
        assert impatient.get("/posts/?search=anything", headers=headers).status_code == 200


@needs_postgresql
@needs_pgbouncer
def test_without_the_setting_pgbouncer_refuses_the_app(setup: Setup) -> None:
    """What DATABASE_BEHIND_PGBOUNCER is for: asyncpg's startup statement_timeout is refused."""
    direct_style = settings(setup, DATABASE_BEHIND_PGBOUNCER=False, DATABASE_CONNECT_TIMEOUT_SECONDS=2)
    with TestClient(create_app(direct_style)) as client:
        assert client.get("/ready").status_code == 503
    assert "unsupported startup parameter" in setup.bouncer.log


def test_behind_pgbouncer_migrations_need_a_direct_url() -> None:
    with pytest.raises(ValidationError, match="MIGRATION_DATABASE_URL"):
        Settings(DATABASE_URL="postgresql://agora@127.0.0.1:6432/agora_test", DATABASE_BEHIND_PGBOUNCER=True)
    configured = Settings(
        DATABASE_URL="postgresql://agora@127.0.0.1:6432/agora_test",
        DATABASE_BEHIND_PGBOUNCER=True,
        MIGRATION_DATABASE_URL="postgresql://agora@127.0.0.1:5432/agora_test",
    )
    assert configured.sync_database_url.port == 5432 and configured.async_database_url.port == 6432
