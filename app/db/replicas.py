"""Reads on hot standbys (DATABASE_READ_URL), with every user still seeing their own writes.

Which reads: the statements marked `Prepared.replica_ok` (the feed, its search and one
post, all built by `_posts_with_owner_and_votes` in app/db/statements.py). Everything
else goes to the primary: writes, logins, the checks of the caller's account and token
(`Viewer.account`), and the reads that decide a write (who owns a post, whether it is
visible for a vote).

Read-your-writes. After a write by user X commits, the primary's WAL insert position
(`pg_current_wal_insert_lsn()`, at or past the write's commit record) becomes X's mark.
A read by X goes to a standby that has replayed at least that far
(`pg_last_wal_replay_lsn()`), else to the primary. Writes that bind `viewer_id` are
marked here; the others call `Database.note_write` (editing or deleting a post,
registering). Marks live in Redis when RATE_LIMIT_STORAGE_URL is a redis:// URL, shared
by every worker and host, keyed by the cluster's system identifier; otherwise in this
process's memory, and a write served by another worker or host is then unknown here
(app/db/marks.py). A mark is forgotten `mark_seconds` after its write: by then every
standby still in use has replayed it (none is used once it is further behind than
max_lag_seconds). Insert positions are taken as the end of the last record
(`WalLayout.record_end`): just after a page header, as after a segment switch, is a
position no replay reaches until the next write.

The monitor. Every worker polls each database every POLL_SECONDS on a connection of its
own: the primary's insert position (kept for the last seconds, so that a standby's lag
can be said in seconds even while the primary is idle), each standby's replayed position
and whether it is still a standby of the same cluster. A standby is "down" when it does
not answer within POLL_TIMEOUT_SECONDS, was promoted, or belongs to another cluster;
"lagging" when it has not replayed what the primary had `max_lag_seconds` ago. Either
way the primary serves its reads. A read that fails on a standby with connection
trouble runs once more on the primary (reads only: they change nothing), and that
standby counts as down until the monitor hears from it again.
"""

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
from sqlalchemy import text

from app.db.backends import Database, PostgresDatabase, Prepared, Row, StatementTimedOut
from app.db.errors import DatabaseUnavailable, rule_for
from app.db.marks import UNKNOWN_POSITION, RedisWriteMarks, WriteMarks
from app.http import metrics

logger = logging.getLogger("agora")

POLL_SECONDS = 0.15
POLL_TIMEOUT_SECONDS = 1.0
OK, LAGGING, DOWN = "ok", "lagging", "down"

# Taken from the connections kept for writes: it is the end of a write.
CURRENT_POSITION = replace(Prepared.of(text("SELECT pg_current_wal_insert_lsn() AS lsn")), writes=True)
_PRIMARY_POSITION_SQL = "SELECT pg_current_wal_insert_lsn()"
_STANDBY_POSITION_SQL = "SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn() AS replayed"
_SYSTEM_SQL = "SELECT system_identifier FROM pg_control_system()"
_LAYOUT_SQL = "SELECT wal_block_size AS block, bytes_per_wal_segment AS segment FROM pg_control_init()"
# The page headers of WAL pages (64-bit builds): the first page of a segment has the long one.
SHORT_PAGE_HEADER, LONG_PAGE_HEADER = 24, 40


@dataclass(frozen=True, slots=True)
class WalLayout:
    """WAL page and segment sizes: to say an insert position as the end of the last record."""

    block: int = 8192
    segment: int = 16 * 1024 * 1024

    def record_end(self, insert_position: int) -> int:
        """Where the last record inserted ends (a standby's replay position reaches it; an insert position
        just past a page header, as after a segment switch, it never would while the primary is idle)."""
        if insert_position % self.segment == LONG_PAGE_HEADER:
            return insert_position - LONG_PAGE_HEADER
        if insert_position % self.block == SHORT_PAGE_HEADER:
            return insert_position - SHORT_PAGE_HEADER
        return insert_position


