"""Reads on a real streaming standby (DATABASE_READ_URL), and every user still seeing their own writes.

The cluster is the tests' own: a primary and a standby made by `pg_basebackup -R`, which
replays the primary's WAL two seconds late (`recovery_min_apply_delay`), so a standby
read right after a write cannot see it. Who saw what proves where each read went.
"""

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import PASSWORD, needs_postgresql
from fastapi.testclient import TestClient
from own_servers import OwnPostgres, free_port, new_primary, new_standby, redis_url, remove, wait_for_replay
from pydantic import ValidationError

from app.config import Settings
from app.db.marks import UNKNOWN_POSITION, RedisWriteMarks
from app.db.replicas import PrimaryPositions, ReplicatedDatabase, WalLayout
from app.main import create_app

APPLY_DELAY_SECONDS = 2


@dataclass
class Cluster:
    primary: OwnPostgres
    standby: OwnPostgres  # replays APPLY_DELAY_SECONDS late


@pytest.fixture(scope="module")
def _cluster() -> Iterator[Cluster]:
    primary = new_primary("agora-replicas-", database="replica_test")
    try:
        standby = new_standby(primary, apply_delay=f"{APPLY_DELAY_SECONDS}s")
        try:
            yield Cluster(primary, standby)
        finally:
            remove(standby)
    finally:
        remove(primary)


@pytest.fixture
def cluster(_cluster: Cluster) -> Iterator[Cluster]:
    """The module's primary and delayed standby, with empty tables again after the test."""
    yield _cluster
    _cluster.primary.query("TRUNCATE votes, posts, users, revoked_tokens RESTART IDENTITY CASCADE")


@contextmanager
def api(primary: OwnPostgres, *standbys: OwnPostgres, **overrides: Any) -> Iterator[TestClient]:
    """The app on `primary`, reading from `standbys`; once /ready says every standby is ok."""
    settings = Settings(
        DATABASE_URL=primary.url,
        DATABASE_READ_URL=",".join(standby.url for standby in standbys),
        **{"DATABASE_READ_MAX_LAG_SECONDS": 30, **overrides},
    )
    with TestClient(create_app(settings)) as client:
        wanted = {"primary": "ok", **{f"replica-{n}": "ok" for n in range(1, len(standbys) + 1)}}
        deadline = time.monotonic() + 15
        while (ready := client.get("/ready")).json().get("databases") != wanted:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.05)
        yield client


