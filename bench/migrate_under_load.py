"""`alembic upgrade head` on the large dataset while the API serves writers and readers.

    .venv/bin/python -m bench.migrate_under_load --database-url postgresql://postgres@127.0.0.1:5440/agora_large_mig
    .venv/bin/python -m bench.migrate_under_load ... --scenario course --tree /tmp/agora-before --label before

For each scenario: bring the database (seeded by bench/seed.py, at head) down to the
scenario's starting point with the chosen tree's Alembic, start the API on it
(`python -m app --no-migrate --workers 2`, production settings, rate limits off), start
`--writers` threads creating posts and `--readers` threads listing the feed (each logged
in as its own seeded user, one request after another), wait `--warmup` seconds
(measured too: the starting point's own gaps), run `alembic upgrade head` from the
tree, keep the load `--after` seconds more, then print: the upgrade's time, the
longest stretch without a successful write and without a successful read (between
the upgrade's start and the end of the load, and for reads also from 2 s after the
upgrade's end), and the count of each kind's 5xx in that time.

Scenarios (starting points):
- course: the course app's point. With this tree (which can adopt): the seeded database
  is marked adopted and handed back with `alembic downgrade 936002196a31`, so it is a
  course app database (the course's constraint names, alembic_version c47ecbf163d4).
  With a tree that cannot (`--label before`, an older checkout): Agora's 936002196a31,
  as an adopted database would stand there.
- course-indexed: the same course app database, after `alembic upgrade 208054a49a86`
  (its feed's indexes, built before the API serves it: README, "Stepping through the
  schema"). This tree only.
- before-<revision>: the revision before one that builds indexes: 208054a49a86 (the
  feed's btree indexes; since issue 14), 38ab528790a7 (unique emails ignoring case),
  d3a3882d73c8 (the title search's trigram index; before issue 14 the feed's too).
`--tree` is the checkout whose Alembic runs, `--api-tree` the one whose API serves
(both default to this one; the API must serve the schema before the upgrade).
Everything it starts is stopped on exit. After each scenario the database is at head
again.
"""

import argparse
import http.client
import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "password123"
COURSE_HEAD = "c47ecbf163d4"
ADOPTION_POINT = "936002196a31"
ADOPTED_MARKER = f"agora: adopted from the course app at {COURSE_HEAD}"
# The revisions that build indexes, oldest first (208054a49a86 exists since issue 14).
INDEX_REVISIONS = ("208054a49a86", "38ab528790a7", "d3a3882d73c8", "0790f43abbfb")


def say(message: str) -> None:
    print(f"[migrate-under-load {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Event:
    kind: str  # "write", "read" (the feed) or "get" (one post)
    finished: float  # monotonic seconds
    status: int  # 0: no answer (connection error or client timeout)
    seconds: float


@dataclass
class Load:
    base: str
    events: list[Event] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)


def log_in(host: str, port: int, user: int) -> str:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    body = urllib.parse.urlencode({"username": f"user{user}@example.com", "password": PASSWORD})
    connection.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.status != 200:
        raise SystemExit(f"login as user{user}@example.com: {response.status} {payload[:200]!r}")
    return str(json.loads(payload)["access_token"])


def client(load: Load, host: str, port: int, kind: str, token: str, number: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection(host, port, timeout=15)
    sent = 0
    while not load.stop.is_set():
        sent += 1
        started = time.monotonic()
        status = 0
        try:
            if kind == "write":
                body = json.dumps({"title": f"written under migration {number}-{sent}", "content": "load"})
                connection.request("POST", "/posts/", body, headers)
            elif kind == "get":
                connection.request("GET", f"/posts/{random.randint(1, 1_000_000)}", headers=headers)
            else:
                connection.request("GET", "/posts/?limit=10", headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=15)
            time.sleep(0.05)
        finished = time.monotonic()
        load.record(Event(kind, finished, status, finished - started))
    connection.close()


def longest_gap(events: list[Event], kind: str, start: float, end: float) -> float:
    """The longest time within [start, end] without a successful (2xx) answer of this kind."""
    times = sorted(
        e.finished for e in events if e.kind == kind and 200 <= e.status < 300 and start <= e.finished <= end
    )
    edges = [start, *times, end]
    return max(b - a for a, b in itertools.pairwise(edges))


MIGRATION_APP_NAME = "agora-migration"


def alembic(tree: Path, env: dict[str, str], *args: str) -> tuple[int, float, str]:
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=tree,
        env={**env, "PGAPPNAME": MIGRATION_APP_NAME},  # so that trace() finds its session
        capture_output=True,
        text=True,
        check=False,
    )
    return process.returncode, time.monotonic() - started, process.stdout + process.stderr


def must(result: tuple[int, float, str], what: str) -> None:
    if result[0] != 0:
        raise SystemExit(f"{what} failed:\n{result[2]}")


