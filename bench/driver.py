"""Interleaved load on several servers of the same API, with wrk and the scenarios in bench/lua/.

    .venv/bin/python bench/driver.py [--users N] [--posts N] [--duration S] [--rounds N]
        [--connections C] [--scenarios list,search,get,create,vote,login] [--out DIR]
        [--database-url postgresql://... ...] LABEL=http://127.0.0.1:PORT [LABEL=URL ...]

The first target is the baseline of the ratios. For every target the driver logs in as
seeded users (user<i>@example.com, `--password`) to get one token per connection, then,
scenario by scenario, runs each target in turn, `--rounds` times: wrk for `--duration`
seconds with `--connections` connections (`--login-connections` for login), one thread
per connection so that every connection is one user with its own token. Before the
recorded rounds each target gets an unrecorded warm-up; from one round to the next the
order of the targets is reversed, and before every run the driver waits until all
targets answer quickly again (a slow server may still be busy with the last run) and,
given the targets' databases (`--database-url`), until no statement runs on them (a
server keeps running what a client stopped waiting for).

Printed, and written to OUT/results.md and OUT/results.json: per target and scenario the
median req/s over the rounds (and its range), the median p50 and p99 latency (wrk's
latency distribution), the number of unexpected answers (anything but 2xx; in the vote
scenario 409 and 404 are expected too: a vote the seed already holds, a removal that finds
nothing) and socket errors, and the ratio to the first target: the median of the per-round
ratios (runs of one round are close in time, so the ratio is steadier than the req/s).
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

LUA_DIR = Path(__file__).resolve().parent / "lua"
SCENARIOS = ["list", "search", "get", "create", "vote", "login"]  # the reads first: the writes change the data
# Searches by the class of query people type (bench/lua/search_classes.lua); asked for by name.
SEARCH_CLASSES = ["search_common", "search_fragment", "search_phrase", "search_absent", "search_long"]
SEARCH_CLASSES += ["search_special", "search_paged", "search_mix"]
EXPECTED_NON_2XX = {"vote": {404, 409}}
RESULT_LINE = re.compile(r"^AGORA_BENCH_RESULT (\{.*\})$", re.MULTILINE)


def say(message: str) -> None:
    print(f"[driver {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Target:
    label: str
    url: str
    tokens_file: str = ""
    contract_problems: list[str] = field(default_factory=list)


@dataclass
class Run:
    target: str
    scenario: str
    round: int
    seconds: float
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[int, int]
    unexpected: int  # answers that are not 2xx (nor an expected 409/404 of the vote scenario)
    expected_non_2xx: int
    socket_errors: int  # connect, read and write errors, timeouts


@dataclass
class Summary:
    target: str
    scenario: str
    rounds: int
    rps: float
    rps_min: float
    rps_max: float
    p50_ms: float
    p99_ms: float
    unexpected: int
    expected_non_2xx: int
    socket_errors: int
    ratio: float | None  # to the first target; None for a baseline at 0 req/s


# --- HTTP -------------------------------------------------------------------------
def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def log_in(base: str, user: int, password: str) -> str:
    form = urllib.parse.urlencode({"username": f"user{user}@example.com", "password": password}).encode()
    status, body = http("POST", f"{base}/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    if status != 200:
        raise SystemExit(f"logging in as user{user} at {base}: HTTP {status} {body[:200]!r}")
    return str(json.loads(body)["access_token"])


def contract_problems(base: str, token: str, posts: int) -> list[str]:
    """What a quick look finds wrong with the target's answers (empty: nothing)."""
    problems: list[str] = []
    auth = {"Authorization": f"Bearer {token}"}
    status, body = http("GET", f"{base}/posts/?limit=10&skip=0", headers=auth)
    page = json.loads(body) if status == 200 else None
    if not isinstance(page, list) or len(page) != 10:
        problems.append(f"GET /posts/?limit=10: HTTP {status}, not a list of 10")
    elif not all(isinstance(item, dict) and {"Post", "votes"} <= item.keys() for item in page):
        problems.append("GET /posts/: items are not {Post, votes}")
    elif not {"id", "title", "content", "published", "created_at", "owner_id", "owner"} <= page[0]["Post"].keys():
        problems.append(f"GET /posts/: Post has {sorted(page[0]['Post'])}")
    status, body = http("GET", f"{base}/posts/{max(1, posts // 2)}", headers=auth)
    if status != 200 or "votes" not in json.loads(body):
        problems.append(f"GET /posts/{{id}}: HTTP {status}")
    status, _ = http("GET", f"{base}/posts/?limit=10")
    if status != 401:
        problems.append(f"GET /posts/ without a token: HTTP {status}, not 401")
    return problems


