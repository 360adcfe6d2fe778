"""The request path's database: one `fetch` per statement, each in AUTOCOMMIT.

Every request issues single, self-contained statements (app/db/statements.py), so a
connection is held only while one runs, and no BEGIN/ROLLBACK pair wraps a read. On
PostgreSQL that is asyncpg's own pool; on SQLite, SQLAlchemy's async engine over
aiosqlite. Both translate driver errors through one table (app/db/errors.py).
"""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any, cast

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import TextClause

from app.db.base import INT32_MAX, SQLITE_BUSY_TIMEOUT_SECONDS
from app.db.errors import DatabaseUnavailable, rule_for, translate
from app.http import metrics

_ASYNCPG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

# A result row, read by column name: `row["title"]` (an asyncpg Record or a SQLAlchemy RowMapping).
Row = Mapping[str, Any]


# What `Viewer.fetch` binds: who the caller is, and which token they presented.
VIEWER_PARAMETERS = ("viewer_id", "viewer_generation", "viewer_jti")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement built once at import, with its SQL compiled for asyncpg too.

    PostgreSQL runs `asyncpg_sql` straight on a pooled asyncpg connection; SQLite runs
    `statement` through SQLAlchemy. Either way the request path only binds parameters.
    """

    statement: Executable
    asyncpg_sql: str
    parameter_names: tuple[str, ...]
    # Every parameter named `*_id` is an id, compared with an INTEGER column.
    id_parameters: tuple[str, ...]
    # True when the statement returns no row (and changes nothing) unless the caller's
    # token still counts: the account `viewer_id` names exists, at token generation
    # `viewer_generation`, and token `viewer_jti` was not logged out. `Viewer.fetch`
    # (app/domain/viewer.py) runs only these.
    proves_viewer: bool
    # True for INSERT, UPDATE and DELETE: they may use the connections kept for writes.
    writes: bool
    # True for the feed, search and single-post reads: a hot standby may answer them
    # (DATABASE_READ_URL, app/db/replicas.py), unless it has not yet replayed a write of
    # the viewer's. Such a statement proves the viewer: its `viewer_id` says whose read it is.
    replica_ok: bool = False
    # True for the statements that match titles against a search (they bind `pattern`): each
    # is stopped after SEARCH_TIMEOUT_MS (`SearchTimedOut`), on PostgreSQL and on SQLite.
    searches: bool = False

    @classmethod
    def of(
        cls,
        statement: Executable,
        postgresql_statement: Executable | None = None,
        *,
        proves_viewer: bool = False,
        replica_ok: bool = False,
        searches: bool = False,
    ) -> "Prepared":
        """`postgresql_statement`: where the dialects need different constructs (ON CONFLICT)."""
        for_asyncpg = statement if postgresql_statement is None else postgresql_statement
        compiled = for_asyncpg.compile(dialect=_ASYNCPG_DIALECT)  # type: ignore[attr-defined]
        names = tuple(compiled.positiontup or ())
        if proves_viewer and not set(VIEWER_PARAMETERS) <= set(names):
            raise ValueError(f"a statement that proves the viewer's token must take {', '.join(VIEWER_PARAMETERS)}")
        ids = tuple(dict.fromkeys(name for name in names if name.endswith("_id")))
        writes = isinstance(statement, UpdateBase) or (
            isinstance(statement, TextClause) and not statement.text.lstrip().upper().startswith("SELECT")
        )
        if replica_ok and (writes or not proves_viewer):
            raise ValueError("only a read that proves the viewer (and so names whose read it is) may go to a standby")
        # A search left unmarked would run without its timeout: refuse it where it is built.
        if searches != ("pattern" in names):
            raise ValueError("a statement is marked `searches` exactly when it matches a search `pattern`")
        return cls(statement, str(compiled), names, ids, proves_viewer, writes, replica_ok, searches)

    def names_no_row(self, params: Mapping[str, Any]) -> bool:
        """True when an id parameter is beyond INTEGER: no row can have it."""
        for name in self.id_parameters:
            value = params.get(name)
            if value is not None and value > INT32_MAX:
                return True
        return False


class Database(ABC):
    """Where requests run their statements."""

    dialect: str

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """Run one statement; its rows (none for a statement without RETURNING).

        An id beyond the column's range finds nothing, on every database (PostgreSQL
        would refuse the parameter). Failures arrive as `DatabaseConflict` or
        `DatabaseUnavailable` (app/db/errors.py), or as the bug they are.
        """
        if params and prepared.names_no_row(params):
            return []
        return await self._run(prepared, params or {})

    @abstractmethod
    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]: ...

    async def note_write(self, user_id: int) -> None:  # noqa: B027  (a no-op unless standbys serve reads)
        """`user_id` just changed something through a statement that does not name them (`viewer_id`).

        With standbys serving reads (app/db/replicas.py), that user's reads then go where
        the change is visible; a write that binds `viewer_id` is noted by `fetch` itself.
        Nothing to do on one database.
        """

    def replica_states(self) -> dict[str, str]:
        """Each standby's state by label ("replica-1": "ok", "lagging" or "down"); empty without standbys."""
        return {}

    def report_pool_sizes(self) -> None:  # noqa: B027  (nothing to report on SQLite)
        """Report each connection pool's size to app/http/metrics.py."""

    @abstractmethod
    async def close(self) -> None: ...


