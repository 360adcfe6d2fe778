"""Servers a test starts and stops itself: PostgreSQL clusters (a primary, streaming standbys), PgBouncer, Redis.

PostgreSQL uses the server binaries of this machine (/usr/lib/postgresql/*/bin); as root
(CI), the servers run as the OS user postgres, since initdb and PgBouncer refuse root.
Each lives in a temporary directory of its own, on a free loopback port, and is gone
after the test (`remove`, or the end of the context manager that started it).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.db.migrations import upgrade_to_head


def server_binaries() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)
    return candidates[0].parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def own_home(prefix: str) -> tuple[Path, list[str]]:
    """A temporary directory the servers' OS user owns, and the command prefix that runs as that user."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    home.chmod(0o755)
    if os.geteuid() != 0:
        return home, []
    shutil.chown(home, "postgres")
    return home, ["runuser", "-u", "postgres", "--"]


def needs_server_binaries() -> Path:
    binaries = server_binaries()
    if binaries is None or shutil.which("pgrep") is None:
        pytest.skip("needs the PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    return binaries


@dataclass
class OwnPostgres:
    bin: Path
    data: Path
    port: int
    log: Path
    as_postgres: list[str] = field(default_factory=list)
    database: str = "outage_test"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "stop")

    def kill(self) -> None:
        """Stop at once, and never complain (cleanup)."""
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )

    def processes(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of one statement, run directly on this server (autocommit)."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []


def new_primary(prefix: str = "agora-pg-", database: str = "outage_test", *, migrate: bool = True) -> OwnPostgres:
    """A fresh cluster (replication allowed from 127.0.0.1, as initdb's pg_hba has it), with `database` at head."""
    binaries = needs_server_binaries()
    home, as_postgres = own_home(prefix)
    server = OwnPostgres(binaries, home / "data", free_port(), home / "postgres.log", as_postgres, database)
    subprocess.run(
        [*as_postgres, str(binaries / "initdb"), "-D", str(server.data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    server.start()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    if migrate:
        upgrade_to_head(server.url)
    return server


def new_standby(primary: OwnPostgres, *, apply_delay: str | None = None) -> OwnPostgres:
    """A hot standby of `primary`, streaming from it (`pg_basebackup -R`), optionally replaying `apply_delay` late."""
    home, as_postgres = own_home("agora-standby-")
    standby = OwnPostgres(primary.bin, home / "data", free_port(), home / "postgres.log", as_postgres, primary.database)
    subprocess.run(
        [
            *as_postgres,
            str(primary.bin / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"),
        ],
        check=True,
        capture_output=True,
    )
    if apply_delay is not None:
        with (standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"recovery_min_apply_delay = '{apply_delay}'\n")
    standby.start()
    return standby


def remove(server: OwnPostgres) -> None:
    server.kill()
    shutil.rmtree(server.data.parent, ignore_errors=True)


def wait_for_replay(primary: OwnPostgres, standby: OwnPostgres, *, timeout: float = 30) -> None:
    """Until `standby` has replayed everything `primary` had written when this was called."""
    ((position,),) = primary.query("SELECT pg_current_wal_insert_lsn()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ((replayed,),) = standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", str(position))
        if replayed:
            return
        time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {position} within {timeout} s")


# --- PgBouncer ----------------------------------------------------------------------


def pgbouncer_binary() -> Path | None:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    return Path(found) if found else None


@dataclass
class OwnPgBouncer:
    process: subprocess.Popen[bytes]
    port: int
    home: Path
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log(self) -> str:
        return (self.home / "pgbouncer.log").read_text(errors="replace")


@contextlib.contextmanager
def own_pgbouncer(server: OwnPostgres, *, server_connections: int = 2) -> Iterator[OwnPgBouncer]:
    """PgBouncer in transaction pooling in front of `server`'s database, at most `server_connections` to it."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("needs PgBouncer (apt-get install pgbouncer; .ci/run installs it)")
    home, as_postgres = own_home("agora-pgbouncer-")
    port = free_port()
    (home / "userlist.txt").write_text('"postgres" ""\n')
    (home / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"{server.database} = host=127.0.0.1 port={server.port} dbname={server.database} user=postgres",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {home / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {server_connections}",
                "max_client_conn = 200",
                f"logfile = {home / 'pgbouncer.log'}",
                f"pidfile = {home / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    for path in home.iterdir():
        if as_postgres:
            shutil.chown(path, "postgres")
    process = subprocess.Popen([*as_postgres, str(binary), str(home / "pgbouncer.ini")], stderr=subprocess.PIPE)
    bouncer = OwnPgBouncer(process, port, home, server.database)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"PgBouncer did not start: {process.stderr.read() if process.stderr else b''!r}")
            time.sleep(0.05)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(home, ignore_errors=True)


# --- Redis --------------------------------------------------------------------------


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def redis_answers(port: int, *, timeout: float = 0.5) -> bool:
    """Whether a Redis server on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class OwnRedis:
    """A redis-server of the test's own on a free port, keeping nothing on disk: stop() it and start() it again."""

    binary: str
    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def log(self) -> str:
        """What the server has written, across its restarts."""
        path = self.home / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        # Appended to, so that the log of a run before a restart stays readable.
        with (self.home / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.home)),
                    *("--save", "", "--appendonly", "no"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start on port {self.port}:\n{self.log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (as a crash would), and wait until it is gone."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped (SIGSTOP)
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def flush(self) -> None:
        """Forget every key (limits' counts, read-your-writes marks)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """A started redis-server that only this test uses, and may stop; gone afterwards."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    server = OwnRedis(binary, free_port(), Path(tempfile.mkdtemp(prefix="agora-redis-")))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)


@contextlib.contextmanager
def redis_port() -> Iterator[int]:
    """The port of Redis at 127.0.0.1:6379 when it answers, else of a redis-server of our own."""
    if redis_answers(6379):
        yield 6379
        return
    if redis_server_binary() is None:
        pytest.skip("needs Redis at 127.0.0.1:6379 or redis-server")
    with own_redis() as server:
        yield server.port


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Redis at 127.0.0.1:6379 when it answers, else a redis-server of our own on a free port."""
    with redis_port() as port:
        yield f"redis://127.0.0.1:{port}/0"