def trace(dsn: str, stop: threading.Event, timeline: list[tuple[float, str]]) -> None:
    """What the migration's session runs, each time it changes (polled every 0.1 s)."""
    last = ""
    with psycopg.connect(dsn, autocommit=True) as connection:
        while not stop.is_set():
            row = connection.execute(
                "SELECT state, coalesce(wait_event_type, ''), left(query, 90) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (MIGRATION_APP_NAME,),
            ).fetchone()
            if row is not None and row[0] == "active":
                now = f"{row[2]} [waiting: {row[1]}]" if row[1] == "Lock" else row[2]
                if now != last:
                    timeline.append((time.monotonic(), now))
                    last = now
            time.sleep(0.1)


def gaps(events: list[Event], kind: str, start: float, end: float, longer_than: float) -> list[str]:
    """Each stretch without a successful answer of this kind longer than `longer_than`, as
    `<start>+<length>` in seconds from `start`."""
    times = sorted(
        e.finished for e in events if e.kind == kind and 200 <= e.status < 300 and start <= e.finished <= end
    )
    edges = [start, *times, end]
    return [f"{a - start:.1f}+{b - a:.1f}" for a, b in itertools.pairwise(edges) if b - a > longer_than]


def current_version(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]


def prepare(scenario: str, tree: Path, env: dict[str, str], dsn: str, can_adopt: bool) -> str:
    """Bring the database from head to the scenario's starting point; return where it stands."""
    if current_version(dsn) == [COURSE_HEAD]:
        must(alembic(REPO, env, "upgrade", "head"), "upgrade of a course database left by an earlier run")
    if scenario in ("course", "course-indexed"):
        if can_adopt:
            # Seeded by Agora, so not adopted: mark it as the adopt revision would have, and
            # take the way back (README, "Stepping through the schema").
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute(f"COMMENT ON TABLE alembic_version IS '{ADOPTED_MARKER}'")
            must(alembic(tree, env, "downgrade", ADOPTION_POINT), "the way back to the course app")
            if scenario == "course-indexed":
                # README's procedure for a large course database: its feed indexed first,
                # while the course app still serves it (nothing the course app sees changes).
                must(alembic(tree, env, "upgrade", "208054a49a86"), "indexing the course database's feed")
        else:
            must(alembic(tree, env, "downgrade", ADOPTION_POINT), "downgrade to 936002196a31")
    else:
        # An Agora database: not marked as adopted (an earlier course scenario marks it).
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("COMMENT ON TABLE alembic_version IS NULL")
        target = scenario.removeprefix("before-")
        must(alembic(tree, env, "downgrade", f"{target}-1"), f"downgrade to before {target}")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE posts")
        connection.execute("VACUUM ANALYZE votes")
        connection.execute("CHECKPOINT")
    return ", ".join(current_version(dsn))


