"""Prometheus metrics: what other modules report, in one place.

Other modules call these functions and never touch prometheus_client themselves, so
the metric names, labels and the multi-process setup live here only.

What is exported (README, "Metrics"):

- `agora_http_request_duration_seconds{method, route, status}`: a histogram of every
  request's time in the app, measured by `RequestContextMiddleware`; its `_count` is
  the number of requests. `route` is the path template of the route that answered
  (`/posts/{post_id}`), never the URL; requests no route answered (unknown paths, and
  those refused before routing: 413 by declared length, 503 while shedding load) are
  counted under `route="unmatched"`, and a method outside HTTP's usual ones as `other`.
- `agora_rate_limit_refusals_total{limit}`, `agora_rate_limit_storage_failures_total`.
- `agora_replica_fallbacks_total{reason}`.
- `agora_database_pool_wait_seconds{database}` (histogram),
  `agora_database_pool_connections{database, state}` (`in_use`, `idle`) and
  `agora_database_pool_max_connections{database}`.
- `agora_worker_processes`: the worker processes serving (1 per live worker).

One process or several. prometheus_client keeps values in the process's memory, unless
`PROMETHEUS_MULTIPROC_DIR` is set when it is imported: then every process writes its
values to files of its own in that directory, and a scrape, whichever worker answers
it, adds up the files of all of them. `python -m app --workers N` (N > 1) makes and
empties such a directory before the workers start (`prepare_multiprocess`); a
directory set by the operator is emptied and used. Counters and histograms of a worker
that died stay in the sums (they must never go down); its gauges are dropped, when it
stops cleanly and, after a crash, at the next scrape (`_forget_dead_workers`).

Histograms are observed in plain Python (`Tally`) and written to prometheus_client by
`flush`: at each scrape (by the worker answering it), every FLUSH_SECONDS in each of
several workers, and when an app stops. With several workers a scrape can so miss up to
a second of the others' requests, and a worker killed outright loses its last second.
"""

import asyncio
import bisect
import glob
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import Scope

logger = logging.getLogger("agora")

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Decided once, as prometheus_client decides it: when it is imported (just above).
MULTIPROC_DIR: str | None = os.environ.get(MULTIPROC_DIR_VARIABLE) or None
if MULTIPROC_DIR is not None:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)  # label-less metrics open their file below

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"
# Methods kept as they are in the `method` label; any other is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

# Every endpoint answers in 1-50 ms under load (README, "Performance"), /health in well
# under one; the tail goes to the pool's and the admission line's timeouts (0.5-5 s).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A free connection is handed over in microseconds; DATABASE_POOL_TIMEOUT_SECONDS is 5.
POOL_WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# With several workers, how often each one writes its pools' gauges (a scrape also
# samples the worker that answers it).
POOL_SAMPLE_SECONDS = 5.0
# How often each worker writes the histograms' observations it has gathered (`Tally`);
# a scrape also writes those of the worker that answers it, and a worker that stops
# writes its own. With several workers a scrape may so miss the last second of the others.
FLUSH_SECONDS = 1.0

# `_created` series: one more per child, and not exported in multi-process mode anyway.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry()

