"""Brute-force protection on the `limits` library: moving-window limits, in this process or in Redis.

RATE_LIMIT_STORAGE_URL picks where the counts live. `memory://` keeps them in each worker
process (nothing to run, but with W workers a client gets up to W times a limit); with
`redis://host:port/db` (`rediss://` for TLS) every worker and host counts in one place,
so a limit is the limit.

Strategy: the library's moving window, which keeps the time of each of the last `limit`
events per key and refuses while `limit` of them fall in the past `window` seconds. It
is exact, which is what a brute-force limit wants: the sliding-window counter estimates
the previous window's share and can let a burst at a window's edge through, and a fixed
window lets up to twice the limit through across the edge. It costs a list of up to
`limit` timestamps per key (a few hundred bytes at our limits, where a counter is one
integer) and, in Redis, a Lua script per call that reads O(log limit) entries; the keys
expire one window after their last event. In memory, the library sweeps expired entries
in a background task after a count, about 0.1 ms of CPU per live key per sweep, one sweep
at a time (bench/ratelimit_cost.py and README, "Brute force", have the numbers).

Failing open: when Redis cannot be reached (or does not answer within
STORAGE_TIMEOUT_SECONDS), checks let the request through and counts are lost, rather
than refusing every login and registration of every host. The failure is logged at
most once per FAILURE_LOG_INTERVAL_SECONDS, counted in the metrics, shown by GET /ready
as degraded, and for RETRY_AFTER_FAILURE_SECONDS the storage is not asked at all, so a
stalled Redis costs one timeout per worker per interval, not one per request.
"""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from app.config import rate_limit_storage_scheme
from app.http import metrics

logger = logging.getLogger("agora")

# The library's async storage for each scheme of RATE_LIMIT_STORAGE_URL (app/config.py validates the URL).
STORAGE_SCHEMES = {"memory": "async+memory", "redis": "async+redis", "rediss": "async+rediss"}
# Every key this app writes in Redis starts with it: `agora:<limit name>/<key>/<limit>/<window>/second`.
KEY_PREFIX = "agora"
# Longest a Redis call may take, connecting included; then the request goes on unlimited.
STORAGE_TIMEOUT_SECONDS = 0.25
# After a failure, how long the storage is not asked (requests go on unlimited meanwhile).
RETRY_AFTER_FAILURE_SECONDS = 1.0
# At most one log line per process this often while the storage keeps failing.
FAILURE_LOG_INTERVAL_SECONDS = 30.0

T = TypeVar("T")


def shown_url(url: str) -> str:
    """The URL without its password, for logs and /ready."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


class LimitStorage:
    """Where the limits count, and what happens when it cannot be reached (fail open, see above)."""

    def __init__(self, url: str, *, timeout_seconds: float = STORAGE_TIMEOUT_SECONDS) -> None:
        scheme = rate_limit_storage_scheme(url)
        self.url = shown_url(url)
        self.shared = scheme != "memory"
        self._timeout = timeout_seconds if self.shared else None
        self._close: Callable[[], None] = lambda: None
        if self.shared:
            import coredis  # only for Redis: memory:// needs nothing more

            # Our own pool, so that connecting and reading are bounded and it can be closed at shutdown.
            pool = coredis.ConnectionPool.from_url(url, connect_timeout=timeout_seconds, stream_timeout=timeout_seconds)
            options: dict[str, Any] = {"connection_pool": pool, "key_prefix": KEY_PREFIX}
            storage: MemoryStorage | RedisStorage = RedisStorage(
                f"{STORAGE_SCHEMES[scheme]}://{url.partition('://')[2]}", **options
            )
            self._close = pool.disconnect
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)
        self._skip_until = 0.0
        self._failures = 0  # storage calls failed or skipped since it last answered
        self._last_logged = -math.inf
        self._last_error: str | None = None

    async def call(self, operation: Callable[[], Awaitable[T]], fallback: T) -> T:
        """`operation`'s result, or `fallback` when the storage fails or is being left alone after a failure."""
        if self._skip_until and time.monotonic() < self._skip_until:
            self._note_failure(None)
            return fallback
        try:
            if self._timeout is None:
                result = await operation()
            else:
                async with asyncio.timeout(self._timeout):
                    result = await operation()
        except Exception as exc:  # any failure of the storage: fail open (module docstring)
            self._skip_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            self._note_failure(exc)
            return fallback
        if self._skip_until:
            self._skip_until = 0.0
            logger.warning(
                "rate-limit storage %s answers again: limits apply again (calls failed or skipped meanwhile: %d)",
                self.url,
                self._failures,
            )
            self._failures, self._last_logged, self._last_error = 0, -math.inf, None
        return result

    def _note_failure(self, exc: Exception | None) -> None:
        self._failures += 1
        if exc is not None:
            self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        now = time.monotonic()
        if now - self._last_logged >= FAILURE_LOG_INTERVAL_SECONDS:
            logger.error(
                "rate-limit storage %s unreachable (%s): letting logins and registrations through unlimited "
                "(calls failed or skipped so far: %d); GET /ready says degraded",
                self.url,
                self._last_error,
                self._failures,
            )
            self._last_logged = now

    async def problem(self) -> str | None:
        """None when the storage answers a PING now, else what is wrong, for GET /ready.

        Public, so it names no host and no message (the log has them), as for the database.
        """
        if not self.shared:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                answers = await self.storage.check()
        except TimeoutError:
            answers = False
        if answers:
            return None
        reason = self._last_error.partition(":")[0] if self._last_error else "no answer"
        return f"Redis unreachable ({reason}): requests are not limited"

    def close(self) -> None:
        self._close()


class Limit:
    """At most `amount` events per key in any `window_seconds` (a moving window), under the name `name`."""

    def __init__(self, name: str, amount: int, window_seconds: int, storage: LimitStorage) -> None:
        self.name = name
        # The name is the key's namespace: the same address under two limits is two keys.
        self.item: RateLimitItem = RateLimitItemPerSecond(amount, window_seconds, namespace=name)
        self._storage = storage
        self._limiter = storage.limiter

    async def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may act again, or None if it may act now (or the storage is unreachable)."""
        stats = await self._storage.call(lambda: self._limiter.get_window_stats(self.item, key), None)
        if stats is None:
            metrics.rate_limit_storage_failed()  # one limit not enforced on this request
            return None
        if stats.remaining > 0:
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit(self, key: str) -> None:
        """Count one event for `key`."""
        await self._storage.call(lambda: self._limiter.hit(self.item, key), False)

    async def reset(self, key: str) -> None:
        """Forget `key`'s events."""
        await self._storage.call(lambda: self._limiter.clear(self.item, key), None)


@dataclass
class RateLimits:
    """The limits the API enforces; see Settings.RATE_LIMIT_* for the numbers."""

    failed_logins_per_address: Limit
    failed_logins_per_account: Limit
    registrations_per_address: Limit
    storage: LimitStorage

    @classmethod
    def build(
        cls,
        storage_url: str,
        window_seconds: int,
        *,
        failed_logins_per_address: int,
        failed_logins_per_account: int,
        registrations_per_address: int,
    ) -> "RateLimits":
        storage = LimitStorage(storage_url)
        return cls(
            failed_logins_per_address=Limit(
                "failed_logins_per_address", failed_logins_per_address, window_seconds, storage
            ),
            failed_logins_per_account=Limit(
                "failed_logins_per_account", failed_logins_per_account, window_seconds, storage
            ),
            registrations_per_address=Limit(
                "registrations_per_address", registrations_per_address, window_seconds, storage
            ),
            storage=storage,
        )
