"""Past one machine (issue 17): two Agora hosts on one primary, a streaming standby and one Redis.

Everything is the test's own (tests/own_servers.py): a primary; a hot standby made by
`pg_basebackup -R` that replays APPLY_DELAY late; a redis-server on a free port, which a
test stops; and two `python -m app` processes on ports of their own, as two hosts run
them, with the same SECRET_KEY, DATABASE_URL, DATABASE_READ_URL and RATE_LIMIT_STORAGE_URL.
Requests go over HTTP. The file runs in the suite's PostgreSQL pass only: it uses no test
database, and the SQLite pass would only repeat it.
"""

import contextlib
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from conftest import IS_POSTGRESQL, PASSWORD
from own_servers import OwnPostgres, OwnRedis, free_port, new_primary, new_standby, own_redis, remove, wait_for_replay
from prometheus_client.parser import text_string_to_metric_families

from app.config import REPO_ROOT

pytestmark = pytest.mark.skipif(
    not IS_POSTGRESQL,
    reason="starts its own PostgreSQL and Redis servers; runs in the PostgreSQL pass only (TEST_DATABASE_URL)",
)

APPLY_DELAY = "1s"
# Far above APPLY_DELAY: the standby stays in use while it replays late, or is paused for a test.
MAX_LAG_SECONDS = 30
FAILED_LOGINS_PER_ACCOUNT = 4
FAILED_LOGINS_PER_ADDRESS = 6
REGISTRATIONS_PER_ADDRESS = 5
SECRET_KEY = "multi-host-test-secret-key-shared-by-both-hosts-0123456789"
WRONG = "wrong password!"
BOTH_DATABASES_OK = {"primary": "ok", "replica-1": "ok"}


@dataclass
class Host:
    """One `python -m app` process, standing for a host."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """GET /ready's status and body; (0, {}) while the host does not answer."""
        try:
            with self.client() as http:
                response = http.get("/ready")
        except httpx.TransportError:
            return 0, {}
        return response.status_code, response.json()


def start_host(name: str, home: Path, environment: dict[str, str]) -> Host:
    log_path = home / f"host-{name}.log"
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--no-migrate", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Host(name, port, process, log_path)