class PrimaryPositions:
    """The primary's insert position over the last `keep_seconds`: how far behind a standby is, in seconds.

    A sample (t, lsn) says: every write committed before t (when the poll was sent) lies
    at or before lsn. A standby that replayed up to lsn has all of them, so it is at most
    `now - t` behind. An idle primary keeps its position: the sample's time moves on.
    """

    def __init__(self, keep_seconds: float) -> None:
        self._keep_seconds = keep_seconds
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, lsn: int) -> None:
        if self._samples and self._samples[-1][1] >= lsn:
            self._samples[-1] = (at, self._samples[-1][1])
        else:
            self._samples.append((at, lsn))
        while len(self._samples) > 1 and self._samples[0][0] < at - self._keep_seconds:
            self._samples.popleft()

    def lag(self, replayed: int, now: float) -> float:
        """Seconds a standby that replayed up to `replayed` is behind at most (inf: more than remembered,
        or nothing known yet of the primary)."""
        if not self._samples:
            return math.inf
        if replayed >= self._samples[-1][1]:
            return 0.0
        for at, lsn in reversed(self._samples):
            if lsn <= replayed:
                return max(0.0, now - at)
        return math.inf


@dataclass(eq=False)
class Standby:
    database: PostgresDatabase
    state: str = DOWN
    replayed: int = 0
    lag_seconds: float = math.inf
    judged: bool = False  # whether the monitor has said anything about it yet

    @property
    def label(self) -> str:
        return self.database.label