def register(client: TestClient, email: str) -> dict[str, str]:
    assert client.post("/users/", json={"email": email, "password": PASSWORD}).status_code == 201
    login = client.post("/login", data={"username": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def settle(primary: OwnPostgres, standby: OwnPostgres, *clients: TestClient) -> None:
    """Until the standby has replayed every write so far, and each app's monitor knows it.

    Every user's mark is then behind the standby: their reads go there.
    """
    ((position,),) = primary.query("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    wait_for_replay(primary, standby)
    deadline = time.monotonic() + 5
    for client in clients:
        database = client.app.state.database  # type: ignore[attr-defined]
        assert isinstance(database, ReplicatedDatabase)
        while database.standbys[0].replayed < int(position):
            assert time.monotonic() < deadline, "the app's monitor did not see the standby catch up"
            time.sleep(0.02)


def titles(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [post["Post"]["title"] for post in response.json()]


@needs_postgresql
def test_own_writes_are_read_back_at_once_while_others_read_the_lagging_standby(cluster: Cluster) -> None:
    with api(cluster.primary, cluster.standby) as client:
        author, reader = register(client, "author@example.com"), register(client, "reader@example.com")
        assert client.post("/posts/", json={"title": "old news", "content": "x"}, headers=author).status_code == 201
        settle(cluster.primary, cluster.standby, client)
        assert titles(client.get("/posts/", headers=reader)) == ["old news"]

        created = client.post("/posts/", json={"title": "fresh", "content": "x"}, headers=author)
        assert created.status_code == 201
        post_id = created.json()["id"]
        # The author reads their post at once (the primary), ...
        assert client.get(f"/posts/{post_id}", headers=author).json()["Post"]["title"] == "fresh"
        assert titles(client.get("/posts/", headers=author)) == ["fresh", "old news"]
        # ... while the reader's feed comes from the standby, which has not replayed it yet.
        assert titles(client.get("/posts/", headers=reader)) == ["old news"]
        assert client.get(f"/posts/{post_id}", headers=reader).status_code == 404
        assert cluster.standby.query("SELECT count(*) FROM posts WHERE id = %s", post_id) == [(0,)]

        edited = client.patch(f"/posts/{post_id}", json={"title": "fresher"}, headers=author)
        assert edited.status_code == 200, edited.text
        assert client.get(f"/posts/{post_id}", headers=author).json()["Post"]["title"] == "fresher"
        assert titles(client.get("/posts/?search=fresher", headers=author)) == ["fresher"]

        assert client.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=author).status_code == 201
        voted = client.get(f"/posts/{post_id}", headers=author).json()
        assert (voted["votes"], voted["voted"]) == (1, True)
        assert client.post("/vote/", json={"post_id": post_id, "dir": 0}, headers=author).status_code == 201
        unvoted = client.get("/posts/", headers=author).json()[0]
        assert (unvoted["Post"]["title"], unvoted["votes"], unvoted["voted"]) == ("fresher", 0, False)

        assert client.delete(f"/posts/{post_id}", headers=author).status_code == 204
        assert client.get(f"/posts/{post_id}", headers=author).status_code == 404
        assert titles(client.get("/posts/", headers=author)) == ["old news"]

        # The reader catches up once the standby has replayed it all.
        kept = client.post("/posts/", json={"title": "kept", "content": "x"}, headers=author).json()["id"]
        assert titles(client.get("/posts/", headers=reader)) == ["old news"]
        deadline = time.monotonic() + APPLY_DELAY_SECONDS + 5
        while client.get(f"/posts/{kept}", headers=reader).status_code == 404:
            assert time.monotonic() < deadline, "the standby never caught up"
            time.sleep(0.1)
        assert titles(client.get("/posts/", headers=reader)) == ["kept", "old news"]


@needs_postgresql
def test_a_write_through_one_app_is_read_back_at_once_through_another(cluster: Cluster) -> None:
    """Two API hosts sharing Redis: the second knows of the write the first made; a third, without Redis, does not."""
    with (
        redis_url() as shared,
        api(cluster.primary, cluster.standby, RATE_LIMIT_STORAGE_URL=shared) as host_a,
        api(cluster.primary, cluster.standby, RATE_LIMIT_STORAGE_URL=shared) as host_b,
        api(cluster.primary, cluster.standby) as alone,
    ):
        assert isinstance(host_a.app.state.database.marks, RedisWriteMarks)  # type: ignore[attr-defined]
        author = register(host_a, "author@example.com")
        assert host_a.post("/posts/", json={"title": "old news", "content": "x"}, headers=author).status_code == 201
        settle(cluster.primary, cluster.standby, host_a, host_b, alone)

        post_id = host_a.post("/posts/", json={"title": "fresh", "content": "x"}, headers=author).json()["id"]
        assert host_b.get(f"/posts/{post_id}", headers=author).json()["Post"]["title"] == "fresh"
        assert titles(host_b.get("/posts/", headers=author)) == ["fresh", "old news"]
        # Without the shared mark the standby answers, and it has not replayed the post yet.
        assert alone.get(f"/posts/{post_id}", headers=author).status_code == 404

        assert host_b.patch(f"/posts/{post_id}", json={"title": "edited on b"}, headers=author).status_code == 200
        assert host_a.get(f"/posts/{post_id}", headers=author).json()["Post"]["title"] == "edited on b"
        assert host_a.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=author).status_code == 201
        assert host_b.get(f"/posts/{post_id}", headers=author).json()["votes"] == 1
        assert host_b.delete(f"/posts/{post_id}", headers=author).status_code == 204
        assert host_a.get(f"/posts/{post_id}", headers=author).status_code == 404
        assert titles(host_a.get("/posts/", headers=author)) == ["old news"]


@needs_postgresql
def test_a_lagging_standby_is_skipped_and_ready_says_so(cluster: Cluster) -> None:
    with api(cluster.primary, cluster.standby, DATABASE_READ_MAX_LAG_SECONDS=0.5) as client:
        author, reader = register(client, "author@example.com"), register(client, "reader@example.com")
        settle(cluster.primary, cluster.standby, client)
        post_id = client.post("/posts/", json={"title": "fresh", "content": "x"}, headers=author).json()["id"]
        deadline = time.monotonic() + APPLY_DELAY_SECONDS
        while (ready := client.get("/ready")).json()["databases"]["replica-1"] != "lagging":
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.05)
        assert ready.status_code == 200
        assert ready.json()["databases"] == {"primary": "ok", "replica-1": "lagging"}
        # The standby has not replayed the post, but the reader no longer reads there.
        assert cluster.standby.query("SELECT count(*) FROM posts WHERE id = %s", post_id) == [(0,)]
        assert client.get(f"/posts/{post_id}", headers=reader).json()["Post"]["title"] == "fresh"
        # Once it has replayed, it is ok again.
        deadline = time.monotonic() + APPLY_DELAY_SECONDS + 5
        while client.get("/ready").json()["databases"]["replica-1"] != "ok":
            assert time.monotonic() < deadline
            time.sleep(0.05)


@needs_postgresql
def test_stopping_a_standby_under_load_loses_no_request(cluster: Cluster) -> None:
    standby = new_standby(cluster.primary)
    try:
        with api(cluster.primary, standby, DATABASE_READ_MAX_LAG_SECONDS=5) as client:
            author = register(client, "author@example.com")
            post_id = client.post("/posts/", json={"title": "read me", "content": "x"}, headers=author).json()["id"]
            readers = [register(client, f"reader{n}@example.com") for n in range(4)]
            settle(cluster.primary, standby, client)

            answers: list[int] = []
            stop = threading.Event()

            def read(headers: dict[str, str]) -> None:
                while not stop.is_set():
                    answers.append(client.get("/posts/", headers=headers).status_code)
                    answers.append(client.get(f"/posts/{post_id}", headers=headers).status_code)

            threads = [threading.Thread(target=read, args=(headers,)) for headers in readers]
            for thread in threads:
                thread.start()
            try:
                time.sleep(1)
                # The standby served: its pool opened connections beside the monitor's.
                sessions = standby.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                    standby.database,
                )
                served_before = len(answers)
                standby.stop("fast")
                time.sleep(1.5)
            finally:
                stop.set()
                for thread in threads:
                    thread.join()
            assert sessions[0][0] >= 2, sessions
            assert served_before > 20 and len(answers) > served_before + 20, (served_before, len(answers))
            assert set(answers) == {200}, sorted(set(answers))
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json()["databases"] == {"primary": "ok", "replica-1": "down"}
    finally:
        remove(standby)


