"""Revocation reaches every worker at once: `python -m app --workers 2` as production runs it.

Each worker keeps its own memo of verified tokens (app/security.py). The test holds
keep-alive connections open to both workers (it finds which worker owns each one from
/proc, so Linux only), makes every worker verify and remember the token, revokes it
through another connection, and then expects 401 from both workers on the connections
they already served, and on fresh connections, with no pause in between.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient

from app.config import REPO_ROOT

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="finds each connection's worker in /proc")

SECRET_KEY = "two-workers-test-secret-key-0123456789-abcdefghijkl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, list[int]]]:
    """The run command with two workers on the test database, for the whole module; (port, worker pids)."""
    tmp_path = tmp_path_factory.mktemp("two-workers")
    port = free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": migrated_database,
        "RATE_LIMIT_ENABLED": "false",
        "ACCESS_LOG_ENABLED": "false",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--no-migrate", "--workers", "2", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        workers = wait_for_workers(server, port, count=2)
        yield port, workers
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def two_workers(server: tuple[int, list[int]], client: TestClient) -> tuple[int, list[int]]:
    """The server above; `client` empties the tables after each test."""
    return server


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # the field after the state is the parent's pid
                found.append(int(entry.name))
    return found


def is_worker(pid: int) -> bool:
    """A worker process, not multiprocessing's resource tracker (also a child of the server)."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for_workers(server: subprocess.Popen[bytes], port: int, *, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited at start-up (see server.log in the test's tmp_path)"
        workers = [pid for pid in children(server.pid) if is_worker(pid)]
        if len(workers) >= count and request(port, "GET", "/health")[0] == 200:
            return workers
        time.sleep(0.1)
    pytest.fail("the server did not start two workers within 30 s")


def request(
    port: int, method: str, path: str, *, body: Any = None, token: str | None = None, form: bool = False
) -> tuple[int, Any]:
    """One request on a connection of its own (closed afterwards)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return send(connection, method, path, body=body, token=token, form=form)
    except ConnectionRefusedError:
        return 0, None
    finally:
        connection.close()


def send(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
    form: bool = False,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = None
    if form:
        payload = urlencode(body)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None


def socket_owners(pids: list[int]) -> dict[int, int]:
    """Socket inode -> the pid (among `pids`) that holds it."""
    owners = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def worker_of(connection: http.client.HTTPConnection, server_port: int, workers: list[int]) -> int | None:
    """The worker holding the server side of `connection` (from /proc/net/tcp and the workers' descriptors)."""
    assert connection.sock is not None
    client_port = connection.sock.getsockname()[1]
    owners = socket_owners(workers)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port:
                return owners.get(int(fields[9]))
    return None


def log_in(port: int, email: str, password: str = PASSWORD) -> str:
    status, body = request(port, "POST", "/login", body={"username": email, "password": password}, form=True)
    assert status == 200, body
    token: str = body["access_token"]
    return token


def connections_on_every_worker(
    port: int, workers: list[int], token: str
) -> dict[int, list[http.client.HTTPConnection]]:
    """Keep-alive connections, at least two per worker, each of which has served the token once (200)."""
    by_worker: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in workers}
    for _ in range(200):
        if all(len(held) >= 2 for held in by_worker.values()):
            return by_worker
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert send(connection, "GET", "/users/me", token=token)[0] == 200
        owner = worker_of(connection, port, workers)
        if owner is None or len(by_worker[owner]) >= 2:
            connection.close()
            continue
        by_worker[owner].append(connection)
    pytest.fail(f"could not reach both workers: { ({pid: len(held) for pid, held in by_worker.items()}) }")


REVOCATIONS: dict[str, Callable[[int, str], tuple[int, Any]]] = {
    "logout": lambda port, token: request(port, "POST", "/logout", token=token),
    "logout everywhere": lambda port, token: request(port, "POST", "/users/me/logout-all", token=token),
    "password change": lambda port, token: request(
        port,
        "PUT",
        "/users/me/password",
        body={"current_password": PASSWORD, "new_password": "another password"},
        token=token,
    ),
    "account deletion": lambda port, token: request(
        port, "DELETE", "/users/me", body={"password": PASSWORD}, token=token
    ),
}


@pytest.mark.parametrize("revocation", list(REVOCATIONS))
def test_a_revoked_token_is_refused_by_every_worker_at_once(
    two_workers: tuple[int, list[int]], revocation: str
) -> None:
    port, workers = two_workers
    email = f"{revocation.replace(' ', '-')}@example.com"
    status, body = request(port, "POST", "/users/", body={"email": email, "password": PASSWORD})
    assert status == 201, body
    token = log_in(port, email)
    held = connections_on_every_worker(port, workers, token)  # each worker has verified and remembered it
    try:
        status, body = REVOCATIONS[revocation](port, token)
        assert status == 204, body

        on_held = {pid: [send(c, "GET", "/users/me", token=token)[0] for c in conns] for pid, conns in held.items()}
        fresh = [request(port, "GET", "/posts/", token=token)[0] for _ in range(50)]
    finally:
        for connections in held.values():
            for connection in connections:
                connection.close()
    assert on_held == {pid: [401, 401] for pid in workers}
    assert fresh == [401] * 50
