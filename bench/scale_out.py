"""Agora past one process, on this machine: workers, two hosts behind a load balancer, a standby for reads.

    .venv/bin/python -m bench.scale_out [--posts N] [--users N] [--duration S] [--rounds N]
        [--scenarios list,get,vote,login]

The figures of README's "Scaling out". It builds everything it measures, on free ports,
and removes it afterwards (the same servers the multi-host test starts, tests/own_servers.py):
1. a PostgreSQL primary with the benchmark's settings (bench/pg.sh's, but `wal_level =
   replica`), seeded with bench/seed.py (all posts published), and a hot standby of it
   (`pg_basebackup -R`, streaming);
2. a Redis of its own (nothing on disk), and HAProxy (Debian's; installed when missing),
   round robin over the "hosts" of each target;
3. Agora as the production start documents it (`python -m app --no-migrate`), one
   SECRET_KEY for all, rate limits on, in five shapes:
   - `1-worker`: one process, one worker;
   - `1-host`: one process, two workers (one per core: the single-host baseline);
   - `1-host+lb`: the same behind HAProxy, which tells the load balancer's own cost;
   - `2-hosts`: two processes of one worker each on their own ports ("hosts"), behind
     HAProxy, their limits and read-your-writes marks in the shared Redis;
   - `2-hosts+standby`: the same with `DATABASE_READ_URL` = the standby, so the feed and
     single-post reads go there;
4. runs bench/driver.py against the five, interleaved (ratios to `1-host`).

On one 2-core machine every shape shares the same two cores with PostgreSQL, the standby,
Redis, HAProxy and wrk: the figures say what each piece costs, not how far more machines
would carry. Results: bench/results/<time>-scale-out/.
"""

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The servers the multi-host test starts: one implementation for both (tests/ is not a package).
sys.path.insert(0, str(REPO / "tests"))
from own_servers import (  # noqa: E402
    OwnPostgres,
    free_port,
    new_primary,
    new_standby,
    own_redis,
    remove,
    wait_for_replay,
)

# bench/pg.sh's settings, with what streaming replication needs.
PRIMARY_SETTINGS = {
    "shared_buffers": "1GB",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "max_connections": "200",
}


