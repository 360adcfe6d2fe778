"""Brute-force limits shared through Redis (RATE_LIMIT_STORAGE_URL), and what happens when Redis is gone.

Real Redis servers only (tests/own_servers.py): the one on 127.0.0.1:6379 when it answers
(else one of our own), and servers each test starts on a free port and stops, to take them
away under the app.
Two `create_app` apps, each with its own TestClient, stand for two workers or hosts.
"""

import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import own_servers
import pytest
from conftest import PASSWORD, Account
from fastapi.testclient import TestClient
from own_servers import OwnRedis

from app.config import Settings
from app.domain.ratelimit import KEY_PREFIX
from app.http import metrics

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
pytestmark = pytest.mark.skipif(
    not (own_servers.redis_server_binary() and shutil.which(REDIS_CLI)), reason="needs redis-server and redis-cli"
)

WRONG = "wrong password!"


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A Redis server that only this test uses, and may stop."""
    with own_servers.own_redis() as server:
        yield server


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """The machine's Redis on 6379 when it answers, else one started for these tests."""
    with own_servers.redis_port() as port:
        yield port


def delete_our_keys(port: int, db: int) -> None:
    found = subprocess.run(
        [REDIS_CLI, "-p", str(port), "-n", str(db), "--scan", "--pattern", f"{KEY_PREFIX}:*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    if found:
        subprocess.run([REDIS_CLI, "-p", str(port), "-n", str(db), "DEL", *found], capture_output=True, check=True)


@pytest.fixture
def shared_db(redis_port: int) -> Iterator[Callable[[int], str]]:
    """URLs of databases of the shared Redis, emptied of this app's keys before and after the test."""
    used: list[int] = []

    def url(db: int) -> str:
        delete_our_keys(redis_port, db)
        used.append(db)
        return f"redis://127.0.0.1:{redis_port}/{db}"

    yield url
    for db in used:
        delete_our_keys(redis_port, db)


def limited(app_with: Callable[..., TestClient], url: str, **numbers: int) -> TestClient:
    settings: dict[str, Any] = {
        "RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT": 100,
        "RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS": 100,
        "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS": 100,
    }
    return app_with(RATE_LIMIT_ENABLED=True, RATE_LIMIT_STORAGE_URL=url, **settings | numbers)


def login(client: TestClient, email: str, password: str) -> int:
    return client.post("/login", data={"username": email, "password": password}).status_code


def register(client: TestClient, email: str) -> int:
    return client.post("/users/", json={"email": email, "password": PASSWORD}).status_code


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The limits named in metrics.rate_limit_refused calls during the test."""
    named: list[str] = []
    monkeypatch.setattr(metrics, "rate_limit_refused", named.append)
    return named


@pytest.fixture
def storage_failures(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One entry per metrics.rate_limit_storage_failed call during the test."""
    calls: list[None] = []
    monkeypatch.setattr(metrics, "rate_limit_storage_failed", lambda: calls.append(None))
    return calls


# --- one limit for every worker and host --------------------------------------------


def test_two_apps_on_one_redis_share_the_failed_login_limit(
    app_with: Callable[..., TestClient],
    make_account: Callable[..., Account],
    shared_db: Callable[[int], str],
    refusals: list[str],
) -> None:
    url = shared_db(11)
    first, second = (limited(app_with, url, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=4) for _ in range(2))
    victim = make_account()
    for worker in (first, second, first, second):
        assert login(worker, victim.email, WRONG) == 401
    for worker in (first, second):
        refused = worker.post("/login", data={"username": victim.email, "password": victim.password})
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refusals == ["failed_logins_per_account"] * 2
    other = make_account()  # another account's key: not locked
    assert login(second, other.email, other.password) == 200


def test_a_success_on_one_app_clears_the_account_failures_on_every_app(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account], shared_db: Callable[[int], str]
) -> None:
    url = shared_db(12)
    first, second = (limited(app_with, url, RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=3) for _ in range(2))
    account = make_account()
    for worker in (first, second):
        assert login(worker, account.email, WRONG) == 401
    assert login(first, account.email, account.password) == 200
    for worker in (second, first):
        assert login(worker, account.email, WRONG) == 401
    assert login(second, account.email, account.password) == 200  # two failures since the success, not four


def test_two_apps_on_one_redis_share_the_address_limits(
    app_with: Callable[..., TestClient], shared_db: Callable[[int], str], refusals: list[str]
) -> None:
    url = shared_db(13)
    first, second = (
        limited(app_with, url, RATE_LIMIT_REGISTRATIONS_PER_ADDRESS=2, RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS=2)
        for _ in range(2)
    )
    assert register(first, "shared-a@example.com") == 201
    assert register(second, "shared-b@example.com") == 201
    assert register(first, "shared-c@example.com") == 429
    # Failed logins from the address count apart from its registrations (another key, not a collision).
    assert login(second, "nobody-a@example.com", WRONG) == 401
    assert login(first, "nobody-b@example.com", WRONG) == 401
    assert login(second, "nobody-c@example.com", WRONG) == 429
    assert refusals == ["registrations_per_address", "failed_logins_per_address"]


def test_memory_storage_stays_per_process(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account]
) -> None:
    first, second = (limited(app_with, "memory://", RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=3) for _ in range(2))
    assert first.get("/ready").json()["rate_limits"] == "ok"
    victim = make_account()
    for _ in range(3):
        assert login(first, victim.email, WRONG) == 401
    assert login(first, victim.email, victim.password) == 429
    # The other "worker" counts on its own: three more guesses there.
    for _ in range(3):
        assert login(second, victim.email, WRONG) == 401
    assert login(second, victim.email, victim.password) == 429


