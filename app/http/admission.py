"""Load shedding: how many requests one worker serves at once, and how long a request may wait for its turn.

Measured with wrk at 1,000 connections on 2 workers (large dataset, the feed): with no
bound, every request queued for a database connection (p50 551 ms, p99 2.5 s). With a
bound answered by an immediate 503, the workers spent their time answering 503s to
clients that asked again at once (22,800 a second) and served 227 pages a second instead
of 1,826. So a request past the bound waits in line, first come first served, for at
most `wait_seconds`; only then is it answered 503 + Retry-After. A client sending as
fast as it can then gets one 503 per `wait_seconds`, and the requests in line are served
as soon as a slot frees.
"""

import asyncio
from collections import deque


class Admission:
    """At most `limit` requests at once; the others wait in line up to `wait_seconds`."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self.in_flight = 0
        self._line: deque[asyncio.Future[None]] = deque()

    async def enter(self) -> bool:
        """True once the request may run (then call `leave` when it ends); False if it waited in vain."""
        if self.in_flight < self.limit and not self._line:
            self.in_flight += 1  # the common case: no waiting, no future
            return True
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await turn
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                self.leave()  # the slot arrived as the wait ended: pass it on
            return False
        finally:
            if not turn.done():
                turn.cancel()
            # A future still in line is skipped by `leave` (done futures are dropped there).
        return True

    def leave(self) -> None:
        """The request ended: hand its slot to the first in line, or free it."""
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: in_flight stays the same
                return
        self.in_flight -= 1
