"""What one brute-force limit call costs (app/domain/ratelimit.py), in memory and in Redis.

    PYTHONPATH=. .venv/bin/python bench/ratelimit_cost.py [--redis redis://127.0.0.1:6379/14] [--pairs 10000]

Times `--pairs` pairs of calls in a row, one key after another, on memory:// and on the
Redis given: the library's own `test` + `hit`, and the app's `Limit.retry_after` + `hit`
(what a failed login does for each of its two limits, fail-open wrapper included). Prints
microseconds per call, wall clock and this process's CPU (Redis's own work is not in the
latter). Then what one background sweep of expired entries costs the memory storage with
many live keys. It writes keys `agora:bench_cost/...` in that Redis database and deletes
them afterwards.
"""

import argparse
import asyncio
import time

from limits.aio.storage import MemoryStorage

from app.domain.ratelimit import Limit, LimitStorage


async def per_call_microseconds(url: str, pairs: int, keys: int, amount: int, app_path: bool) -> tuple[float, float]:
    """Wall-clock and this process's CPU microseconds per call."""
    storage = LimitStorage(url)
    limit = Limit("bench_cost", amount, 60, storage)
    limiter, item = storage.limiter, limit.item
    names = [f"bench {n}" for n in range(keys)]
    for name in names:
        await limiter.clear(item, name)
    started, cpu_started = time.perf_counter(), time.process_time()
    for n in range(pairs):
        key = names[n % keys]
        if app_path:
            await limit.retry_after(key)
            await limit.hit(key)
        else:
            await limiter.test(item, key)
            await limiter.hit(item, key)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    for name in names:
        await limiter.clear(item, name)
    storage.close()
    return elapsed / (2 * pairs) * 1e6, cpu / (2 * pairs) * 1e6


async def memory_sweep_milliseconds(keys: int) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds of the memory storage's background sweep with `keys` live keys."""
    storage = LimitStorage("memory://")
    limit = Limit("bench_cost", 5, 60, storage)
    memory = storage.storage
    assert isinstance(memory, MemoryStorage)
    for n in range(keys):
        await limit.hit(f"bench {n}")
    if memory.timer is not None:  # the last sweep those counts started
        await memory.timer
    started, cpu_started = time.perf_counter(), time.process_time()
    await limit.hit("one more")  # starts a sweep over every key
    if memory.timer is not None:
        await memory.timer
    return (time.perf_counter() - started) * 1e3, (time.process_time() - cpu_started) * 1e3


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--pairs", type=int, default=10_000)
    args = parser.parse_args()
    for url in ("memory://", args.redis):
        for keys, amount in ((1, 20), (1000, 20), (10_000, 5)):
            for app_path in (False, True):
                wall, cpu = await per_call_microseconds(url, args.pairs, keys, amount, app_path)
                what = "Limit.retry_after + hit" if app_path else "limiter.test + hit"
                print(f"{url:28} {keys:>6} keys, limit {amount:>2}, {what:24} {wall:7.1f} µs per call ({cpu:.1f} CPU)")
    for keys in (100, 1000, 10_000):
        wall, cpu = await memory_sweep_milliseconds(keys)
        print(f"memory:// expiry sweep over {keys:>6} live keys: {wall:7.1f} ms ({cpu:.1f} CPU)")


if __name__ == "__main__":
    asyncio.run(main())