class ReplicatedDatabase(Database):
    """The primary for writes and for what must see them; standbys for `replica_ok` reads."""

    dialect = "postgresql"

    def __init__(
        self,
        primary: PostgresDatabase,
        standbys: Sequence[PostgresDatabase],
        *,
        max_lag_seconds: float,
        marks: WriteMarks,
    ) -> None:
        self.primary = primary
        self.standbys = [Standby(database) for database in standbys]
        self.max_lag_seconds = max_lag_seconds
        self.marks = marks
        self._positions = PrimaryPositions(max_lag_seconds + 2)
        self._wal = WalLayout()
        self._usable: list[Standby] = []
        self._unusable_reason = "down"
        self._turn = 0
        self._monitors: list[asyncio.Task[None]] = []

    @staticmethod
    def mark_seconds(max_lag_seconds: float) -> float:
        """How long a write's mark is kept: past it, every standby in use has replayed the write.

        A standby in use was at most `max_lag_seconds` behind when last polled, and that
        poll is at most POLL_SECONDS + POLL_TIMEOUT_SECONDS old (then it counts as down);
        one second more for a busy event loop.
        """
        return max_lag_seconds + POLL_SECONDS + POLL_TIMEOUT_SECONDS + 1

    @classmethod
    def start(
        cls,
        primary: PostgresDatabase,
        standbys: Sequence[PostgresDatabase],
        *,
        max_lag_seconds: float,
        marks_url: str | None = None,
    ) -> "ReplicatedDatabase":
        """The database, with its monitor running (call from the event loop that will use it)."""
        seconds = cls.mark_seconds(max_lag_seconds)
        if marks_url is None:
            logger.warning(
                "DATABASE_READ_URL without shared storage: users are sure to see their own writes only on the "
                "worker process that made them; set RATE_LIMIT_STORAGE_URL=redis://... for several workers or hosts"
            )
        marks = WriteMarks(seconds) if marks_url is None else RedisWriteMarks(marks_url, seconds)
        database = cls(primary, standbys, max_lag_seconds=max_lag_seconds, marks=marks)
        database._monitors = [asyncio.create_task(database._watch_primary(), name="agora-watch-primary")]
        database._monitors += [
            asyncio.create_task(database._watch(standby), name=f"agora-watch-{standby.label}")
            for standby in database.standbys
        ]
        return database

    # --- the request path ----------------------------------------------------------

    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        if prepared.replica_ok:
            return await self._read(prepared, params)
        rows = await self.primary._run(prepared, params)
        if prepared.writes and rows and "viewer_id" in params:  # a write of the viewer's changed something
            await self.note_write(params["viewer_id"])
        return rows

    async def _read(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        standby = await self._standby_for(params["viewer_id"])
        if standby is None:
            return await self.primary._run(prepared, params)
        try:
            return await standby.database._run(prepared, params)
        except DatabaseUnavailable as exc:
            rule = rule_for(exc.__cause__) if exc.__cause__ is not None else None
            if isinstance(exc, StatementTimedOut) or rule is None or not rule.reconnect:
                raise  # e.g. the statement ran past its timeout: the primary would fare no better
            self._set_state(standby, DOWN, f"a read failed: {exc}")
            metrics.replica_fallback("down")
            return await self.primary._run(prepared, params)

    async def _standby_for(self, viewer_id: int) -> Standby | None:
        usable = self._usable
        if not usable:
            metrics.replica_fallback(self._unusable_reason)
            return None
        needed = await self.marks.position(viewer_id, max(standby.replayed for standby in usable))
        if needed:
            usable = [standby for standby in usable if standby.replayed >= needed]
            if not usable:
                metrics.replica_fallback("own_write")
                return None
        self._turn += 1
        return usable[self._turn % len(usable)]

    async def note_write(self, user_id: int) -> None:
        try:
            (row,) = await self.primary._run(CURRENT_POSITION, {})
            position = self._wal.record_end(int(row["lsn"]))
        except DatabaseUnavailable:
            position = UNKNOWN_POSITION
        await self.marks.record(user_id, position)

    def replica_states(self) -> dict[str, str]:
        return {standby.label: standby.state for standby in self.standbys}

    def report_pool_sizes(self) -> None:
        self.primary.report_pool_sizes()
        for standby in self.standbys:
            standby.database.report_pool_sizes()

    async def close(self) -> None:
        for task in self._monitors:
            task.cancel()
        await asyncio.gather(*self._monitors, return_exceptions=True)
        await self.marks.close()
        await self.primary.close()
        for standby in self.standbys:
            await standby.database.close()

    # --- the monitor ---------------------------------------------------------------

    def _set_state(self, standby: Standby, state: str, why: str = "") -> None:
        if state != standby.state or not standby.judged:
            level = logging.INFO if state == OK else logging.WARNING
            logger.log(level, "%s is now %s%s", standby.label, state, f" ({why})" if why else "")
        standby.state = state
        standby.judged = True
        self._usable = [each for each in self.standbys if each.state == OK]
        self._unusable_reason = LAGGING if any(each.state == LAGGING for each in self.standbys) else DOWN

    async def _watch_primary(self) -> None:
        connection: asyncpg.Connection | None = None
        try:
            while True:
                started = time.monotonic()
                try:
                    if connection is None or connection.is_closed():
                        connection = await self._connect(self.primary)
                        system = str(await connection.fetchval(_SYSTEM_SQL, timeout=POLL_TIMEOUT_SECONDS))
                        self.marks.namespace = system
                        layout = await connection.fetchrow(_LAYOUT_SQL, timeout=POLL_TIMEOUT_SECONDS)
                        self._wal = WalLayout(int(layout["block"]), int(layout["segment"]))
                    position = await connection.fetchval(_PRIMARY_POSITION_SQL, timeout=POLL_TIMEOUT_SECONDS)
                    self._positions.add(started, self._wal.record_end(int(position)))
                except Exception:  # down, stalled, or refusing: nothing to learn this time
                    _discard(connection)
                    connection = None
                await asyncio.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        finally:
            _discard(connection)

    async def _watch(self, standby: Standby) -> None:
        connection: asyncpg.Connection | None = None
        system: str | None = None
        try:
            while True:
                started = time.monotonic()
                try:
                    if connection is None or connection.is_closed():
                        connection = await self._connect(standby.database)
                        system = str(await connection.fetchval(_SYSTEM_SQL, timeout=POLL_TIMEOUT_SECONDS))
                    row = await connection.fetchrow(_STANDBY_POSITION_SQL, timeout=POLL_TIMEOUT_SECONDS)
                    assert row is not None
                    self._judge(standby, system, row["recovering"], row["replayed"])
                except Exception as exc:
                    _discard(connection)
                    connection = None
                    self._set_state(standby, DOWN, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        finally:
            _discard(connection)

    def _judge(self, standby: Standby, system: str | None, recovering: bool, replayed: int | None) -> None:
        if self.marks.namespace is None:
            self.marks.namespace = system  # the primary has not answered yet: the standby's cluster is the same
        if not recovering or replayed is None:
            self._set_state(standby, DOWN, "not a standby: promoted, or never one")
            return
        if system != self.marks.namespace:
            self._set_state(standby, DOWN, f"a standby of another cluster (system identifier {system})")
            return
        standby.replayed = int(replayed)
        standby.lag_seconds = self._positions.lag(standby.replayed, time.monotonic())
        if standby.lag_seconds > self.max_lag_seconds:
            self._set_state(standby, LAGGING, f"{standby.lag_seconds:.1f} s behind the primary")
        else:
            self._set_state(standby, OK)

    async def _connect(self, database: PostgresDatabase) -> asyncpg.Connection:
        assert database.connect_options is not None
        return await database.connect_options.connect(POLL_TIMEOUT_SECONDS)


def _discard(connection: asyncpg.Connection | None) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.terminate()
