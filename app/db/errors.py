"""What a failed statement means: one table from driver exceptions to outcomes.

Both request-path backends (asyncpg on PostgreSQL, SQLAlchemy over aiosqlite/sqlite3 on
SQLite) translate every exception through `ERROR_TABLE`, so the rest of the application
sees only two database errors, whatever the driver:

- `DatabaseConflict`: a constraint refused the statement (a duplicate, or a row it
  refers to went away meanwhile). The caller decides what it means; unhandled, 409.
- `DatabaseUnavailable`: the database could not answer (down, restarting, timed out,
  no connection free). 503 with `Retry-After`.

An exception no row matches (and a row whose outcome is None) is a bug and propagates
as it is: a 500 that is logged, never a 503 asking clients to retry a request that can
never succeed. The HTTP answer of each outcome is in app/api/errors.py.
"""

import sqlite3
from dataclasses import dataclass

import asyncpg
from sqlalchemy import exc as sa


class DatabaseError(Exception):
    """A statement failed in a way the application answers (see the table below)."""


class DatabaseConflict(DatabaseError):
    """A unique, foreign-key or check constraint refused the statement."""


class DatabaseUnavailable(DatabaseError):
    """The database could not answer: down, restarting, stalled, or no connection free in time."""


@dataclass(frozen=True, slots=True)
class ErrorRule:
    exceptions: tuple[type[BaseException], ...]
    outcome: type[DatabaseError] | None  # None: a bug, re-raised as it is
    why: str
    # The connection itself is broken: drop it, and reconnect the pool's others as they
    # are next used (a server that restarted ended them all).
    reconnect: bool = False


ERROR_TABLE: tuple[ErrorRule, ...] = (
    ErrorRule(
        (asyncpg.IntegrityConstraintViolationError, sqlite3.IntegrityError, sa.IntegrityError),
        DatabaseConflict,
        "a unique, foreign-key or check constraint refused the row",
    ),
    ErrorRule(
        (asyncpg.DataError, sqlite3.DataError, sa.DataError, sqlite3.ProgrammingError, sa.ProgrammingError),
        None,
        "a value or statement the database rejects: inputs are validated first, so it is a bug to surface",
    ),
    ErrorRule(
        # Before the connection failures below: asyncpg files it under "operator
        # intervention" (SQLSTATE class 57) with an admin shutdown, but the connection is fine.
        (asyncpg.exceptions.QueryCanceledError,),
        DatabaseUnavailable,
        "the statement ran past statement_timeout (or was cancelled)",
    ),
    ErrorRule(
        (
            OSError,
            TimeoutError,
            asyncpg.InterfaceError,
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,
            # asyncpg's connection in a state it did not expect: e.g. the server's farewell
            # has arrived but the socket has not closed yet (a millisecond or so while the
            # backend exits). Nothing was sent; only a new connection helps.
            asyncpg.exceptions.InternalClientError,
        ),
        DatabaseUnavailable,
        "the connection failed: refused, reset, closed by the server, or no answer in time",
        reconnect=True,
    ),
    ErrorRule(
        (asyncpg.PostgresError,),
        DatabaseUnavailable,
        "PostgreSQL refused to run it now (statement timeout, too many connections, schema not migrated)",
    ),
    ErrorRule(
        (sa.TimeoutError,),
        DatabaseUnavailable,
        "no pooled connection free in time",
    ),
    ErrorRule(
        (sqlite3.OperationalError, sqlite3.DatabaseError, sa.OperationalError, sa.DBAPIError),
        DatabaseUnavailable,
        "SQLite could not run it (database locked past the busy timeout, file unreadable, disk full)",
    ),
)


def rule_for(exc: BaseException) -> ErrorRule | None:
    """The first row of the table that names the exception's type (or one of its bases)."""
    for rule in ERROR_TABLE:
        if isinstance(exc, rule.exceptions):
            return rule
    return None


def translate(exc: BaseException) -> DatabaseError | None:
    """The application's error for a driver's exception, or None when it is a bug to re-raise."""
    rule = rule_for(exc)
    if rule is None or rule.outcome is None:
        return None
    return rule.outcome(f"{type(exc).__name__}: {exc}")