REQUEST_DURATION = Histogram(
    "agora_http_request_duration_seconds",
    "Time from a request's arrival in the app to the end of its response, by method, route template and status; "
    "_count is the number of requests",
    ("method", "route", "status"),
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
RATE_LIMIT_REFUSALS = Counter(
    "agora_rate_limit_refusals",
    "Requests refused with 429, by the limit that refused them",
    ("limit",),
    registry=REGISTRY,
)
RATE_LIMIT_STORAGE_FAILURES = Counter(
    "agora_rate_limit_storage_failures",
    "Times the limits' shared storage could not be reached and the request was let through (fail open)",
    registry=REGISTRY,
)
REPLICA_FALLBACKS = Counter(
    "agora_replica_fallbacks",
    "Reads that could go to a standby but went to the primary, by reason (down, lagging, own_write)",
    ("reason",),
    registry=REGISTRY,
)
POOL_WAIT = Histogram(
    "agora_database_pool_wait_seconds",
    "Time a statement waited for a pooled connection, by database",
    ("database",),
    buckets=POOL_WAIT_BUCKETS,
    registry=REGISTRY,
)
# livesum: with several workers, the sum over the workers alive (each has its own pools).
POOL_CONNECTIONS = Gauge(
    "agora_database_pool_connections",
    "Open pooled connections by database and state (in_use, idle), summed over the live workers",
    ("database", "state"),
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
POOL_MAX_CONNECTIONS = Gauge(
    "agora_database_pool_max_connections",
    "Most connections the pools of a database may open, summed over the live workers",
    ("database",),
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
WORKER_PROCESSES = Gauge(
    "agora_worker_processes", "Worker processes serving the app", multiprocess_mode="livesum", registry=REGISTRY
)

if MULTIPROC_DIR is None:
    # One process: its own figures are the server's. With several, each worker's memory,
    # CPU and garbage collector are its own and cannot be added up: left out.
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)
    GCCollector(registry=REGISTRY)
    _SCRAPED = REGISTRY
else:
    _SCRAPED = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(_SCRAPED, path=MULTIPROC_DIR)  # type: ignore[no-untyped-call]


# --- histograms, gathered in plain Python ------------------------------------------


class Tally:
    """Observations for one histogram child, gathered in this worker and written to it by `flush`.

    Why: Histogram.observe takes a lock for each value it changes, and with several workers
    writes each into a memory-mapped file: 0.75 µs an observation in one process, 1.9 µs
    in several (`timeit`), twice a request (its duration, its pool wait). Here it is a
    bisect and two additions (0.15 µs); `flush` writes them all at once.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        # prometheus_client's own bounds, +Inf last: an amount goes to the first bound at or above it.
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        _tallies.append(self)  # a few per route, method and status: `flush` visits them all

    def observe(self, amount: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def write(self) -> None:
        counts, total = self._counts, self._sum
        if not any(counts):
            return
        self._counts, self._sum = [0] * len(counts), 0.0
        # Histogram has no public way to add many observations at once: its values, as observe changes them.
        self._child._sum.inc(total)
        for bucket, count in zip(self._child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


_tallies: list[Tally] = []


def flush() -> None:
    """Write every gathered observation into the histograms (and so, with several workers, into the files).

    Call it on the event loop (where the observations are made), before reading the metrics.
    """
    for tally in list(_tallies):
        tally.write()


# --- what other modules report ------------------------------------------------------
# The children of each label value are bound once (labels() takes a lock and builds a tuple).

_refusals: dict[str, Counter] = {}
_fallbacks: dict[str, Counter] = {}
_pool_waits: dict[str, Tally] = {}


def rate_limit_refused(limit: str) -> None:
    """A request was refused with 429 by the limit named `limit` (e.g. "failed_logins_per_address")."""
    child = _refusals.get(limit)
    if child is None:
        child = _refusals[limit] = RATE_LIMIT_REFUSALS.labels(limit)
    child.inc()


def rate_limit_storage_failed() -> None:
    """The limits' shared storage (Redis) could not be reached: the request was let through (fail open)."""
    RATE_LIMIT_STORAGE_FAILURES.inc()


def replica_fallback(reason: str) -> None:
    """A read that could go to a standby went to the primary; `reason`: "down", "lagging" or "own_write"."""
    child = _fallbacks.get(reason)
    if child is None:
        child = _fallbacks[reason] = REPLICA_FALLBACKS.labels(reason)
    child.inc()


def database_pool_wait(database: str, seconds: float) -> None:
    """A statement waited `seconds` for a pooled connection of `database` ("primary", "replica-1", ...)."""
    tally = _pool_waits.get(database)
    if tally is None:
        tally = _pool_waits[database] = Tally(POOL_WAIT.labels(database))
    tally.observe(seconds)


def database_pool_size(database: str, in_use: int, idle: int, max_size: int) -> None:
    """The connections of `database`'s pool, as sampled now."""
    POOL_CONNECTIONS.labels(database, "in_use").set(in_use)
    POOL_CONNECTIONS.labels(database, "idle").set(idle)
    POOL_MAX_CONNECTIONS.labels(database).set(max_size)


# --- requests -------------------------------------------------------------------------


class RequestMetrics:
    """Records each request in `agora_http_request_duration_seconds`; one per app, called by its middleware.

    Per request: one dictionary lookup, keyed by the path template of the route routing
    left in the scope, the method and the status, for the `Tally` of the histogram child
    bound to those labels, and its `observe`. The first request of each combination binds
    the child; the combinations are bounded by the app's routes, the methods above and
    the status codes.
    """

    __slots__ = ("_observers", "_other_routes")

    def __init__(self) -> None:
        self._observers: dict[tuple[str, str, int], Callable[[float], None]] = {}
        self._other_routes: list[tuple[Any, str]] | None = None

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")  # FastAPI's APIRoute, set by routing
        key = (route.path if route is not None else self._template(scope), scope["method"], status)
        try:
            observe = self._observers[key]
        except KeyError:
            observe = self._bind(key)
        observe(seconds)

    def _bind(self, key: tuple[str, str, int]) -> Callable[[float], None]:
        template, method, status = key
        known = method in KNOWN_METHODS
        observe = Tally(REQUEST_DURATION.labels(method if known else "other", template, str(status))).observe
        if known:  # any token is a method to some servers: only these are remembered
            self._observers[key] = observe
        return observe

    def _template(self, scope: Scope) -> str:
        """The path template of a request no APIRoute answered: the docs, the OpenAPI document, a 405, or none."""
        if "endpoint" not in scope:  # routing found nothing, or never ran
            return UNMATCHED
        if self._other_routes is None:
            # Starlette's own routes and mounts (the docs, the 405 fallbacks), in routing order.
            self._other_routes = [
                (route.path_regex, route.path_format)
                for route in scope["app"].router.routes
                if hasattr(route, "path_regex") and hasattr(route, "path_format")
            ]
        path: str = scope["path"]
        # The app's own root path, as Starlette's routes match (a mount moved root_path on to itself).
        root_path: str = scope.get("app_root_path", scope.get("root_path", ""))
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        for regex, template in self._other_routes:
            if regex.match(path):
                return str(template)
        return UNMATCHED


# --- scraping ---------------------------------------------------------------------------

_pool_samplers: list[Callable[[], object]] = []


def sample_pools() -> None:
    """Have every running app report its pools now (each calls `database_pool_size`); run on the event loop."""
    for sample in list(_pool_samplers):
        try:
            sample()
        except Exception:  # a scrape must not fail because one pool could not be read
            logger.warning("could not sample a database pool for the metrics", exc_info=True)


def render() -> bytes:
    """The metrics in Prometheus' text format; in multi-process mode the sums over every worker's files.

    Reads files and formats a few thousand lines: call it off the event loop, after `flush` on it.
    """
    if MULTIPROC_DIR is not None:
        _forget_dead_workers(MULTIPROC_DIR)
    return generate_latest(_SCRAPED)


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone without stopping cleanly (killed, crashed)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid_text = Path(path).stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _process_exists(int(pid_text)):
            prometheus_multiprocess.mark_process_dead(int(pid_text), directory)  # type: ignore[no-untyped-call]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@asynccontextmanager
async def worker_metrics(sample_pools: Callable[[], object] | None) -> AsyncIterator[None]:
    """While an app runs (its lifespan): count the worker, and have `sample_pools` report its pools.

    `sample_pools` calls `database_pool_size` for each of the app's pools; it runs at every
    scrape, and with several workers also every `POOL_SAMPLE_SECONDS` in each worker, so
    that a scrape answered by one worker shows the others' pools too.
    """
    WORKER_PROCESSES.set(1)
    sampling: asyncio.Task[None] | None = None
    if sample_pools is not None:
        _pool_samplers.append(sample_pools)
    if MULTIPROC_DIR is not None:
        sampling = asyncio.create_task(_write_every(sample_pools))
    try:
        yield
    finally:
        if sampling is not None:
            sampling.cancel()
            with suppress(asyncio.CancelledError):
                await sampling
        if sample_pools is not None:
            _pool_samplers.remove(sample_pools)
        flush()  # what this app gathered, before it goes
        if MULTIPROC_DIR is not None:
            # This worker's live gauges go; its counters and histograms stay in the sums.
            prometheus_multiprocess.mark_process_dead(os.getpid(), MULTIPROC_DIR)  # type: ignore[no-untyped-call]


async def _write_every(sample_pools: Callable[[], object] | None) -> None:
    """With several workers: this worker's observations every FLUSH_SECONDS, its pools every POOL_SAMPLE_SECONDS."""
    ticks_per_sample = max(1, round(POOL_SAMPLE_SECONDS / FLUSH_SECONDS))
    tick = 0
    while True:
        flush()
        if sample_pools is not None and tick % ticks_per_sample == 0:
            try:
                sample_pools()
            except Exception:
                logger.warning("could not sample a database pool for the metrics", exc_info=True)
        tick += 1
        await asyncio.sleep(FLUSH_SECONDS)


# --- the run command ----------------------------------------------------------------------


def prepare_multiprocess(workers: int) -> Path | None:
    """Before `python -m app` starts its workers: the directory they share their metrics through, emptied.

    `PROMETHEUS_MULTIPROC_DIR` set by the operator is used, its `*.db` files removed (the
    figures of a previous run; those of this process stay: with `--workers 1` it is the
    worker, and it opened them when it imported this module). Otherwise, with more than
    one worker, a new temporary directory is made and set for the workers to inherit.
    Returns the directory made here, for the caller to remove when the server stops;
    None if none was made.
    """
    chosen = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        own = f"_{os.getpid()}.db"
        for stale in directory.glob("*.db"):
            if not stale.name.endswith(own):
                stale.unlink()
        return None
    if workers <= 1:
        return None  # one process keeps its metrics in memory
    made = Path(tempfile.mkdtemp(prefix="agora-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(made)
    return made