# --- Redis gone: fail open, say so, and recover ---------------------------------------


def test_with_redis_stopped_logins_and_registrations_go_on_and_ready_says_degraded(
    app_with: Callable[..., TestClient],
    own_redis: OwnRedis,
    storage_failures: list[None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = limited(
        app_with, own_redis.url(), RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT=2, RATE_LIMIT_REGISTRATIONS_PER_ADDRESS=3
    )
    assert register(app, "before@example.com") == 201
    assert login(app, "before@example.com", PASSWORD) == 200
    ready = app.get("/ready")
    assert (ready.status_code, ready.json()["status"], ready.json()["rate_limits"]) == (200, "ok", "ok")
    assert storage_failures == []

    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="agora"):
        for n in range(4):  # past the registration limit
            assert register(app, f"during{n}@example.com") == 201
        for _ in range(4):  # past the account's limit: never 429, never 500
            assert login(app, "before@example.com", WRONG) == 401
        assert login(app, "before@example.com", PASSWORD) == 200
        ready = app.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded"
    assert ready.json()["rate_limits"].startswith("degraded (")
    assert storage_failures, "each request let through unlimited is counted"
    outage_logs = [r for r in caplog.records if "rate-limit storage" in r.getMessage()]
    assert [r.levelno for r in outage_logs] == [logging.ERROR], "logged once, not once per request"

    own_redis.start()  # an empty Redis on the same port: the counts start again
    time.sleep(1.1)  # the storage is left alone for a second after a failure
    with caplog.at_level(logging.WARNING, logger="agora"):
        for _ in range(2):
            assert login(app, "before@example.com", WRONG) == 401
        refused = app.post("/login", data={"username": "before@example.com", "password": PASSWORD})
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert any("answers again" in r.getMessage() for r in caplog.records)
    ready = app.get("/ready")
    assert (ready.status_code, ready.json()["status"], ready.json()["rate_limits"]) == (200, "ok", "ok")


def test_a_stalled_redis_does_not_stall_logins(
    app_with: Callable[..., TestClient], make_account: Callable[..., Account], own_redis: OwnRedis
) -> None:
    """A Redis that accepts connections and never answers (SIGSTOP): each call gives up after 0.25 s."""
    app = limited(app_with, own_redis.url())
    account = make_account()
    assert login(app, account.email, account.password) == 200  # a pooled connection to the live server
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.perf_counter()
        assert login(app, account.email, account.password) == 200
        assert time.perf_counter() - started < 2, "a login waited on the stalled Redis"
        ready = app.get("/ready")
        assert (ready.status_code, ready.json()["status"]) == (200, "degraded")
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    time.sleep(1.1)  # the storage is left alone for a second after a failure
    for _ in range(3):
        assert login(app, account.email, WRONG) == 401  # counted again, on connections that still work
    assert app.get("/ready").json()["status"] == "ok"


def test_an_unknown_storage_scheme_is_refused_at_start_up() -> None:
    for url in ("memcached://127.0.0.1:11211", "redis//127.0.0.1", "redis://:6379/0", "redis://host:port/0"):
        with pytest.raises(ValueError, match="RATE_LIMIT_STORAGE_URL"):
            Settings(RATE_LIMIT_STORAGE_URL=url)
    for url in ("memory://", "redis://127.0.0.1:6379/2", "rediss://user:secret@redis.example:6380/0", "redis://r"):
        settings = Settings(RATE_LIMIT_STORAGE_URL=url)
        assert url == settings.RATE_LIMIT_STORAGE_URL
