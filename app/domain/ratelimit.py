"""Brute-force protection: sliding-window counters kept in this process's memory.

Each worker process counts on its own, so with W workers a client can make up to
W times the limit before every worker has refused it; behind several hosts, or to
make the limits exact, move the counters to shared storage (e.g. Redis) behind the
same three methods.
"""

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SlidingWindowLimiter:
    """At most `limit` events per key in any `window_seconds`."""

    limit: int
    window_seconds: float
    clock: Callable[[], float] = time.monotonic
    _events: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may act again, or None if it may act now."""
        events = self._recent(key)
        if events is None or len(events) < self.limit:
            return None
        return max(1, math.ceil(events[0] + self.window_seconds - self.clock()))

    def hit(self, key: str) -> None:
        """Count one event for `key`."""
        events = self._recent(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.limit)
            self._forget_idle_keys()
        events.append(self.clock())

    def reset(self, key: str) -> None:
        self._events.pop(key, None)

    def _recent(self, key: str) -> deque[float] | None:
        events = self._events.get(key)
        if events is not None:
            horizon = self.clock() - self.window_seconds
            while events and events[0] <= horizon:
                events.popleft()
        return events

    def _forget_idle_keys(self) -> None:
        # Keeps memory bounded by the keys active in one window, whoever sends what.
        if len(self._events) % 1024 == 0:
            horizon = self.clock() - self.window_seconds
            for key in [k for k, events in self._events.items() if not events or events[-1] <= horizon]:
                del self._events[key]


@dataclass
class RateLimits:
    """The limits the API enforces; see Settings.RATE_LIMIT_* for the numbers."""

    failed_logins_per_address: SlidingWindowLimiter
    failed_logins_per_account: SlidingWindowLimiter
    registrations_per_address: SlidingWindowLimiter