def wait_up(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API did not start; its log: {log}\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection(host, port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not answer /health within 60 s (log: {log})")


def run(args: argparse.Namespace, scenario: str, can_adopt: bool) -> dict[str, object]:
    tree = Path(args.tree).resolve()
    dsn = args.database_url
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
        "RATE_LIMIT_ENABLED": "false",
    }
    say(f"{scenario}: preparing the database with {tree}'s Alembic")
    start_point = prepare(scenario, tree, env, dsn, can_adopt)
    say(f"{scenario}: the database is at {start_point}; starting the API on :{args.port}")
    log = Path(args.log_dir) / f"api-{args.label}-{scenario}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        api = subprocess.Popen(
            [sys.executable, "-m", "app", "--no-migrate", "--workers", "2", "--port", str(args.port)],
            cwd=Path(args.api_tree).resolve(),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        host = "127.0.0.1"
        wait_up(host, args.port, api, log)
        load = Load(f"http://{host}:{args.port}")
        kinds = ["write"] * args.writers + ["read"] * args.readers + ["get"] * args.get_readers
        tokens = [log_in(host, args.port, user) for user in range(1, len(kinds) + 1)]
        threads = [
            threading.Thread(target=client, args=(load, host, args.port, kind, tokens[n], n), daemon=True)
            for n, kind in enumerate(kinds)
        ]
        for thread in threads:
            thread.start()
        load_started = time.monotonic()
        time.sleep(args.warmup)
        say(f"{scenario}: {args.writers} writers and {args.readers} readers running; alembic upgrade head")
        timeline: list[tuple[float, str]] = []
        tracing = threading.Event()
        tracer = threading.Thread(target=trace, args=(dsn, tracing, timeline), daemon=True)
        tracer.start()
        started = time.monotonic()
        if args.control:
            say(f"{scenario}: control run, no upgrade: {args.control} s of load only")
            time.sleep(args.control)
            code, took, output_text = 0, args.control, ""
        else:
            code, took, output_text = alembic(tree, env, "upgrade", "head")
        ended = time.monotonic()
        tracing.set()
        tracer.join()
        time.sleep(args.after)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=20)
        finished = time.monotonic()
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        try:
            api.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()
    # The same measures over the warm-up, before the upgrade: what the starting point itself
    # does under this load (its first second left out: connections being opened).
    warm = [e for e in load.events if load_started + 1 <= e.finished <= started]
    events = [e for e in load.events if started <= e.finished <= finished]
    counted = ("write", "read", "get")
    errors = {kind: sum(1 for e in events if e.kind == kind and e.status >= 500) for kind in counted}
    no_answer = {kind: sum(1 for e in events if e.kind == kind and e.status == 0) for kind in counted}
    other = sorted({e.status for e in events if 300 <= e.status < 500})
    result: dict[str, object] = {
        "label": args.label,
        "scenario": scenario,
        "from": start_point,
        "upgrade_exit": code,
        "upgrade_s": round(took, 2),
        "write_gap_s": round(longest_gap(events, "write", started, finished), 2),
        "read_gap_s": round(longest_gap(events, "read", started, finished), 2),
        "read_gap_from_end_plus_2_s": round(longest_gap(events, "read", ended + 2, finished), 2),
        "writes_ok": sum(1 for e in events if e.kind == "write" and 200 <= e.status < 300),
        "reads_ok": sum(1 for e in events if e.kind == "read" and 200 <= e.status < 300),
        "before_upgrade": {
            "write_gap_s": round(longest_gap(warm, "write", load_started + 1, started), 2),
            "read_gap_s": round(longest_gap(warm, "read", load_started + 1, started), 2),
            "write_5xx": sum(1 for e in warm if e.kind == "write" and e.status >= 500),
            "read_5xx": sum(1 for e in warm if e.kind == "read" and e.status >= 500),
        },
        "write_5xx": errors["write"],
        "read_5xx": errors["read"],
        "no_answer": no_answer,
        "other_statuses": other,
        "now_at": ", ".join(current_version(dsn)),
    }
    result["write_gaps_over_0.5_s"] = gaps(events, "write", started, finished, 0.5)
    result["write_5xx_at_s"] = [round(e.finished - started, 1) for e in events if e.kind == "write" and e.status >= 500]
    result["read_gaps_over_1_s"] = gaps(events, "read", started, finished, 1.0)
    result["upgrade_timeline"] = [f"{t - started:.1f}s {what}" for t, what in timeline]
    if args.get_readers:
        result["get_gap_s"] = round(longest_gap(events, "get", started, finished), 2)
        result["get_5xx"] = errors["get"]
    if code != 0:
        result["upgrade_output"] = output_text[-2000:]
    say(f"{scenario}: {json.dumps(result, indent=1)}")
    if code != 0 or args.control:
        say(f"{scenario}: bringing the database to head without load")
        must(alembic(tree, env, "upgrade", "head"), "the upgrade after a failed one")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the seeded large database (it is changed)")
    parser.add_argument(
        "--scenario",
        default="all",
        help="course, course-indexed, before-<revision> (an index revision), or all: course and each before-",
    )
    parser.add_argument("--tree", default=str(REPO), help="the checkout whose Alembic runs (default: this one)")
    parser.add_argument(
        "--api-tree", default=str(REPO), help="the checkout whose API serves the load (default: this one)"
    )
    parser.add_argument("--label", default="after", help="a name for this tree in the results")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--get-readers", type=int, default=0, help="threads reading one post by id (GET /posts/{id})")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument(
        "--control",
        type=float,
        default=0,
        help="seconds of load at the starting point instead of the upgrade (what the starting point does alone)",
    )
    parser.add_argument("--log-dir", default=str(REPO / "bench" / "results" / "migrate-under-load"))
    args = parser.parse_args()
    can_adopt = (Path(args.tree) / "app" / "db" / "adoption.py").exists()
    versions = "".join(path.name for path in (Path(args.tree) / "alembic" / "versions").glob("*.py"))
    present = [f"before-{revision}" for revision in INDEX_REVISIONS if revision in versions]
    scenarios = ["course", *present] if args.scenario == "all" else [args.scenario]
    for scenario in scenarios:
        if scenario not in ("course", "course-indexed", *present):
            raise SystemExit(f"unknown scenario {scenario}: course, course-indexed, {', '.join(present)} or all")
    results = [run(args, scenario, can_adopt) for scenario in scenarios]
    print()
    print(
        "| tree | from | upgrade s | longest without a write s | longest without a read s "
        "| reads, from end + 2 s | write 5xx | read 5xx |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        failed = "" if r["upgrade_exit"] == 0 else " (failed)"
        print(
            f"| {r['label']} | {r['scenario']} ({r['from']}) | {r['upgrade_s']}{failed} | {r['write_gap_s']} "
            f"| {r['read_gap_s']} | {r['read_gap_from_end_plus_2_s']} | {r['write_5xx']} | {r['read_5xx']} |"
        )


if __name__ == "__main__":
    main()