def host_environment(primary: OwnPostgres, standby: OwnPostgres, redis: OwnRedis) -> dict[str, str]:
    """What every host is configured with, as production would configure it."""
    environment = {
        **os.environ,  # the suite's cheap Argon2 settings among them
        "ENVIRONMENT": "production",
        "SECRET_KEY": SECRET_KEY,  # one key for all hosts: a token from A is valid on B
        "DATABASE_URL": primary.url,
        "DATABASE_READ_URL": standby.url,
        "DATABASE_READ_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_STORAGE_URL": redis.url(),
        "RATE_LIMIT_FAILED_LOGINS_PER_ACCOUNT": str(FAILED_LOGINS_PER_ACCOUNT),
        "RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS": str(FAILED_LOGINS_PER_ADDRESS),
        "RATE_LIMIT_REGISTRATIONS_PER_ADDRESS": str(REGISTRATIONS_PER_ADDRESS),
        # The test names each request's client address in X-Forwarded-For, trusted from loopback.
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "ACCESS_LOG_ENABLED": "false",  # the logs keep what went wrong, for failure messages
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return environment


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Deployment:
    primary: OwnPostgres
    standby: OwnPostgres  # replays APPLY_DELAY late
    redis: OwnRedis
    hosts: tuple[Host, Host]  # A and B

    def logs(self) -> str:
        """The end of every server's log."""
        logs = [(f"host {host.name}", host.log_path.read_text(errors="replace")) for host in self.hosts]
        for name, server in (("standby", self.standby), ("primary", self.primary)):
            logs.append((name, server.log.read_text(errors="replace") if server.log.exists() else ""))
        logs.append(("redis", self.redis.log))
        return "\n".join(f"--- {name}: last lines of its log ---\n{tail(text)}" for name, text in logs)

    @contextlib.contextmanager
    def explained(self) -> Iterator[None]:
        """A failure inside carries the servers' logs."""
        try:
            yield
        except Exception as exc:
            exc.add_note(self.logs())
            raise

    @contextlib.contextmanager
    def clients(self) -> Iterator[tuple[httpx.Client, httpx.Client]]:
        """HTTP clients of host A and host B."""
        with self.hosts[0].client() as a, self.hosts[1].client() as b:
            yield a, b

    def wait_until_ready(self, databases: dict[str, str] = BOTH_DATABASES_OK, rate_limits: str = "ok") -> None:
        """Until /ready on both hosts says the primary and the standby are as given, and the limits too."""
        for host in self.hosts:

            def reached(host: Host = host) -> bool:
                assert host.process.poll() is None, f"host {host.name} exited"
                code, body = host.readiness()
                return code == 200 and body.get("databases") == databases and body.get("rate_limits") == rate_limits

            wait_until(reached, f"host {host.name}: /ready with databases {databases}, rate_limits {rate_limits}")


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def _deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with contextlib.ExitStack() as cleanup:
        primary = new_primary("agora-multi-host-", database="multi_host_test")
        cleanup.callback(remove, primary)
        standby = new_standby(primary, apply_delay=APPLY_DELAY)
        cleanup.callback(remove, standby)
        redis = cleanup.enter_context(own_redis())
        home = tmp_path_factory.mktemp("multi-host")
        environment = host_environment(primary, standby, redis)
        hosts = []
        for name in ("A", "B"):
            host = start_host(name, home, environment)
            cleanup.callback(host.stop)  # the callbacks run last first: hosts stop before their servers
            hosts.append(host)
        deployment = Deployment(primary, standby, redis, (hosts[0], hosts[1]))
        with deployment.explained():
            deployment.wait_until_ready()
        yield deployment


@pytest.fixture
def deployment(_deployment: Deployment) -> Iterator[Deployment]:
    """The module's servers and hosts; no users, posts or Redis keys (limits, marks) left after the test."""
    yield _deployment
    _deployment.primary.query("TRUNCATE votes, posts, users, revoked_tokens CASCADE")
    _deployment.redis.flush()


# --- requests ------------------------------------------------------------------------


def from_address(address: str | None) -> dict[str, str]:
    """Headers that make the hosts see the request as coming from `address` (their limits are per address)."""
    return {"X-Forwarded-For": address} if address else {}


def register(http: httpx.Client, email: str, *, address: str | None = None) -> httpx.Response:
    return http.post("/users/", json={"email": email, "password": PASSWORD}, headers=from_address(address))


def log_in(http: httpx.Client, email: str, password: str = PASSWORD, *, address: str | None = None) -> httpx.Response:
    return http.post("/login", data={"username": email, "password": password}, headers=from_address(address))


def new_user(http: httpx.Client, email: str) -> dict[str, str]:
    """Register `email` and log in, through `http`'s host; the bearer token's headers."""
    registered = register(http, email)
    assert registered.status_code == 201, registered.text
    logged_in = log_in(http, email)
    assert logged_in.status_code == 200, logged_in.text
    return {"Authorization": f"Bearer {logged_in.json()['access_token']}"}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def one_post(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    post: dict[str, Any] = response.json()
    return post


def titles(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [post["Post"]["title"] for post in response.json()]


def replica_fallbacks(http: httpx.Client, reason: str | None = None) -> float:
    """Reads the host has sent to the primary instead of the standby so far (its /metrics), for `reason` or any."""
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "agora_replica_fallbacks_total" and reason in (None, sample.labels["reason"])
    )


def settle(deployment: Deployment, http: httpx.Client, headers: dict[str, str]) -> None:
    """Until the standby has replayed every write so far and this user's feed on this host is read there.

    A read the host sends to the standby is one it counts no fallback for (the test sends nothing else meanwhile).
    """
    wait_for_replay(deployment.primary, deployment.standby)

    def read_on_the_standby() -> bool:
        before = replica_fallbacks(http)
        assert http.get("/posts/", headers=headers).status_code == 200
        return replica_fallbacks(http) == before

    wait_until(read_on_the_standby, "the user's reads on the host never went to the standby")


@contextlib.contextmanager
def replay_paused(standby: OwnPostgres) -> Iterator[None]:
    """The standby replays nothing meanwhile: it cannot show a write made inside, however slowly the test runs."""
    standby.query("SELECT pg_wal_replay_pause()")
    wait_until(lambda: standby.query("SELECT pg_get_wal_replay_pause_state()") == [("paused",)], "replay paused")
    try:
        yield
    finally:
        standby.query("SELECT pg_wal_replay_resume()")


# --- one limit for both hosts ----------------------------------------------------------


def test_failed_logins_spread_over_both_hosts_hit_one_limit(deployment: Deployment) -> None:
    with deployment.explained(), deployment.clients() as (a, b):
        assert register(a, "victim@example.com").status_code == 201
        assert register(b, "bystander@example.com").status_code == 201
        # Guesses at one account, each from another address (only the account's limit applies), A and B in turn.
        for n in range(FAILED_LOGINS_PER_ACCOUNT):
            failed = log_in((a, b)[n % 2], "victim@example.com", WRONG, address=f"198.51.100.{n + 1}")
            assert failed.status_code == 401, failed.text
        # The limit counted them all, not the half each host saw: locked on both, the right password too.
        for n, host in enumerate((a, b)):
            assert_refused(log_in(host, "victim@example.com", address=f"198.51.100.{100 + n}"))
        assert log_in(b, "bystander@example.com", address="198.51.100.200").status_code == 200

        # A spray from one address over many accounts, B and A in turn: the address's limit, counted once.
        sprayer = "203.0.113.7"
        for n in range(FAILED_LOGINS_PER_ADDRESS):
            failed = log_in((b, a)[n % 2], f"nobody{n}@example.com", WRONG, address=sprayer)
            assert failed.status_code == 401, failed.text
        for host in (a, b):
            assert_refused(log_in(host, "bystander@example.com", address=sprayer))


# --- read-your-writes across hosts -------------------------------------------------------


def test_a_write_on_host_a_is_read_back_at_once_on_host_b(deployment: Deployment) -> None:
    with deployment.explained(), deployment.clients() as (a, b):
        author = new_user(a, "author@example.com")
        reader = new_user(b, "reader@example.com")
        settle(deployment, b, reader)
        with replay_paused(deployment.standby):
            created = a.post("/posts/", json={"title": "fresh", "content": "written on A"}, headers=author)
            assert created.status_code == 201, created.text
            post_id = created.json()["id"]
            # B knows A's token, and reads the author's post where it is: on the primary.
            assert one_post(b.get(f"/posts/{post_id}", headers=author))["Post"]["title"] == "fresh"
            assert titles(b.get("/posts/", headers=author)) == ["fresh"]
            # Another user's reads on B go to the standby, which has not replayed the post.
            assert b.get(f"/posts/{post_id}", headers=reader).status_code == 404
            assert titles(b.get("/posts/", headers=reader)) == []
            assert deployment.standby.query("SELECT count(*) FROM posts WHERE id = %s", post_id) == [(0,)]

            edited = a.patch(f"/posts/{post_id}", json={"title": "edited on A"}, headers=author)
            assert edited.status_code == 200, edited.text
            assert one_post(b.get(f"/posts/{post_id}", headers=author))["Post"]["title"] == "edited on A"
            assert titles(b.get("/posts/?search=edited", headers=author)) == ["edited on A"]

            assert a.post("/vote/", json={"post_id": post_id, "dir": 1}, headers=author).status_code == 201
            voted = one_post(b.get(f"/posts/{post_id}", headers=author))
            assert (voted["votes"], voted["voted"]) == (1, True)
            assert a.post("/vote/", json={"post_id": post_id, "dir": 0}, headers=author).status_code == 201
            (unvoted,) = b.get("/posts/", headers=author).json()
            assert (unvoted["votes"], unvoted["voted"]) == (0, False)

            assert a.delete(f"/posts/{post_id}", headers=author).status_code == 204
            assert b.get(f"/posts/{post_id}", headers=author).status_code == 404
            assert titles(b.get("/posts/", headers=author)) == []


# --- the standby stopped under load ------------------------------------------------------


@dataclass
class Answer:
    sent: float  # time.monotonic()
    answered: float
    host: str
    request: str
    status: int  # 0: no HTTP answer at all
    detail: str = ""


@dataclass
class Load:
    """Requests sent from threads until `stopped` is set, and what each got."""

    stopped: threading.Event = field(default_factory=threading.Event)
    answers: list[Answer] = field(default_factory=list)  # list.append is atomic: the threads share it

    def send(self, host: Host, http: httpx.Client, method: str, path: str, **options: Any) -> httpx.Response | None:
        sent = time.monotonic()
        try:
            response = http.request(method, path, **options)
        except httpx.HTTPError as exc:
            self.answers.append(Answer(sent, time.monotonic(), host.name, f"{method} {path}", 0, repr(exc)))
            return None
        detail = "" if response.is_success else response.text
        self.answers.append(Answer(sent, time.monotonic(), host.name, f"{method} {path}", response.status_code, detail))
        return response

    def count(
        self, host: Host, method: str, *, answered_before: float = math.inf, sent_after: float = -math.inf
    ) -> int:
        """How many `method` requests to `host` were answered before `answered_before`, sent after `sent_after`."""
        return sum(
            answer.host == host.name
            and answer.request.startswith(f"{method} ")
            and answer.answered < answered_before
            and answer.sent >= sent_after
            for answer in self.answers
        )

    def read(self, host: Host, headers: dict[str, str], post_id: int) -> None:
        with host.client() as http:
            while not self.stopped.is_set():
                self.send(host, http, "GET", "/posts/", headers=headers)
                self.send(host, http, "GET", f"/posts/{post_id}", headers=headers)

    def write(self, host: Host, headers: dict[str, str]) -> None:
        with host.client() as http:
            while not self.stopped.is_set():
                created = self.send(host, http, "POST", "/posts/", json={"title": "t", "content": "c"}, headers=headers)
                if created is not None and created.status_code == 201:
                    vote = {"post_id": created.json()["id"], "dir": 1}
                    self.send(host, http, "POST", "/vote/", json=vote, headers=headers)


def test_stopping_the_standby_under_load_loses_no_request(deployment: Deployment) -> None:
    with deployment.explained(), deployment.clients() as (a, b):
        both = ((deployment.hosts[0], a), (deployment.hosts[1], b))
        try:
            author = new_user(a, "author@example.com")
            created = a.post("/posts/", json={"title": "read me", "content": "x"}, headers=author)
            assert created.status_code == 201, created.text
            post_id = created.json()["id"]
            readers = [new_user(http, f"reader-{host.name}@example.com") for host, http in both]
            writers = [new_user(http, f"writer-{host.name}@example.com") for host, http in both]
            for (_, http), reader in zip(both, readers, strict=True):
                settle(deployment, http, reader)  # each host sends its reader's reads to the standby
            fallbacks_at_start = [replica_fallbacks(http) for _, http in both]
            down_at_start = [replica_fallbacks(http, "down") for _, http in both]

            load = Load()
            threads = [
                threading.Thread(target=work, args=arguments)
                for (host, _), reader, writer in zip(both, readers, writers, strict=True)
                for work, arguments in ((load.read, (host, reader, post_id)), (load.write, (host, writer)))
            ]
            for thread in threads:
                thread.start()
            try:
                time.sleep(1)
                checked_at = time.monotonic()
                fallbacks_before_stop = [replica_fallbacks(http) for _, http in both]
                deployment.standby.stop("fast")
                stopped_at = time.monotonic()
                time.sleep(1.5)
            finally:
                load.stopped.set()
                for thread in threads:
                    thread.join()

            failures = [answer for answer in load.answers if not 200 <= answer.status < 300]
            assert not failures, f"{len(failures)} of {len(load.answers)} requests failed, e.g. {failures[:5]}"
            for (host, http), at_start, before_stop, down in zip(
                both, fallbacks_at_start, fallbacks_before_stop, down_at_start, strict=True
            ):
                # The standby served reads until it stopped: fewer went to the primary than the host had
                # answered (a read still running when the metrics were read may be among those that did).
                reads_before = load.count(host, "GET", answered_before=checked_at)
                assert before_stop - at_start < reads_before, (host.name, before_stop - at_start, reads_before)
                # Both hosts went on reading and writing once it had stopped: from the primary, as it is down.
                reads, writes = (load.count(host, method, sent_after=stopped_at) for method in ("GET", "POST"))
                assert reads >= 10 and writes >= 5, (host.name, reads, writes)
                assert replica_fallbacks(http, "down") > down
            deployment.wait_until_ready(databases={"primary": "ok", "replica-1": "down"})
        finally:
            if not (deployment.standby.data / "postmaster.pid").exists():
                deployment.standby.start()
            deployment.wait_until_ready()


# --- Redis stopped ---------------------------------------------------------------------


def test_with_redis_stopped_logins_and_registrations_go_on_on_both_hosts(deployment: Deployment) -> None:
    hosts = deployment.hosts
    with deployment.explained(), deployment.clients() as (a, b):
        address = "192.0.2.10"
        assert register(a, "before@example.com", address=address).status_code == 201
        for http in (a, b):
            assert log_in(http, "before@example.com", address=address).status_code == 200
        deployment.redis.stop()
        try:
            # Past every limit, on both hosts, and more than any one host could let through counting alone:
            # never 429, and never 500 or 503 either.
            for n in range(2 * REGISTRATIONS_PER_ADDRESS + 1):
                registered = register((a, b)[n % 2], f"during{n}@example.com", address=address)
                assert registered.status_code == 201, registered.text
            for n in range(2 * max(FAILED_LOGINS_PER_ACCOUNT, FAILED_LOGINS_PER_ADDRESS) + 1):
                failed = log_in((b, a)[n % 2], "before@example.com", WRONG, address=address)
                assert failed.status_code == 401, failed.text
            for http in (a, b):
                for email in ("before@example.com", "during0@example.com"):
                    logged_in = log_in(http, email, address=address)
                    assert logged_in.status_code == 200, logged_in.text
            for host in hosts:
                code, body = host.readiness()
                assert (code, body["status"], body["databases"]) == (200, "degraded", BOTH_DATABASES_OK), body
                assert body["rate_limits"].startswith("degraded ("), body

            # Without the marks in Redis, B cannot tell what the author wrote on A: it reads from the primary.
            author = new_user(a, "author@example.com")
            with replay_paused(deployment.standby):
                created = a.post("/posts/", json={"title": "fresh", "content": "x"}, headers=author)
                assert created.status_code == 201, created.text
                assert b.get(f"/posts/{created.json()['id']}", headers=author).status_code == 200
        finally:
            if deployment.redis.process is None:
                deployment.redis.start()
        # Back, empty, on the same port: both hosts count in it again.
        deployment.wait_until_ready()