def say(message: str) -> None:
    print(f"[scale-out {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        say("installing Debian's HAProxy")
        subprocess.run(["apt-get", "install", "-y", "-qq", "haproxy"], check=True, capture_output=True)
        found = "/usr/sbin/haproxy"
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_answers(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up; the end of {log}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


class Processes:
    """Everything started here, stopped (SIGTERM, then SIGKILL) in reverse order at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def agora(self, name: str, port: int, workers: int, environment: dict[str, str]) -> None:
        log = self.logs / f"{name}.log"
        command = [sys.executable, "-m", "app", "--no-migrate", "--workers", str(workers), "--port", str(port)]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=REPO, env={**os.environ, **environment}, stdout=output, stderr=subprocess.STDOUT
            )
        self.started.append(process)
        wait_until_answers(f"http://127.0.0.1:{port}/health", process, log)

    def haproxy(self, binary: str, frontends: dict[int, list[int]]) -> None:
        """One HAProxy: each frontend port balances, round robin, over its backend ports."""
        lines = [
            "global",
            "  maxconn 4096",
            "defaults",
            "  mode http",
            "  timeout connect 5s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  option http-keep-alive",
        ]
        for port, backends in frontends.items():
            lines += [f"listen agora_{port}", f"  bind 127.0.0.1:{port}", "  balance roundrobin"]
            lines += [f"  server host{i} 127.0.0.1:{backend}" for i, backend in enumerate(backends, 1)]
        config = self.logs / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        log = self.logs / "haproxy.log"
        with log.open("wb") as output:
            process = subprocess.Popen([binary, "-f", str(config)], stdout=output, stderr=subprocess.STDOUT)
        self.started.append(process)
        for port in frontends:
            wait_until_answers(f"http://127.0.0.1:{port}/health", process, log)

    def stop(self) -> None:
        for process in reversed(self.started):
            process.terminate()
        for process in reversed(self.started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def primary_and_standby(users: int, posts: int, votes: int) -> Iterator[tuple[OwnPostgres, OwnPostgres]]:
    primary = new_primary("agora-scale-", database="agora_scale", migrate=False)
    standby: OwnPostgres | None = None
    try:
        for name, value in PRIMARY_SETTINGS.items():
            primary.query(f"ALTER SYSTEM SET {name} = '{value}'")
        primary.stop()
        primary.start()
        say(f"seeding the primary (127.0.0.1:{primary.port}): {users} users, {posts} posts, {votes} votes")
        subprocess.run(
            [
                *(sys.executable, "-m", "bench.seed", "--database-url", primary.url),
                *("--users", str(users), "--posts", str(posts), "--votes", str(votes)),
            ],
            cwd=REPO,
            check=True,
        )
        primary.query("CHECKPOINT")
        say("copying it to a standby (pg_basebackup -R)")
        standby = new_standby(primary)
        wait_for_replay(primary, standby, timeout=300)
        yield primary, standby
    finally:
        if standby is not None:
            remove(standby)
        remove(primary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--votes", type=int, default=5_000_000)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="list,get,vote,login")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    haproxy = haproxy_binary()
    out = REPO / "bench" / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-scale-out"
    out.mkdir(parents=True)
    processes = Processes(out)
    with primary_and_standby(args.users, args.posts, args.votes) as (primary, standby), own_redis() as redis:
        try:
            common = {
                "ENVIRONMENT": "production",
                "SECRET_KEY": secrets.token_urlsafe(48),
                "DATABASE_URL": primary.url,
                "RATE_LIMIT_ENABLED": "true",
                # All load comes from one address, and the driver logs each user in once per
                # target: generous address limits keep the login scenario measuring logins.
                "RATE_LIMIT_FAILED_LOGINS_PER_ADDRESS": "1000000",
            }
            shared = {**common, "RATE_LIMIT_STORAGE_URL": redis.url(0)}
            with_standby = {**shared, "DATABASE_READ_URL": standby.url}
            ports = {name: free_port() for name in ("1-worker", "1-host", "a", "b", "a+standby", "b+standby")}
            say("starting Agora: 1 worker; 2 workers; two one-worker hosts twice (with and without the standby)")
            processes.agora("1-worker", ports["1-worker"], 1, common)
            processes.agora("1-host", ports["1-host"], 2, common)
            processes.agora("host-a", ports["a"], 1, shared)
            processes.agora("host-b", ports["b"], 1, shared)
            processes.agora("host-a+standby", ports["a+standby"], 1, with_standby)
            processes.agora("host-b+standby", ports["b+standby"], 1, with_standby)
            balanced = {name: free_port() for name in ("1-host+lb", "2-hosts", "2-hosts+standby")}
            processes.haproxy(
                haproxy,
                {
                    balanced["1-host+lb"]: [ports["1-host"]],
                    balanced["2-hosts"]: [ports["a"], ports["b"]],
                    balanced["2-hosts+standby"]: [ports["a+standby"], ports["b+standby"]],
                },
            )
            targets = {
                "1-host": ports["1-host"],
                "1-worker": ports["1-worker"],
                "1-host+lb": balanced["1-host+lb"],
                "2-hosts": balanced["2-hosts"],
                "2-hosts+standby": balanced["2-hosts+standby"],
            }
            say(f"running bench/driver.py ({args.scenarios}); results in {out}")
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "bench" / "driver.py"),
                    *("--users", str(args.users), "--posts", str(args.posts)),
                    *("--duration", str(args.duration), "--rounds", str(args.rounds)),
                    *("--scenarios", args.scenarios, "--out", str(out)),
                    *(f"{label}=http://127.0.0.1:{port}" for label, port in targets.items()),
                ],
                check=True,
            )
            replica_reads = standby.query("SELECT sum(xact_commit) FROM pg_stat_database")[0][0]
            (out / "standby.txt").write_text(f"transactions committed on the standby: {replica_reads}\n")
            say(f"the standby committed {replica_reads} transactions (its reads)")
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