class StatementTimedOut(DatabaseUnavailable):
    """A statement the client cancelled past a timeout it keeps (a search's, the statement timeout behind PgBouncer)."""


class SearchTimedOut(StatementTimedOut):
    """A search ran past SEARCH_TIMEOUT_MS and was stopped; the message is what the client is told."""

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(
            f"The search took longer than {timeout_ms} ms and was stopped. Search for more specific words "
            "(whole words rather than single letters or punctuation)."
        )
        self.timeout_ms = timeout_ms


class PostgresDatabase(Database):
    """asyncpg's own pool, with no SQLAlchemy layer between a request and its connection.

    Measured on the feed and single-post reads: checking a connection out through
    SQLAlchemy's async engine (greenlet hand-offs, pool events, a FastAPI generator
    dependency to give it back) cost more than running the statement.
    """

    dialect = "postgresql"

    def __init__(
        self,
        pool: asyncpg.Pool,
        pool_timeout: float,
        *,
        write_reserve: int = 0,
        label: str = "primary",
        connect: "ConnectOptions | None" = None,
        search_timeout_ms: int | None = None,
    ) -> None:
        self._pool = pool
        self._pool_timeout = pool_timeout
        # What metrics call this database: "primary", or "replica-N" for DATABASE_READ_URL's N-th.
        self.label = label
        self.connect_options = connect
        # Behind PgBouncer (ConnectOptions): statements run unnamed (`_fetch_unnamed`), and
        # the statement timeout is asyncpg's: a statement past it is cancelled by a cancel
        # request, and its connection comes back once the server has ended it (`_hand_back`).
        self._behind_pgbouncer = connect is not None and connect.behind_pgbouncer
        self._handing_back: set[asyncio.Task[None]] = set()
        # Searches (`Prepared.searches`) run with asyncpg's per-call timeout, the same way:
        # cancelled past it, their connection handed back once the server has ended them.
        # None: a search has the statement timeout, like any other statement.
        self.search_timeout_ms = search_timeout_ms
        self._search_timeout = None if search_timeout_ms is None else search_timeout_ms / 1000
        # Reads may hold at most this many connections at once; the rest are kept for
        # writes. Slow reads (a database without the feed's indexes, a search that runs
        # to its timeout) then queue among themselves while posts and votes still go in.
        self._read_slots = asyncio.Semaphore(max(1, pool.get_max_size() - write_reserve))

    @classmethod
    async def open(
        cls,
        url: URL,
        *,
        max_connections: int,
        pool_timeout: float,
        connect_timeout: float,
        statement_timeout_ms: int,
        write_reserve: int = 0,
        behind_pgbouncer: bool = False,
        label: str = "primary",
        search_timeout_ms: int | None = None,
    ) -> "PostgresDatabase":
        """A pool that connects lazily (the app starts while PostgreSQL is down) and fails fast."""
        connect = ConnectOptions.of(url, statement_timeout_ms=statement_timeout_ms, behind_pgbouncer=behind_pgbouncer)
        pool = await asyncpg.create_pool(
            connect.dsn,
            min_size=0,
            max_size=max_connections,
            timeout=connect_timeout,
            reset=_keep_session,
            **connect.options,
        )
        return cls(
            pool,
            pool_timeout,
            write_reserve=write_reserve,
            label=label,
            connect=connect,
            search_timeout_ms=search_timeout_ms,
        )

    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        started = perf_counter()
        if prepared.writes:
            return await self._run_on_connection(prepared, params, started, None)
        if not self._read_slots.locked():
            # A free slot is taken at once (no await in between): no timer to arm and
            # cancel. The two timers of a read (slot, connection) were about 2 % of a
            # worker's busy samples on GET /posts/{id} (py-spy); this is one of them.
            await self._read_slots.acquire()
        else:
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await self._read_slots.acquire()
            except TimeoutError as exc:
                raise DatabaseUnavailable(
                    f"no database connection within {self._pool_timeout} s: every connection reads may use is busy"
                ) from exc
        return await self._run_on_connection(prepared, params, started, self._read_slots)

    async def _run_on_connection(
        self, prepared: Prepared, params: Mapping[str, Any], started: float, slot: asyncio.Semaphore | None
    ) -> Sequence[Row]:
        """Run on a pooled connection; `slot`, the read slot held, goes back with the connection."""
        args = [params[name] for name in prepared.parameter_names]
        # None: the connection's own command_timeout (the statement timeout, or a second past it).
        timeout = self._search_timeout if prepared.searches else None
        connection: asyncpg.Connection | None = None
        try:
            try:
                # asyncio.timeout rather than acquire(timeout=...), which runs every checkout
                # as a task of its own (measured: a few percent of a feed request).
                async with asyncio.timeout(self._pool_timeout):
                    connection = await self._pool.acquire()
            except Exception as exc:
                if rule_for(exc) is None:
                    raise
                if isinstance(exc, TimeoutError):
                    raise DatabaseUnavailable(f"no database connection within {self._pool_timeout} s") from exc
                raise DatabaseUnavailable(f"no database connection: {exc!r}") from exc
            metrics.database_pool_wait(self.label, perf_counter() - started)
            try:
                if self._behind_pgbouncer:
                    rows: Sequence[Row] = await _fetch_unnamed(connection, prepared.asyncpg_sql, args, timeout)
                else:
                    rows = await connection.fetch(prepared.asyncpg_sql, *args, timeout=timeout)
            except TimeoutError as exc:
                if timeout is None and not self._behind_pgbouncer:
                    # Only the safety net past the server's own statement_timeout: the server stopped answering.
                    raise await self._connection_failed(connection, exc) from exc
                # A timeout the client keeps (a search's, or the statement timeout behind PgBouncer):
                # asyncpg has sent a cancel request. The connection, and the read slot with it, go back
                # once the server has ended the statement, not before: until then it cannot run another.
                self._hand_back(connection, slot)
                connection = slot = None
                if prepared.searches and self.search_timeout_ms is not None:
                    raise SearchTimedOut(self.search_timeout_ms) from exc
                raise StatementTimedOut(f"the statement ran past its timeout and was cancelled: {exc!r}") from exc
            except Exception as exc:
                rule = rule_for(exc)
                if rule is not None and rule.reconnect:
                    raise await self._connection_failed(connection, exc) from exc
                error = translate(exc)
                if error is None:
                    raise
                raise error from exc
        finally:
            try:
                if connection is not None:
                    await self._pool.release(connection)
            finally:
                if slot is not None:
                    slot.release()
        return rows

    async def _connection_failed(self, connection: asyncpg.Connection, exc: Exception) -> DatabaseUnavailable:
        # Do not hand a connection in an unknown state back to the pool (its reset would
        # wait for a server that may have stopped answering); the server restarted or went
        # away, so its other connections are as dead as this one: they are reconnected as
        # they are next used. A connection the server closed under the statement is
        # already back in the pool, and says so.
        with contextlib.suppress(asyncpg.InterfaceError):
            connection.terminate()
        await self._pool.expire_connections()
        error = translate(exc)
        assert isinstance(error, DatabaseUnavailable)
        return error

    def _hand_back(self, connection: asyncpg.Connection, slot: asyncio.Semaphore | None) -> None:
        """Give back a connection whose statement is being cancelled, and its read slot, in the background."""
        task = asyncio.create_task(self._release_once_cancelled(connection, slot))
        self._handing_back.add(task)
        task.add_done_callback(self._handed_back)

    async def _release_once_cancelled(self, connection: asyncpg.Connection, slot: asyncio.Semaphore | None) -> None:
        # asyncpg's release waits until the server has answered the cancelled statement; if that
        # takes longer than the connection's command_timeout, asyncpg closes the connection instead.
        try:
            await self._pool.release(connection)
        finally:
            if slot is not None:
                slot.release()

    def _handed_back(self, task: "asyncio.Task[None]") -> None:
        self._handing_back.discard(task)
        if not task.cancelled():
            task.exception()  # a cancellation that failed closed the connection: nothing more to do

    def report_pool_sizes(self) -> None:
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        metrics.database_pool_size(self.label, size - idle, idle, self._pool.get_max_size())

    async def close(self) -> None:
        await self._pool.close()


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """How asyncpg connects to one PostgreSQL server (or PgBouncer in front of it): DSN and options."""

    dsn: str
    options: Mapping[str, Any]
    # PgBouncer in transaction pooling: asyncpg's command_timeout is the statement
    # timeout, and statements run unnamed (`_fetch_unnamed`).
    behind_pgbouncer: bool = False

    @classmethod
    def of(cls, url: URL, *, statement_timeout_ms: int, behind_pgbouncer: bool) -> "ConnectOptions":
        query = dict(url.query)
        if "ssl" in query:  # back to libpq's spelling, which asyncpg's own DSN parser reads
            query["sslmode"] = query.pop("ssl")
        dsn = url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)
        options: dict[str, Any]
        if behind_pgbouncer:
            # PgBouncer refuses startup parameters it does not know (statement_timeout is
            # one: "unsupported startup parameter"), and in transaction pooling each
            # statement may run on another server connection, where a named prepared
            # statement of asyncpg's cache does not exist (PgBouncer before 1.21). So: no
            # statement cache (each statement runs unnamed: `_fetch_unnamed`), and the
            # statement timeout is the client's: asyncpg cancels a statement running longer
            # (a cancel request, which PgBouncer passes to the server running it).
            options = {
                "statement_cache_size": 0,
                "command_timeout": statement_timeout_ms / 1000,
                "connection_class": UnnamedStatementsConnection,
            }
        else:
            # The server cancels a statement running longer than this; the client gives
            # up a second later (covers a server that stopped answering altogether).
            # No JIT compilation: it pays off for long analytical queries, never for a page of
            # posts, and PostgreSQL starts it by the plan's estimated cost alone (a search's
            # generic plan, estimated high, spent 15 ms compiling to run for 2 ms).
            options = {
                "server_settings": {"statement_timeout": str(statement_timeout_ms), "jit": "off"},
                "command_timeout": statement_timeout_ms / 1000 + 1,
            }
        return cls(dsn, options, behind_pgbouncer=behind_pgbouncer)

    async def connect(self, connect_timeout: float) -> asyncpg.Connection:
        """One connection outside any pool (the standby monitor's)."""
        return await asyncpg.connect(self.dsn, timeout=connect_timeout, **self.options)


class UnnamedStatementsConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg has no type hints
    """A connection that keeps, for each statement it ran, what PostgreSQL said of it (behind PgBouncer)."""

    __slots__ = ("unnamed_statements",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unnamed_statements: dict[str, PreparedStatement] = {}


async def _fetch_unnamed(connection: Any, sql: str, args: Sequence[Any], seconds: float | None) -> Sequence[Row]:
    """Run `sql` as an unnamed statement: Parse, Bind, Execute and Sync in one round trip (`seconds`: its timeout).

    Without a statement cache (PgBouncer), `connection.fetch` prepares every statement
    anew: Parse and Describe, wait, then Parse again with Bind and Execute (asyncpg
    re-parses, as PgBouncer may run the next message on another server connection), and
    sets up its codecs each time. The first run on a connection still does that; later
    runs reuse its description, so only the second round trip is left (measured on the
    single-post read, directly on PostgreSQL: 399 µs instead of 554; with the statement
    cache, as without PgBouncer, 105 µs: the rest is PostgreSQL planning every execution).
    """
    kept = connection.unnamed_statements.get(sql)
    if kept is None:
        # asyncpg prepares it unnamed (no statement cache) and marks it to be parsed again at each run.
        kept = connection.unnamed_statements[sql] = await connection.prepare(sql, timeout=seconds)
    rows: Sequence[Row] = await PreparedStatement(connection, sql, kept._state).fetch(*args, timeout=seconds)
    return rows


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Give a connection back as it is, after asyncpg's own check for an open transaction.

    asyncpg's default reset (RESET ALL, UNLISTEN *, CLOSE ALL, advisory unlock) is a round
    trip on every release; the request path never changes session state, so there is
    nothing to reset (measured: about 8 % of a feed request, and PostgreSQL's CPU besides).
    """


class SQLiteDatabase(Database):
    """SQLite (the embedded default): SQLAlchemy's async engine over aiosqlite.

    A search past `search_timeout_ms` is stopped by SQLite's progress handler, which each
    connection runs every SQLITE_PROGRESS_STEPS virtual-machine steps (`StatementDeadline`):
    the statement ends with "interrupted" in the connection's own thread, and the connection
    goes back to the pool as after any failed statement, free at once. It counts the
    statement's work: a wait for another connection's write lock is the busy timeout's.
    """

    dialect = "sqlite"

    def __init__(self, engine: AsyncEngine, *, search_timeout_ms: int | None = None) -> None:
        self._engine = engine
        self.search_timeout_ms = search_timeout_ms

    async def _run(self, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Row]:
        deadline: StatementDeadline | None = None
        try:
            async with self._engine.connect() as connection:
                if prepared.searches and self.search_timeout_ms is not None:
                    deadline = connection.info[StatementDeadline.KEY]
                    deadline.start(self.search_timeout_ms / 1000)
                try:
                    result = await connection.execute(prepared.statement, dict(params))
                    if not result.returns_rows:
                        return []
                    return cast(Sequence[Row], result.mappings().all())
                finally:
                    if deadline is not None:
                        deadline.stop()
        except Exception as exc:
            if deadline is not None and deadline.reached:
                assert self.search_timeout_ms is not None
                raise SearchTimedOut(self.search_timeout_ms) from exc
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    async def close(self) -> None:
        await self._engine.dispose()


# How often SQLite asks a connection's progress handler whether to stop: every this many
# virtual-machine steps, about 0.2 ms of work on the 2-core benchmark machine. A feed page
# takes fewer, so it usually never calls into Python at all.
SQLITE_PROGRESS_STEPS = 10_000


class StatementDeadline:
    """When the statement running on one SQLite connection must stop; SQLite's progress handler asks `check`.

    Set by the event loop before a search is sent to the connection's thread and cleared
    after it returned, read in that thread: the connection runs one statement at a time.
    """

    KEY = "agora_statement_deadline"  # where it is kept in the pooled connection's `info`
    __slots__ = ("at", "reached")

    def __init__(self) -> None:
        self.at: float | None = None  # perf_counter() time; None: no deadline
        self.reached = False  # whether `check` stopped the last statement given a deadline

    def start(self, seconds: float) -> None:
        self.reached = False
        self.at = perf_counter() + seconds

    def stop(self) -> None:
        self.at = None

    def check(self) -> int:
        """Non-zero to stop the running statement (SQLite's progress handler, on the connection's thread)."""
        if self.at is not None and perf_counter() >= self.at:
            self.reached = True
            return 1
        return 0


def create_sqlite_engine(url: URL | str, *, pool_timeout: float = 5) -> AsyncEngine:
    """The request-path engine on SQLite: async (aiosqlite), AUTOCOMMIT, foreign keys ON."""
    engine = create_async_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_timeout=pool_timeout,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
    )
    event.listen(engine.sync_engine, "connect", _sqlite_app_connection)
    return engine


def _sqlite_app_connection(dbapi_connection: Any, record: Any) -> None:
    # Without this pragma SQLite ignores ON DELETE CASCADE (and every foreign key).
    # WAL lets readers proceed while one connection writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
    # The search timeout's check, installed in the connection's own thread (aiosqlite's method).
    deadline = StatementDeadline()
    dbapi_connection.run_async(
        lambda connection: connection.set_progress_handler(deadline.check, SQLITE_PROGRESS_STEPS)
    )
    record.info[StatementDeadline.KEY] = deadline


async def open_database(
    url: URL | str,
    *,
    pool_size: int = 4,
    pool_timeout: float = 5,
    connect_timeout: float = 5,
    statement_timeout_ms: int = 5000,
    write_reserve: int = 0,
    behind_pgbouncer: bool = False,
    read_urls: Sequence[URL | str] = (),
    max_lag_seconds: float = 5,
    write_marks_url: str | None = None,
    search_timeout_ms: int | None = None,
) -> Database:
    """The request-path database for an async URL (postgresql+asyncpg:// or sqlite+aiosqlite://).

    `read_urls`: hot standbys of that PostgreSQL for the reads that may go to one
    (`Prepared.replica_ok`; app/db/replicas.py says how, `write_marks_url` where each
    user's last write is remembered: a redis:// URL, or None for this process's memory).
    `search_timeout_ms`: how long a search (`Prepared.searches`) may run; None, as long as any statement.
    """
    url = make_url(url)
    if url.get_backend_name() != "postgresql":
        return SQLiteDatabase(create_sqlite_engine(url, pool_timeout=pool_timeout), search_timeout_ms=search_timeout_ms)
    primary = await PostgresDatabase.open(
        url,
        max_connections=pool_size,
        pool_timeout=pool_timeout,
        connect_timeout=connect_timeout,
        statement_timeout_ms=statement_timeout_ms,
        write_reserve=write_reserve,
        behind_pgbouncer=behind_pgbouncer,
        search_timeout_ms=search_timeout_ms,
    )
    if not read_urls:
        return primary
    from app.db.replicas import ReplicatedDatabase  # here: it builds on this module

    standbys = [
        await PostgresDatabase.open(
            make_url(read_url),
            max_connections=pool_size,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
            statement_timeout_ms=statement_timeout_ms,
            behind_pgbouncer=behind_pgbouncer,
            label=f"replica-{number}",
            search_timeout_ms=search_timeout_ms,
        )
        for number, read_url in enumerate(read_urls, start=1)
    ]
    return ReplicatedDatabase.start(primary, standbys, max_lag_seconds=max_lag_seconds, marks_url=write_marks_url)
