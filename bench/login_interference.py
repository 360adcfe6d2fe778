"""Does logging in (deliberately slow hashing) stall the feed? List p99 alone, then with 4 logins/s.

    .venv/bin/python bench/login_interference.py --url http://127.0.0.1:8000 [--users 10000] [--duration 10]

Expects seeded users user<i>@example.com with the password `password123`
(bench/seed.py). The list load is wrk (16 connections, one token); the logins are
real POST /login requests from a separate thread pool, started every 1/rate seconds.
"""

import argparse
import concurrent.futures
import json
import re
import statistics
import subprocess
import threading
import time
import urllib.parse
import urllib.request

PASSWORD = "password123"


def login(url: str, user: int) -> float:
    body = urllib.parse.urlencode({"username": f"user{user}@example.com", "password": PASSWORD}).encode()
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/login", data=body), timeout=30) as response:
        json.load(response)
    return time.perf_counter() - started


def token(url: str) -> str:
    body = urllib.parse.urlencode({"username": "user1@example.com", "password": PASSWORD}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{url}/login", data=body), timeout=30) as response:
        return str(json.load(response)["access_token"])


def wrk_list(url: str, bearer: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests per second, p99 in ms) of GET /posts/?limit=10."""
    output = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-H",
            f"Authorization: Bearer {bearer}",
            f"{url}/posts/?limit=10",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rate, p99_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=4.0, help="logins per second alongside the list load")
    args = parser.parse_args()

    bearer = token(args.url)
    wrk_list(args.url, bearer, 2, args.connections)  # warm-up
    alone_rate, alone_p99 = wrk_list(args.url, bearer, args.duration, args.connections)

    stop = threading.Event()
    latencies: list[float] = []

    def timed_login(user: int) -> None:
        latencies.append(login(args.url, user))

    def start_logins() -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            user, next_start = 2, time.perf_counter()
            while not stop.is_set():
                pool.submit(timed_login, user)
                user = user % args.users + 1
                next_start += 1 / args.rate
                time.sleep(max(0.0, next_start - time.perf_counter()))

    logins = threading.Thread(target=start_logins)
    logins.start()
    time.sleep(1)
    busy_rate, busy_p99 = wrk_list(args.url, bearer, args.duration, args.connections)
    stop.set()
    logins.join()

    print(f"list alone:            {alone_rate:8.1f} req/s  p99 {alone_p99:7.1f} ms")
    print(f"list with {args.rate:g} logins/s: {busy_rate:8.1f} req/s  p99 {busy_p99:7.1f} ms")
    print(f"p99 ratio (with/without logins): {busy_p99 / alone_p99:.2f}  (target <= 2)")
    if latencies:
        print(
            f"logins: {len(latencies)}, median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