def test_marks_in_redis_keep_the_larger_position_expire_and_fail_safe() -> None:
    async def scenario(url: str) -> None:
        marks, other_host = RedisWriteMarks(url, seconds=0.5), RedisWriteMarks(url, seconds=0.5)
        marks.namespace = other_host.namespace = f"test-{time.time_ns()}"
        try:
            await marks.record(7, 200)
            await other_host.record(7, 100)  # an older write finishing later must not win
            # Its own mark (100) is behind the standbys (150): Redis says what the user wrote elsewhere.
            assert await other_host.position(7, furthest=150) == 200
            assert await other_host.position(8, furthest=150) == 0
            await asyncio.sleep(0.6)
            assert await other_host.position(7, furthest=150) == 0  # forgotten with the mark
        finally:
            await marks.close()
            await other_host.close()
        unreachable = RedisWriteMarks(f"redis://127.0.0.1:{free_port()}/0", seconds=5)
        unreachable.namespace = "test"
        await unreachable.record(7, 300)  # kept here at least
        assert await unreachable.position(7, furthest=0) == 300
        assert await unreachable.position(8, furthest=0) == UNKNOWN_POSITION  # cannot tell: the primary
        await unreachable.close()

    with redis_url() as url:
        asyncio.run(scenario(url))


def test_standbys_need_postgresql_urls() -> None:
    with pytest.raises(ValidationError, match="DATABASE_READ_URL"):
        Settings(DATABASE_URL="sqlite:///agora_test.db", DATABASE_READ_URL="postgresql://agora@standby/agora_test")
    with pytest.raises(ValidationError, match="DATABASE_READ_URL"):
        Settings(DATABASE_URL="postgresql://agora@primary/agora_test", DATABASE_READ_URL="sqlite:///agora_test.db")
    settings = Settings(
        DATABASE_URL="postgresql://agora@primary/agora_test",
        DATABASE_READ_URL="postgres://agora@standby-1/agora_test?sslmode=require, postgresql://agora@standby-2/agora_test",
    )
    assert [(url.drivername, url.host, dict(url.query)) for url in settings.read_database_urls] == [
        ("postgresql+asyncpg", "standby-1", {"ssl": "require"}),
        ("postgresql+asyncpg", "standby-2", {}),
    ]


def test_a_page_header_is_not_a_position_replay_reaches() -> None:
    layout = WalLayout(block=8192, segment=16 * 1024 * 1024)
    segment_start, page_start = 5 * 16 * 1024 * 1024, 5 * 16 * 1024 * 1024 + 3 * 8192
    assert layout.record_end(segment_start + 40) == segment_start  # after a segment switch
    assert layout.record_end(page_start + 24) == page_start
    assert layout.record_end(page_start + 1000) == page_start + 1000


def test_a_standby_lag_in_seconds_comes_from_the_primary_positions() -> None:
    positions = PrimaryPositions(keep_seconds=10)
    assert positions.lag(0, now=0) == math.inf  # nothing known of the primary yet
    positions.add(100.0, 1000)
    positions.add(101.0, 2000)
    positions.add(102.0, 2000)  # idle: the same position, seen later
    assert positions.lag(2000, now=102.5) == 0
    assert positions.lag(1500, now=102.5) == 2.5  # has what the primary had at 100
    assert positions.lag(500, now=102.5) == math.inf  # behind all that is remembered
    positions.add(115.0, 3000)  # the older samples are forgotten
    assert positions.lag(2000, now=115.0) == math.inf