def answers_quickly(base: str, seconds: float) -> bool:
    """Whether GET /health (any status will do) comes back within `seconds`."""
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=seconds):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def statements_running(database_url: str) -> int:
    """How many statements other sessions are running on the database now."""
    libpq_url = re.sub(r"^postgresql\+\w+://", "postgresql://", database_url)
    with psycopg.connect(libpq_url, autocommit=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(found[0]) if found else 0


def settle(targets: list[Target], pause: float, databases: list[str], patience: float = 60.0) -> None:
    """Pause, then wait until every target answers within 50 ms again and no statement runs on
    `databases`: a server whose client gave up (wrk stops at the end of a run) may still be
    running what it was asked, seconds of it for a search the server has no index for, and the
    next run would share the CPU with it."""
    time.sleep(pause)
    deadline = time.monotonic() + patience
    for target in targets:
        while not answers_quickly(target.url, 0.05):
            if time.monotonic() > deadline:
                say(f"{target.label} is still slow to answer after {patience:.0f}s; going on")
                return
            time.sleep(0.2)
    for database in databases:
        while statements_running(database):
            if time.monotonic() > deadline:
                say(f"statements still run on {database} after {patience:.0f}s; going on")
                return
            time.sleep(0.2)


# --- wrk --------------------------------------------------------------------------
def run_wrk(target: Target, scenario: str, seconds: int, args: argparse.Namespace, round_: int) -> Run:
    connections = args.login_connections if scenario == "login" else args.connections
    env = {
        **os.environ,
        "AGORA_BENCH_LUA": str(LUA_DIR),
        "AGORA_BENCH_TOKENS": target.tokens_file,
        "AGORA_BENCH_POSTS": str(args.posts),
        "AGORA_BENCH_USERS": str(args.users),
        "AGORA_BENCH_PASSWORD": args.password,
    }
    command = [
        args.wrk,
        f"--threads={connections}",  # one connection per thread: one user per connection
        f"--connections={connections}",
        f"--duration={seconds}s",
        f"--timeout={args.timeout}s",
        f"--script={LUA_DIR / (scenario + '.lua')}",
        target.url,
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + args.timeout + 60)
    found = RESULT_LINE.search(finished.stdout)
    if found is None:
        raise SystemExit(f"wrk gave no result (exit {finished.returncode}): {finished.stdout[-800:]}{finished.stderr}")
    raw: dict[str, Any] = json.loads(found.group(1))
    statuses = {int(code): int(count) for code, count in raw["statuses"].items()}
    expected_codes = EXPECTED_NON_2XX.get(scenario, set())
    expected = sum(count for code, count in statuses.items() if code in expected_codes)
    good = sum(count for code, count in statuses.items() if 200 <= code < 300)
    duration = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return Run(
        target=target.label,
        scenario=scenario,
        round=round_,
        seconds=duration,
        requests=raw["requests"],
        rps=raw["requests"] / duration if duration else 0.0,
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        mean_ms=latency["mean"] / 1000,
        max_ms=latency["max"] / 1000,
        statuses=statuses,
        unexpected=sum(statuses.values()) - good - expected,
        expected_non_2xx=expected,
        socket_errors=raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
    )


# --- report -----------------------------------------------------------------------
def summarise(targets: list[Target], scenarios: list[str], runs: list[Run]) -> list[Summary]:
    rows: list[Summary] = []
    baseline = targets[0].label
    for scenario in scenarios:
        base_by_round = {run.round: run.rps for run in runs if run.target == baseline and run.scenario == scenario}
        for target in targets:
            mine = [run for run in runs if run.target == target.label and run.scenario == scenario]
            if not mine:
                continue
            ratios = [run.rps / base_by_round[run.round] for run in mine if base_by_round.get(run.round)]
            rows.append(
                Summary(
                    target=target.label,
                    scenario=scenario,
                    rounds=len(mine),
                    rps=statistics.median(run.rps for run in mine),
                    rps_min=min(run.rps for run in mine),
                    rps_max=max(run.rps for run in mine),
                    p50_ms=statistics.median(run.p50_ms for run in mine),
                    p99_ms=statistics.median(run.p99_ms for run in mine),
                    unexpected=sum(run.unexpected for run in mine),
                    expected_non_2xx=sum(run.expected_non_2xx for run in mine),
                    socket_errors=sum(run.socket_errors for run in mine),
                    ratio=statistics.median(ratios) if ratios else None,
                )
            )
    return rows


def table(rows: list[Summary], baseline: str) -> str:
    lines = [
        f"| scenario | target | req/s (median) | range | p50 ms | p99 ms | non-2xx | socket errors | vs {baseline} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        non_2xx = str(row.unexpected)
        if row.expected_non_2xx:
            non_2xx += f" (+{row.expected_non_2xx} expected 409/404)"
        ratio = "n/a" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(
            f"| {row.scenario} | {row.target} | {row.rps:,.0f} | {row.rps_min:,.0f}-{row.rps_max:,.0f} "
            f"| {row.p50_ms:.2f} | {row.p99_ms:.2f} | {non_2xx} | {row.socket_errors} | {ratio} |"
        )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------
def parse_target(text: str) -> Target:
    label, separator, url = text.partition("=")
    if not separator:
        label, url = "", text
    url = url.rstrip("/")
    if urllib.parse.urlsplit(url).scheme != "http":
        raise SystemExit(f"a target is LABEL=http://HOST:PORT, not {text!r}")
    return Target(label=label or urllib.parse.urlsplit(url).netloc, url=url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", metavar="LABEL=URL", help="the first one is the ratio baseline")
    parser.add_argument("--users", type=int, default=100, help="seeded users (user1..userN)")
    parser.add_argument("--posts", type=int, default=1000, help="seeded posts (ids 1..N)")
    parser.add_argument("--password", default="password123", help="the seeded users' password")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="unrecorded seconds per target and scenario (0: none)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--login-connections", type=int, default=4, help="login is hashing-bound: more only queue")
    parser.add_argument("--timeout", type=int, default=10, help="wrk's per-request timeout, seconds")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--out", default=".", help="directory for results.md, results.json and the token files")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="a target's PostgreSQL database (repeat it): before each run, wait until no statement runs there",
    )
    args = parser.parse_args()

    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS) - set(SEARCH_CLASSES)
    if unknown:
        known = ", ".join(SCENARIOS + SEARCH_CLASSES)
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))} (known: {known})")
    if shutil.which(args.wrk) is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    targets = [parse_target(text) for text in args.targets]
    if len({target.label for target in targets}) != len(targets):
        raise SystemExit("two targets have the same label")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    users = max(args.connections, args.login_connections)
    if users > args.users:
        raise SystemExit(f"{users} connections need as many seeded users, there are {args.users}")
    for target in targets:
        clock = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            logins = [pool.submit(log_in, target.url, user, args.password) for user in range(1, users + 1)]
            tokens = [login.result() for login in logins]
        target.tokens_file = str(out / f"tokens-{re.sub(r'[^A-Za-z0-9_.-]', '_', target.label)}.tsv")
        Path(target.tokens_file).write_text("".join(f"{user}\t{token}\n" for user, token in enumerate(tokens, 1)))
        target.contract_problems = contract_problems(target.url, tokens[0], args.posts)
        verdict = "; ".join(target.contract_problems) or "answers look right"
        say(f"{target.label} ({target.url}): {users} tokens in {time.monotonic() - clock:.1f}s; {verdict}")

    runs: list[Run] = []
    for scenario in scenarios:
        if args.warmup > 0:
            for target in targets:
                settle(targets, args.pause, args.database_url)
                run_wrk(target, scenario, args.warmup, args, -1)
        for round_ in range(args.rounds):
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                settle(targets, args.pause, args.database_url)
                run = run_wrk(target, scenario, args.duration, args, round_)
                runs.append(run)
                extra = f" (+{run.expected_non_2xx} expected)" if run.expected_non_2xx else ""
                say(
                    f"{scenario:6} round {round_ + 1}/{args.rounds} {target.label:10} {run.rps:9,.1f} req/s"
                    f"  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms"
                    f"  non-2xx {run.unexpected}{extra}  socket errors {run.socket_errors}"
                )

    rows = summarise(targets, scenarios, runs)
    connections = f"{args.connections} connections ({args.login_connections} for login)"
    header = (
        f"{args.rounds} rounds x {args.duration}s per scenario and target, interleaved; wrk, {connections}, "
        f"one user per connection; {args.users} users, {args.posts} posts; {os.cpu_count()} CPUs; "
        f"{started} to {time.strftime('%H:%M:%S')}. Ratio: median of the per-round ratios to "
        f"{targets[0].label}. non-2xx: unexpected answers (vote: 409 and 404 are expected, counted apart)."
    )
    problems = [f"- {target.label}: {problem}" for target in targets for problem in target.contract_problems]
    report = header + "\n\n" + table(rows, targets[0].label) + "\n"
    if problems:
        report += "\nContract check:\n" + "\n".join(problems) + "\n"
    (out / "results.md").write_text(report)
    saved = {
        "started": started,
        "arguments": {key: value for key, value in vars(args).items() if key != "password"},
        "targets": [asdict(target) for target in targets],
        "summary": [asdict(row) for row in rows],
        "runs": [asdict(run) for run in runs],
    }
    (out / "results.json").write_text(json.dumps(saved, indent=1) + "\n")
    print(report)
    print(f"results: {out / 'results.md'}, {out / 'results.json'}")


if __name__ == "__main__":
    main()
